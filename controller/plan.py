"""Pure: changes -> Plan, a DAG of actions in a valid order, with every domain rule of Partner
Center's procedure (contract section 2). No I/O, no logging, no clock.

    removing a customer    suspend every active subscription, then remove_relationship
    re-adding a customer   request_relationship; its subscription actions wait, blocked,
                           until the customer accepts (a later run plans them)
    subscriptions          suspend / reactivate / update_quantity, the update after a
                           reactivation, or before a suspension
"""

from __future__ import annotations

import hashlib
import heapq
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from .current import CurrentState, Customer, Subscription
from .diff import CustomerDiff, FieldChange, diff_states, normalize_name
from .errors import PlanError

# Reasons and warnings are data: the JSON plan keeps them in English and the text and markdown
# renderers translate them (i18n.shown); so are the errors raised here (the CLI shows them so).
from .i18n import english as _
from .i18n import ngettext
from .ids import CustomerId, Guid
from .providers import rules
from .records import Records, effective_protected
from .spec import Desired, Offboarding, SubscriptionSpec

ActionType = Literal[
    "suspend_subscription",
    "reactivate_subscription",
    "update_quantity",
    "cancel_subscription",
    "set_auto_renew",
    "remove_relationship",
    "request_relationship",
]
ACTION_TYPES: tuple[ActionType, ...] = (
    "suspend_subscription",
    "reactivate_subscription",
    "update_quantity",
    "cancel_subscription",
    "set_auto_renew",
    "remove_relationship",
    "request_relationship",
)
# bool before int: pydantic keeps ``true`` a bool rather than making it 1.
Value = bool | str | int | None


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Action(_Value):
    """One change to make through the provider, after every action in ``depends_on``."""

    id: str
    type: ActionType
    customer_id: Guid
    subscription_id: Guid | None
    depends_on: tuple[str, ...] = ()
    from_: Value = Field(alias="from")
    to: Value
    reason: str
    # Changed outside the specs (in the portal) rather than in them; shown apart. Not part of
    # the JSON plan's fields: there the reason says it.
    drift: bool = Field(default=False, exclude=True)


class Blocked(_Value):
    """An action that cannot be planned yet, and why."""

    type: ActionType
    customer_id: Guid
    subscription_id: Guid | None
    reason: str
    # The day the blocker ends by itself, when the service gives one (an NCE term's end).
    until: date | None = None

    def document(self) -> dict[str, Any]:
        """As in the JSON plan: ``until`` only when there is one."""
        return self.model_dump(mode="json", exclude={"until"} if self.until is None else set())


class Unmanaged(_Value):
    """Something that exists but is not in the specs' care: reported, never touched."""

    customer_id: Guid
    subscription_id: Guid | None


@dataclass(frozen=True)
class Freshness:
    """How fresh the observation a Partner Center plan was made from is: its oldest customer
    observation (the service's clock), how old that was when planning, and how many customers
    came from the observation cache rather than read now."""

    oldest: datetime
    age_seconds: int
    from_cache: int
    read: int


@dataclass(frozen=True)
class Plan:
    """An ordered DAG of actions, and what was left out of it."""

    fingerprint: str
    actions: tuple[Action, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    warnings: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict, compare=False)
    # What was observed: "partner_center" (the service or its emulator) or "local_world"; only
    # for wording ("Partner Center matches the specs" is said of Partner Center only).
    source: str = field(default="partner_center", compare=False)
    # How fresh the observation was (Partner Center only; None for the local world).
    freshness: Freshness | None = field(default=None, compare=False)
    # Customers (id -> why) that could not be observed, so nothing is planned for them: the
    # plan is incomplete, and a run that shows or applies it fails (targeting.py).
    unobserved: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def summary(self) -> dict[ActionType, int]:
        counts = Counter(a.type for a in self.actions)
        return {t: counts.get(t, 0) for t in ACTION_TYPES}

    @property
    def removals(self) -> int:
        return self.summary["remove_relationship"]

    @property
    def cancellations(self) -> int:
        return self.summary["cancel_subscription"]


# --- guards ---------------------------------------------------------------------------------


def check_partner(desired: Desired, current: CurrentState, records: Records) -> None:
    """Specs written for one partner are never applied to another."""
    actual = current.partner.id
    if desired.partner.id is not None and desired.partner.id != actual:
        raise PlanError(
            _("specs are for partner {}, but the current state is partner {}: refusing").format(
                desired.partner.id, actual
            )
        )
    if records.partner_id is not None and records.partner_id != actual:
        raise PlanError(
            _("the state's records are for partner {}, but the current state is partner {}").format(
                records.partner_id, actual
            )
        )


def check_not_empty(desired: Desired, *, allow_mass_removal: bool) -> None:
    """A lost checkout (no customers in any spec) must not wipe every relationship."""
    if not desired.customers and not allow_mass_removal:
        raise PlanError(
            _(
                "the specs list no customers at all; refusing to plan, since every managed "
                "relationship would be removed (pass --allow-mass-removal if that is intended)"
            )
        )


def check_removal_limit(plan: Plan, *, max_removals: int, allow_mass_removal: bool) -> None:
    """Refuse to apply a plan that removes more relationships than the limit."""
    if plan.removals > max_removals and not allow_mass_removal:
        raise PlanError(
            ngettext(
                "the plan removes {} relationship, more than --max-removals {}; refusing "
                "(raise the limit or pass --allow-mass-removal)",
                "the plan removes {} relationships, more than --max-removals {}; refusing "
                "(raise the limit or pass --allow-mass-removal)",
                plan.removals,
            ).format(plan.removals, max_removals)
        )


def check_cancellation_limit(
    plan: Plan, *, max_cancellations: int, allow_mass_removal: bool
) -> None:
    """Refuse to apply a plan that cancels more subscriptions than the limit: a cancellation
    cannot be undone."""
    if plan.cancellations > max_cancellations and not allow_mass_removal:
        raise PlanError(
            _(
                "the plan cancels {} subscriptions, more than --max-cancellations {}; refusing "
                "(raise the limit or pass --allow-mass-removal)"
            ).format(plan.cancellations, max_cancellations)
        )


# --- fingerprint ----------------------------------------------------------------------------


def fingerprint(current: CurrentState, records: Records) -> str:
    """sha256 of the current state and the controller's records, independent of listing order."""
    # The observation time is left out: a saved plan stays valid while the tenant itself is
    # unchanged. Which customers could not be observed is not the tenant either (their own
    # state, empty, is in the document).
    # The bytes of orjson.dumps({"customers": [...], "partner": ..., "records": ...}) with sorted
    # keys, hashed a customer at a time rather than built whole (87 MB at 50,000 customers).
    digest = hashlib.sha256(b'{"customers":[')
    for n, customer in enumerate(sorted(current.customers, key=_by_id)):
        digest.update(b"," if n else b"")
        digest.update(orjson.dumps(_customer_document(customer), option=orjson.OPT_SORT_KEYS))
    digest.update(b'],"partner":')
    digest.update(orjson.dumps(current.partner.model_dump(), option=orjson.OPT_SORT_KEYS))
    digest.update(b',"records":')
    digest.update(orjson.dumps(records.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS))
    digest.update(b"}")
    return digest.hexdigest()


_CUSTOMER_FIELDS = tuple(f for f in Customer.model_fields if f != "subscriptions")
_SUBSCRIPTION_FIELDS = frozenset(Subscription.model_fields)


def _customer_document(customer: Customer) -> dict[str, Any]:
    """``customer.model_dump()`` with its subscriptions sorted by id, taken from the models'
    field values as they are (what a python-mode dump gives for these fields: strings, numbers,
    datetimes, None), which is a tenth of the cost of dumping them: a fingerprint is made of
    every observed subscription on every run."""
    values = customer.__dict__
    document = {name: values[name] for name in _CUSTOMER_FIELDS}
    document["subscriptions"] = [
        _fields(s.__dict__) for s in sorted(customer.subscriptions, key=_by_id)
    ]
    return document


def _fields(values: dict[str, Any]) -> dict[str, Any]:
    # A model's __dict__ holds all its fields, and whatever a cached property put there: as
    # many keys as fields, it holds the fields alone (counted: comparing the keys cost more).
    if len(values) == len(_SUBSCRIPTION_FIELDS):
        return values
    return {name: values[name] for name in _SUBSCRIPTION_FIELDS}


_by_id: Callable[[Customer | Subscription], str] = operator.attrgetter("id")  # no Python call


# --- planning -------------------------------------------------------------------------------

_Key = tuple[str, str, str | None]  # (type, customer id, subscription id): unique in a plan

# Without an observation time nothing time-limited is planned: every cancellation window is
# taken as closed, every term and reactivation period as over (the service has the last word).
_NO_CLOCK = datetime.max.replace(tzinfo=UTC)

# The listing order: destructive first (removals, suspensions), then the rest.
_RANK: dict[str, int] = {
    "removal": 0,
    "cancel_subscription": 1,
    "suspend_subscription": 1,
    "set_auto_renew": 2,
    "update_quantity": 2,
    "reactivate_subscription": 3,
    "request_relationship": 4,
}


@dataclass
class _Draft:
    key: _Key
    after: tuple[_Key, ...]
    from_: Value
    to: Value
    reason: str
    priority: tuple[object, ...]


@dataclass
class _PlanBuilder:
    now: datetime = _NO_CLOCK
    drafts: dict[_Key, _Draft] = field(default_factory=dict)
    blocked: list[Blocked] = field(default_factory=list)
    unmanaged: list[Unmanaged] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def add(
        self,
        type_: ActionType,
        diff: CustomerDiff,
        subscription_id: str | None,
        *,
        change: tuple[Value, Value],
        reason: str,
        after: Iterable[_Key] = (),
        removal: bool = False,
    ) -> _Key:
        key: _Key = (type_, diff.customer_id, subscription_id)
        rank = _RANK["removal" if removal else type_]
        customer_order = (normalize_name(diff.name), diff.customer_id)
        within = (type_ == "remove_relationship", subscription_id or "")
        priority = (rank, *customer_order, *within)
        self.drafts[key] = _Draft(key, tuple(after), *change, reason, priority)
        return key

    def block(
        self,
        type_: ActionType,
        customer_id: str,
        subscription_id: str | None,
        reason: str,
        until: date | None = None,
    ) -> None:
        self.blocked.append(
            Blocked(
                type=type_,
                customer_id=customer_id,
                subscription_id=subscription_id,
                reason=reason,
                until=until,
            )
        )

    def build(self, fingerprint_: str) -> Plan:
        ordered = _topological(self.drafts)
        ids = {draft.key: f"a{n}" for n, draft in enumerate(ordered, start=1)}
        actions = tuple(
            Action(
                id=ids[d.key],
                type=d.key[0],
                customer_id=d.key[1],
                subscription_id=d.key[2],
                depends_on=tuple(sorted((ids[k] for k in d.after), key=_id_number)),
                from_=d.from_,
                to=d.to,
                reason=d.reason,
            )
            for d in ordered
        )
        return Plan(
            fingerprint=fingerprint_,
            actions=actions,
            blocked=tuple(self.blocked),
            unmanaged=tuple(self.unmanaged),
            warnings=tuple(self.warnings),
            names=dict(self.names),
        )


def _id_number(action_id: str) -> int:
    return int(action_id[1:])


def _topological(drafts: Mapping[_Key, _Draft]) -> list[_Draft]:
    """Kahn's algorithm, always taking the ready draft with the lowest priority: a valid order
    that lists destructive actions first and keeps each customer's actions together."""
    waiting = {key: set(d.after) for key, d in drafts.items()}
    dependents: dict[_Key, list[_Key]] = {key: [] for key in drafts}
    for key, draft in drafts.items():
        for before in draft.after:
            dependents[before].append(key)
    ready = [(d.priority, key) for key, d in drafts.items() if not waiting[key]]
    heapq.heapify(ready)
    ordered = []
    while ready:
        _priority, key = heapq.heappop(ready)
        ordered.append(drafts[key])
        for dependent in dependents[key]:
            waiting[dependent].discard(key)
            if not waiting[dependent]:
                heapq.heappush(ready, (drafts[dependent].priority, dependent))
    return ordered


def plan(desired: Desired, current: CurrentState, records: Records) -> Plan:
    """Plan the actions that take ``current`` to ``desired``. Pure: no I/O, no clock."""
    builder = _PlanBuilder(now=current.now or _NO_CLOCK)
    protected = effective_protected(desired, records)
    pending = records.pending_by_id
    managed = {CustomerId(c) for c in records.managed}
    diffs = diff_states(desired, current)
    for diff in diffs:
        if diff.desired is not None:
            _plan_listed(builder, diff, awaiting=diff.customer_id in pending)
        elif diff.current is not None and diff.current.relationship == "reseller":
            if diff.customer_id not in managed:
                builder.unmanaged.append(
                    Unmanaged(customer_id=diff.customer_id, subscription_id=None)
                )
            elif desired.partner.prune == "none":
                builder.warnings.append(
                    _("customer {} ({}) is not in the specs; prune: none keeps it").format(
                        diff.name, diff.customer_id
                    )
                )
            elif diff.customer_id in protected:
                builder.warnings.append(
                    _("customer {} ({}) is not in the specs but is protected: not removed").format(
                        diff.name, diff.customer_id
                    )
                )
            else:
                offboarding = records.offboarding.get(diff.customer_id, desired.partner.offboarding)
                _plan_removal(builder, diff, diff.current, offboarding=offboarding)
    _remember_names(builder, diffs)
    return builder.build(fingerprint(current, records))


def _remember_names(builder: _PlanBuilder, diffs: tuple[CustomerDiff, ...]) -> None:
    """Display names of the customers the plan mentions, and of their subscriptions (the specs'
    wording wins); only those, as a plan usually mentions few of many customers."""
    mentioned = {d.key[1] for d in builder.drafts.values()}
    mentioned |= {b.customer_id for b in builder.blocked} | {
        u.customer_id for u in builder.unmanaged
    }
    names = builder.names
    for diff in diffs:
        if diff.customer_id not in mentioned:
            continue
        names[diff.customer_id] = diff.name
        for observed in diff.current.subscriptions if diff.current else ():
            if observed.name or observed.offer:
                names[observed.id] = observed.name or observed.offer or ""
        for listed in diff.desired.subscriptions if diff.desired else ():
            if listed.name:
                names[listed.id] = listed.name


def _plan_removal(
    builder: _PlanBuilder, diff: CustomerDiff, customer: Customer, *, offboarding: Offboarding
) -> None:
    """End what can be ended now, then remove the relationship (contract sections 2 and 7):
    legacy active: suspend; new commerce inside its window with ``cancel_in_window``: cancel;
    any other new commerce: auto-renewal off, and the removal waits for its term end; an Azure
    plan without active Azure subscriptions: suspend. Whatever can only end later or by hand
    leaves the removal blocked, with its reason; a later run removes the relationship."""
    reason = _("customer removed from specs")
    steps: dict[str, _Key] = {}  # by subscription id
    waiting: list[Subscription] = []  # new commerce that ends at its term end
    azure_plans: list[Subscription] = []  # Azure plans with active Azure subscriptions
    for subscription in customer.subscriptions:
        if subscription.parent_id is not None:
            continue  # add-ons follow their base
        step = _offboarding_step(builder, diff, subscription, offboarding, reason)
        if step is not None:
            steps[subscription.id] = step
        cancelled = step is not None and step[0] == "cancel_subscription"
        if subscription.commerce == "nce" and not rules.has_ended(subscription) and not cancelled:
            waiting.append(subscription)
        if subscription.commerce == "azure_plan" and subscription.azure_subscriptions_active:
            azure_plans.append(subscription)
    for addon in customer.subscriptions:
        if addon.parent_id is None or not rules.blocks_removal(addon):
            continue
        base_step = steps[addon.parent_id][0] if addon.parent_id in steps else None
        if base_step == "cancel_subscription" or (
            base_step == "suspend_subscription" and addon.commerce != "nce"
        ):
            continue  # it ends with its base
        if addon.commerce == "nce":
            waiting.append(addon)
        else:
            builder.block("remove_relationship", diff.customer_id, addon.id, "addon_follows_base")
    if waiting:
        last = max(waiting, key=lambda s: s.term_end or _NO_CLOCK)
        until = last.term_end.date() if last.term_end is not None else None
        builder.block("remove_relationship", diff.customer_id, last.id, "awaiting_term_end", until)
    for azure_plan in azure_plans:
        builder.block(
            "remove_relationship", diff.customer_id, azure_plan.id, "azure_subscriptions_active"
        )
    if customer.azure_reservations_open:
        builder.block("remove_relationship", diff.customer_id, None, "azure_reservations_open")
    if any(b.customer_id == diff.customer_id for b in builder.blocked):
        return
    builder.add(
        "remove_relationship",
        diff,
        None,
        change=("reseller", "none"),
        reason=reason,
        after=steps.values(),
        removal=True,
    )


def _offboarding_step(
    builder: _PlanBuilder,
    diff: CustomerDiff,
    subscription: Subscription,
    offboarding: Offboarding,
    reason: str,
) -> _Key | None:
    """The one action that ends (or starts ending) a subscription of a removed customer."""
    now = builder.now
    if subscription.commerce == "nce":
        if rules.has_ended(subscription):
            return None
        if offboarding == "cancel_in_window" and not rules.cancellation_refusal(subscription, now):
            return builder.add(
                "cancel_subscription",
                diff,
                subscription.id,
                change=(subscription.status, "cancelled"),
                reason=reason,
                removal=True,
            )
        if subscription.auto_renew is False:
            return None
        return builder.add(
            "set_auto_renew",
            diff,
            subscription.id,
            change=(subscription.auto_renew, False),
            reason=reason,
            removal=True,
        )
    if subscription.status == "active" and not rules.suspension_refusal(subscription):
        return builder.add(
            "suspend_subscription",
            diff,
            subscription.id,
            change=("active", "suspended"),
            reason=reason,
            removal=True,
        )
    return None


def _plan_listed(builder: _PlanBuilder, diff: CustomerDiff, *, awaiting: bool) -> None:
    """A customer in the specs: a relationship is desired, and its listed subscriptions."""
    assert diff.desired is not None
    customer_id = diff.customer_id
    related = diff.current is not None and diff.current.relationship == "reseller"
    for change in diff.changes:
        if change.path[0] in ("name", "domain"):
            builder.warnings.append(
                _("customer {}: {} is {!r} in the specs but {!r} in Partner Center").format(
                    customer_id, change.path[0], change.after, change.before
                )
            )
    if diff.current is not None and diff.current.relationship in ("advisor", "syndication"):
        builder.warnings.append(
            _(
                "customer {} ({}) has a {} relationship with this partner, not a reseller one: "
                "the controller sends it no request; to resell to it, the customer's admin must "
                "accept a reseller invitation from Partner Center (Customers > Request a "
                "reseller relationship)"
            ).format(diff.name, customer_id, diff.current.relationship)
        )
        return
    if not related:
        if not awaiting:
            reason = (
                _("customer in specs has no reseller relationship")
                if diff.current is not None
                else _("customer in specs is not a customer of this partner yet")
            )
            builder.add(
                "request_relationship", diff, None, change=("none", "pending"), reason=reason
            )
        for type_, subscription_id in _subscription_action_types(diff):
            builder.blocked.append(
                Blocked(
                    type=type_,
                    customer_id=customer_id,
                    subscription_id=subscription_id,
                    reason="awaiting_acceptance",
                )
            )
        return
    for subscription_id in diff.missing_subscriptions:
        builder.warnings.append(
            _(
                "customer {}: subscription {} is in the specs but does not exist "
                "(creating subscriptions is out of scope)"
            ).format(customer_id, subscription_id)
        )
    for subscription_id in diff.unlisted_subscriptions:
        builder.unmanaged.append(
            Unmanaged(customer_id=customer_id, subscription_id=subscription_id)
        )
    if diff.changes:  # most customers match: no need to look at each subscription
        observed = diff.current.subscriptions_by_id  # type: ignore[union-attr]
        # Add-ons last: their changes are ordered around their base's.
        for spec in sorted(
            diff.desired.subscriptions,
            key=lambda s: s.id in observed and observed[s.id].parent_id is not None,
        ):
            _plan_subscription(builder, diff, spec)


def _subscription_action_types(diff: CustomerDiff) -> list[tuple[ActionType, str]]:
    """The subscription actions a customer would need if it were related (for ``blocked``)."""
    found: list[tuple[ActionType, str]] = []
    assert diff.desired is not None
    for spec in diff.desired.subscriptions:
        changes = diff.subscription_changes(spec.id)
        if "status" in changes:
            by_status: dict[str, ActionType] = {
                "active": "reactivate_subscription",
                "cancelled": "cancel_subscription",
            }
            found.append((by_status.get(changes["status"].after, "suspend_subscription"), spec.id))
        if "auto_renew" in changes:
            found.append(("set_auto_renew", spec.id))
        if "quantity" in changes:
            found.append(("update_quantity", spec.id))
    return found


def _plan_subscription(builder: _PlanBuilder, diff: CustomerDiff, spec: SubscriptionSpec) -> None:
    """Status, quantity and auto-renewal of one listed subscription of a reseller customer,
    where the service allows the change (what it refuses is blocked, with the reason)."""
    changes = diff.subscription_changes(spec.id)
    if not changes:
        return
    assert diff.current is not None
    current = diff.current.subscriptions_by_id[spec.id]
    customer_id, subscription_id = diff.customer_id, spec.id
    if spec.commerce is not None and spec.commerce != current.commerce:
        builder.warnings.append(
            _(
                "customer {}: subscription {} is commerce: {} in the specs but {} in Partner "
                "Center; nothing is changed for it until the specs say what it is"
            ).format(customer_id, subscription_id, spec.commerce, current.commerce)
        )
        return
    status, quantity = changes.get("status"), changes.get("quantity")
    renewal = changes.get("auto_renew")
    if current.parent_id is not None and (status or renewal):
        builder.warnings.append(
            _(
                "customer {}: subscription {} is an add-on of {}: its status and auto-renewal "
                "follow its base subscription, and are never changed on their own"
            ).format(customer_id, subscription_id, current.parent_id)
        )
        status = renewal = None
    if current.status not in ("active", "suspended"):
        if status is not None or quantity is not None:
            builder.warnings.append(
                _(
                    "customer {}: subscription {} is {}; only active and suspended "
                    "subscriptions are changed"
                ).format(customer_id, subscription_id, current.status)
            )
        return
    if status is not None and status.after == "cancelled":
        _plan_cancellation(builder, diff, current)
        return
    renewal = _renewal_while_suspended(builder, diff, current, status, renewal)
    now = builder.now
    reason_status = _("status in specs is {}").format(status.after if status else current.status)
    # An add-on suspended with its base comes back with it: its quantity can change after.
    with_base: list[_Key] = []
    if current.parent_id is not None and current.suspended_by != "microsoft":
        base_back = ("reactivate_subscription", customer_id, current.parent_id)
        with_base = [base_back] if base_back in builder.drafts else []
    if quantity is not None and status is None and current.status == "suspended" and not with_base:
        builder.warnings.append(
            _(
                "customer {}: subscription {} is suspended in the specs; its quantity "
                "({} -> {}) cannot change while suspended"
            ).format(customer_id, subscription_id, quantity.before, quantity.after)
        )
        return
    reason_quantity = _("quantity in specs is {}").format(quantity.after if quantity else "")
    # The service changes the quantity of an active subscription only: a quantity change comes
    # after a reactivation, and before a suspension.
    reactivating = status is not None and status.after == "active"
    if reactivating:
        refused = rules.reactivation_refusal(current, now)
        if refused is not None:
            builder.block(
                "reactivate_subscription",
                customer_id,
                subscription_id,
                _reactivation_blocker(current),
            )
            return
    steps: list[_Key] = []
    if reactivating:
        steps.append(
            builder.add(
                "reactivate_subscription",
                diff,
                subscription_id,
                change=("suspended", "active"),
                reason=reason_status,
            )
        )
    if quantity is not None:
        if rules.quantity_refusal(
            current.model_copy(update={"status": "active"}), quantity.after, now
        ):
            builder.block(
                "update_quantity", customer_id, subscription_id, "quantity_decrease_not_refundable"
            )
        else:
            update = builder.add(
                "update_quantity",
                diff,
                subscription_id,
                change=(quantity.before, quantity.after),
                reason=reason_quantity,
                after=steps[-1:] or with_base,
            )
            steps.append(update)
            _before_base_ends(builder, customer_id, current, update)
    if renewal is not None:
        builder.add(
            "set_auto_renew",
            diff,
            subscription_id,
            change=(renewal.before, renewal.after),
            reason=_("auto_renew in specs is {}").format(str(renewal.after).lower()),
            after=steps[:1] if reactivating else (),  # a suspended one cannot be changed
        )
    if status is not None and not reactivating:
        if rules.suspension_refusal(current) is not None:
            builder.block(
                "suspend_subscription", customer_id, subscription_id, "azure_subscriptions_active"
            )
            return
        builder.add(
            "suspend_subscription",
            diff,
            subscription_id,
            change=("active", "suspended"),
            reason=reason_status,
            after=steps[-1:],
        )


def _renewal_while_suspended(
    builder: _PlanBuilder,
    diff: CustomerDiff,
    current: Subscription,
    status: FieldChange | None,
    renewal: FieldChange | None,
) -> FieldChange | None:
    """The auto-renewal change to make, knowing that Partner Center turns a new-commerce
    subscription's auto-renewal off when it is suspended and leaves it off when it is
    reactivated (learn.microsoft.com/partner-center/create-a-new-subscription, "Suspend a
    subscription"); a suspended subscription cannot be changed (800091) and expires at its term
    end whatever its auto-renewal says."""
    if current.commerce != "nce":
        return renewal
    stays_suspended = (status.after if status is not None else current.status) == "suspended"
    if stays_suspended and renewal is not None:
        if renewal.after is True:
            builder.warnings.append(
                _(
                    "customer {}: subscription {} is suspended in the specs: Partner Center "
                    "turns a suspended new-commerce subscription's auto-renewal off and it "
                    "expires at its term end; auto_renew: true takes effect once it is "
                    "reactivated (status: active)"
                ).format(diff.customer_id, current.id)
            )
        return None  # turning it off: the suspension does
    reactivating = status is not None and status.after == "active"
    if (
        reactivating
        and renewal is None
        and current.auto_renew is not True
        and rules.reactivation_refusal(current, builder.now) is None
    ):
        end = current.term_end.date().isoformat() if current.term_end is not None else "?"
        builder.warnings.append(
            _(
                "customer {}: subscription {} is reactivated with auto-renewal off (Partner "
                "Center turned it off when it was suspended): it expires at its term end {} "
                "unless the specs say auto_renew: true"
            ).format(diff.customer_id, current.id, end)
        )
    return renewal


def _before_base_ends(
    builder: _PlanBuilder, customer_id: str, addon: Subscription, update: _Key
) -> None:
    """An add-on's quantity changes before its base is suspended or cancelled (which ends the
    add-on with it)."""
    if addon.parent_id is None:
        return
    for kind in ("suspend_subscription", "cancel_subscription"):
        base = builder.drafts.get((kind, customer_id, addon.parent_id))
        if base is not None:
            base.after = (*base.after, update)


def _reactivation_blocker(subscription: Subscription) -> str:
    """Why the service will not reactivate this subscription (see rules.reactivation_refusal)."""
    if subscription.suspended_by == "microsoft":
        return "suspended_by_microsoft"
    if subscription.commerce == "nce":
        return "term_ended"
    return "reactivation_period_over"


def _plan_cancellation(builder: _PlanBuilder, diff: CustomerDiff, current: Subscription) -> None:
    """``status: cancelled``: cancel inside the window; past it, only auto-renewal off is left."""
    if rules.cancellation_refusal(current, builder.now) is not None:
        builder.block(
            "cancel_subscription",
            diff.customer_id,
            current.id,
            "cancel_window_closed",
            current.term_end.date() if current.term_end is not None else None,
        )
        return
    builder.add(
        "cancel_subscription",
        diff,
        current.id,
        change=(current.status, "cancelled"),
        reason=_("status in specs is cancelled"),
    )
