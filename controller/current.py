"""Models of the current state, as Partner Center shows it (and as ``state/world.json`` holds it).

A customer's relationship is ``reseller``, ``none``, or one the controller never acts on
(``advisor``, ``syndication``); a subscription's status is one of Partner Center's statuses.
A subscription is of a commerce kind (contract section 7): ``legacy`` (license-based), ``nce``
(new commerce: a term, auto-renewal, a cancellation window) or ``azure_plan``. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .i18n import _
from .ids import Guid

Relationship = Literal["reseller", "none", "advisor", "syndication"]
SubscriptionStatus = Literal["active", "suspended", "deleted", "expired", "pending", "disabled"]
Commerce = Literal["legacy", "nce", "azure_plan"]
SuspendedBy = Literal["partner", "microsoft"]


def _as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; one that UTC cannot hold (``0001-01-01T00:00:00+01:00`` is in year 0)
    is a ValueError, which pydantic reports as a problem of the field, never an OverflowError."""
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(_("{} is out of range in UTC").format(moment.isoformat())) from exc


LATEST = datetime.max.replace(tzinfo=UTC)  # 9999-12-31T23:59:59.999999Z


def later(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, or LATEST past it: a term end of ``9999-12-31`` (Partner Center shows
    ``9999-12-14`` for what never ends) plus a window or a year is "never", not an OverflowError."""
    try:
        return moment + delta
    except OverflowError:
        return LATEST


def iso_utc(moment: datetime | None) -> str:
    """``2027-03-01T00:00:00Z``: how times are written (world files, messages)."""
    if moment is None:
        return ""
    return _as_utc(moment).isoformat().replace("+00:00", "Z")


# A moment with its offset given (naive times are refused), held in UTC and written with ``Z``.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]


# CONTRACT section 8: larger numbers are refused where they come in (specs, a hand-edited world),
# so that no state file ever holds one that could not be read back (orjson stops at 64 bits).
MAX_QUANTITY = 1_000_000


def _refuse_duplicate(ids: Iterable[str], message: str, *context: str) -> None:
    ids = list(ids)
    if len(set(ids)) == len(ids):  # the usual case, without a loop in Python
        return
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise ValueError(message.format(*context, item_id))
        seen.add(item_id)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Partner(_Frozen):
    id: Guid
    name: str = ""


class Subscription(_Frozen):
    id: Guid
    offer: str | None = None
    name: str | None = None
    quantity: int = Field(default=1, ge=0, le=MAX_QUANTITY)
    status: SubscriptionStatus = "active"
    commerce: Commerce = "legacy"
    # NCE: the term's end (commitmentEndDate), the end of the cancellation window
    # (refundOptions[].expiresAt; None: closed), auto-renewal, and the seats that may still be
    # returned (refundableQuantity).
    term_end: UtcDatetime | None = None
    cancel_until: UtcDatetime | None = None
    auto_renew: bool | None = None
    refundable_quantity: int | None = Field(default=None, ge=0, le=MAX_QUANTITY)
    # Who suspended it (suspensionReasons), and when, where known (legacy: 90 days to reactivate).
    suspended_by: SuspendedBy | None = None
    suspended_at: UtcDatetime | None = None
    # An add-on's base subscription: add-ons follow their base and are never changed alone.
    parent_id: Guid | None = None
    # Azure plan: its Azure subscriptions (entitlements) that are active.
    azure_subscriptions_active: int = Field(default=0, ge=0, le=MAX_QUANTITY)


class Customer(_Frozen):
    id: Guid
    name: str = ""
    domain: str | None = None
    relationship: Relationship = "reseller"
    subscriptions: tuple[Subscription, ...] = ()
    # Open reserved-instance orders, Azure savings plans and reservations: commitments that
    # block removing the relationship and that only Azure support can end.
    azure_reservations_open: int = Field(default=0, ge=0, le=MAX_QUANTITY)

    @cached_property
    def subscriptions_by_id(self) -> dict[str, Subscription]:
        return {s.id: s for s in self.subscriptions}

    @model_validator(mode="after")
    def _unique_subscriptions(self) -> Customer:
        """One id, one subscription: otherwise one of two would silently win."""
        _refuse_duplicate(
            (s.id for s in self.subscriptions),
            _("customer {} lists subscription {} twice"),
            self.id,
        )
        return self

    def evolve(self, **changes: Any) -> Customer:
        """A copy with ``changes``; built afresh so that no cached index is carried over."""
        return Customer.model_construct(**{**dict(self), **changes})


class CurrentState(_Frozen):
    """Everything observed of the partner's tenant at one moment."""

    partner: Partner
    customers: tuple[Customer, ...] = ()
    # The moment of observation: the world's own clock when it has one (reproducible examples),
    # else the wall clock, set by the provider. The planner takes it from here, never the clock.
    now: UtcDatetime | None = None
    # Customers whose observation failed (id -> why), set by a remote provider: they are left
    # out of the plan, never taken for customers without subscriptions. Never in a world file.
    unobserved: dict[str, str] | None = None

    @cached_property
    def customers_by_id(self) -> dict[str, Customer]:
        return {c.id: c for c in self.customers}

    @model_validator(mode="after")
    def _unique_customers(self) -> CurrentState:
        """One id, one customer: otherwise one of two would silently win."""
        _refuse_duplicate((c.id for c in self.customers), _("customer {} is listed twice"))
        return self

    @cached_property
    def customer_positions(self) -> dict[str, int]:
        """Where each customer is in ``customers``."""
        return {c.id: n for n, c in enumerate(self.customers)}

    def replace_customer(self, customer: Customer) -> CurrentState:
        """Return a copy with ``customer`` replacing the one with its id, or added at the end.
        The copy's indexes are the original's, updated for the one customer (not rebuilt: a
        world of 10,000 customers changes one at a time in the local world and the emulator)."""
        positions = self.customer_positions
        at = positions.get(customer.id)
        if at is not None:
            customers = (*self.customers[:at], customer, *self.customers[at + 1 :])
        else:
            customers = (*self.customers, customer)
            positions = {**positions, customer.id: len(self.customers)}
        # model_construct, not model_copy: a copy would carry the cached indexes over unchanged.
        copy = CurrentState.model_construct(**{**dict(self), "customers": customers})
        copy.__dict__["customers_by_id"] = {**self.customers_by_id, customer.id: customer}
        copy.__dict__["customer_positions"] = positions
        return copy

    def _with(self, **changes: Any) -> CurrentState:
        """A copy with ``changes`` to fields other than the customers, sharing their indexes."""
        copy = CurrentState.model_construct(**{**dict(self), **changes})
        for index in ("customers_by_id", "customer_positions"):
            if index in self.__dict__:
                copy.__dict__[index] = self.__dict__[index]
        return copy

    def at(self, now: datetime) -> CurrentState:
        """A copy observed at ``now``."""
        return self._with(now=_as_utc(now))

    def at_no_clock(self) -> CurrentState:
        """A copy without a clock of its own (``now`` unset)."""
        return self._with(now=None)
