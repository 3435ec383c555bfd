"""Pure: desired vs current, customer by customer, into field-level changes.

No I/O, no logging, no clock. Customers are compared by id (lower-case GUIDs), and only on the
fields the specs set; names are compared case- and space-insensitively, so equal things never
show as drift. deepdiff gives the field-level detail, and only for customers that differ."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .current import CurrentState, Customer, Subscription
from .ids import CustomerId, SubscriptionId
from .spec import CustomerSpec, Desired, SubscriptionSpec


@dataclass(frozen=True)
class FieldChange:
    """One value that differs: ``path`` like ``subscriptions[<id>].quantity``."""

    path: tuple[str, ...]
    before: Any
    after: Any

    @property
    def label(self) -> str:
        head, *rest = self.path
        if head == "subscriptions" and rest:
            return f"subscriptions[{rest[0]}]" + "".join(f".{p}" for p in rest[1:])
        return ".".join(self.path)


@dataclass(frozen=True)
class CustomerDiff:
    """Everything that differs for one customer, known to the specs, the world, or both."""

    customer_id: CustomerId
    desired: CustomerSpec | None
    current: Customer | None
    changes: tuple[FieldChange, ...] = ()
    missing_subscriptions: tuple[SubscriptionId, ...] = ()
    unlisted_subscriptions: tuple[SubscriptionId, ...] = ()

    @property
    def name(self) -> str:
        if self.desired is not None:
            return self.desired.name
        return self.current.name if self.current is not None else ""

    def subscription_changes(self, subscription_id: str) -> dict[str, FieldChange]:
        """This subscription's changes by field (``status``, ``quantity``)."""
        return {
            c.path[2]: c
            for c in self.changes
            if len(c.path) == 3 and c.path[0] == "subscriptions" and c.path[1] == subscription_id
        }


def normalize_name(name: str | None) -> str:
    """Names compare equal regardless of case and runs of white space."""
    return " ".join((name or "").split()).casefold()


def _same_or(current: str | None, desired: str) -> str | None:
    """The desired spelling when both mean the same, so that the views compare equal."""
    return desired if normalize_name(current) == normalize_name(desired) else current


def observed_status(spec: SubscriptionSpec, observed: Subscription) -> str:
    """The observed status in the specs' words: an ended subscription (cancelled or expired)
    is what ``status: cancelled`` asks for."""
    if spec.status == "cancelled" and observed.status in ("deleted", "expired"):
        return "cancelled"
    return observed.status


def _renewal_compared(spec: SubscriptionSpec, observed: Subscription) -> bool:
    """Auto-renewal is reconciled when the spec gives it, while the subscription runs."""
    return spec.auto_renew is not None and observed.status not in ("deleted", "expired")


def _views(spec: CustomerSpec, customer: Customer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The desired and current values of exactly the fields the spec sets."""
    wanted: dict[str, Any] = {"relationship": "reseller", "name": spec.name}
    actual: dict[str, Any] = {
        "relationship": customer.relationship,
        "name": _same_or(customer.name, spec.name),
    }
    if spec.domain is not None:
        wanted["domain"] = spec.domain.lower()
        actual["domain"] = (customer.domain or "").lower()
    wanted_subs: dict[str, dict[str, Any]] = {}
    actual_subs: dict[str, dict[str, Any]] = {}
    for sub in spec.subscriptions:
        existing = customer.subscriptions_by_id.get(SubscriptionId(sub.id))
        if existing is None:
            continue
        wanted_subs[sub.id] = {"status": sub.status}
        actual_subs[sub.id] = {"status": observed_status(sub, existing)}
        if sub.quantity is not None:
            wanted_subs[sub.id]["quantity"] = sub.quantity
            actual_subs[sub.id]["quantity"] = existing.quantity
        if _renewal_compared(sub, existing):
            wanted_subs[sub.id]["auto_renew"] = sub.auto_renew
            actual_subs[sub.id]["auto_renew"] = existing.auto_renew
    wanted["subscriptions"], actual["subscriptions"] = wanted_subs, actual_subs
    return wanted, actual


def _differing(mine: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``mine`` without the keys whose values equal ``other``'s (one level into dicts)."""
    kept: dict[str, Any] = {}
    for key, value in mine.items():
        theirs: Any = other.get(key)
        if value == theirs:
            continue
        both_dicts = isinstance(value, dict) and isinstance(theirs, dict)
        kept[key] = _differing(value, theirs) if both_dicts else value
    return kept


def _field_changes(
    views: dict[CustomerId, tuple[dict[str, Any], dict[str, Any]]],
) -> dict[CustomerId, tuple[FieldChange, ...]]:
    """The field-level changes of each customer, from its (actual, wanted) views: one DeepDiff
    over all of them, keyed by customer id (each call costs about half a millisecond before it
    compares anything, so one call per customer cost more than the comparing)."""
    if not views:
        return {}
    from deepdiff import DeepDiff  # imported on demand: it is slow to import, and rarely needed

    # Only the parts that differ go to DeepDiff: its cost is per node, and most are equal.
    actual = {c: _differing(a, w) for c, (a, w) in views.items()}
    wanted = {c: _differing(w, a) for c, (a, w) in views.items()}
    tree = DeepDiff(actual, wanted, view="tree")
    found: dict[CustomerId, list[FieldChange]] = {c: [] for c in views}
    for kind in ("values_changed", "type_changes"):
        for level in tree.get(kind, ()):
            customer_id, *path = level.path(output_format="list")
            found[customer_id].append(FieldChange(tuple(str(p) for p in path), level.t1, level.t2))
    return {c: tuple(sorted(changes, key=lambda c: c.path)) for c, changes in found.items()}


def _compared(
    customer_id: CustomerId, spec: CustomerSpec | None, customer: Customer | None
) -> tuple[CustomerDiff, tuple[dict[str, Any], dict[str, Any]] | None]:
    """The diff of one customer without its field changes, and the (actual, wanted) views to
    find them in when there are any."""
    if spec is None or customer is None:
        missing = tuple(SubscriptionId(s.id) for s in spec.subscriptions) if spec else ()
        return CustomerDiff(customer_id, spec, customer, missing_subscriptions=missing), None
    observed = customer.subscriptions_by_id
    missing = tuple(SubscriptionId(s.id) for s in spec.subscriptions if s.id not in observed)
    unlisted: tuple[SubscriptionId, ...] = ()
    if len(spec.subscriptions) - len(missing) != len(observed):  # some are not listed
        listed = {s.id for s in spec.subscriptions}
        unlisted = tuple(SubscriptionId(s.id) for s in customer.subscriptions if s.id not in listed)
    views = None
    if not _matches(spec, customer):
        wanted, actual = _views(spec, customer)
        views = None if wanted == actual else (actual, wanted)
    return CustomerDiff(customer_id, spec, customer, (), missing, unlisted), views


def diff_customer(
    customer_id: CustomerId, spec: CustomerSpec | None, customer: Customer | None
) -> CustomerDiff:
    """Compare one customer's spec with what was observed of it. Pure."""
    return _with_changes([_compared(customer_id, spec, customer)])[0]


def _with_changes(
    compared: list[tuple[CustomerDiff, tuple[dict[str, Any], dict[str, Any]] | None]],
) -> tuple[CustomerDiff, ...]:
    changes = _field_changes({d.customer_id: v for d, v in compared if v is not None})
    return tuple(
        replace(d, changes=changes[d.customer_id]) if d.customer_id in changes else d
        for d, _views in compared
    )


def _matches(spec: CustomerSpec, customer: Customer) -> bool:
    """The usual case, checked without building anything: nothing the spec sets differs."""
    if customer.relationship != "reseller":
        return False
    if customer.name != spec.name and normalize_name(customer.name) != normalize_name(spec.name):
        return False
    if spec.domain is not None and (customer.domain or "").lower() != spec.domain.lower():
        return False
    observed = customer.subscriptions_by_id
    for sub in spec.subscriptions:
        found = observed.get(sub.id)
        if found is not None and (
            observed_status(sub, found) != sub.status
            or (sub.quantity is not None and found.quantity != sub.quantity)
            or (_renewal_compared(sub, found) and found.auto_renew != sub.auto_renew)
        ):
            return False
    return True


def diff_states(desired: Desired, current: CurrentState) -> tuple[CustomerDiff, ...]:
    """Every customer known to either side, with what differs. Pure."""
    known = current.customers_by_id
    ids = sorted(set(desired.customers) | set(known))
    return _with_changes(
        [
            _compared(CustomerId(i), desired.customers.get(i), known.get(i))  # type: ignore[call-overload]
            for i in ids
        ]
    )
