"""Pure: telling drift (changes made outside the specs, in the portal) from changes made in the
specs, by comparing with what the specs asked at the last apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .current import CurrentState

# Reasons and warnings are data: the JSON plan keeps them in English and the text and markdown
# renderers translate them (i18n.shown); so are the errors raised here (the CLI shows them so).
from .i18n import english as _
from .plan import Action, Plan
from .spec import Desired

Snapshot = Mapping[str, Mapping[str, str]]  # customer -> subscription -> "status/quantity"


def spec_snapshot(desired: Desired) -> dict[str, dict[str, str]]:
    """What the specs asked of each subscription, kept after an apply to tell drift later."""
    return {
        customer_id: {
            s.id: f"{s.status}/{'' if s.quantity is None else s.quantity}"
            for s in spec.subscriptions
        }
        for customer_id, spec in desired.customers.items()
    }


def settled_snapshot(desired: Desired, after: CurrentState, remaining: Plan) -> Snapshot:
    """What the specs asked of each subscription that the world matched after an apply. Pure.

    Only that is a baseline for drift: a customer without a reseller relationship (pending, or
    refused) and a subscription that still has something to do (blocked until the customer
    accepts, or failed) did not match, so what happens to them next is the specs' work, not
    drift (the reactivations after a re-added customer accepts are the second half of the
    re-add)."""
    related = {c.id for c in after.customers if c.relationship == "reseller"}
    unsettled = {(a.customer_id, a.subscription_id) for a in remaining.actions}
    unsettled |= {(b.customer_id, b.subscription_id) for b in remaining.blocked}
    return {
        customer_id: {
            s: asked for s, asked in subscriptions.items() if (customer_id, s) not in unsettled
        }
        for customer_id, subscriptions in spec_snapshot(desired).items()
        if customer_id in related and (customer_id, None) not in unsettled
    }


def attribute_drift(plan: Plan, desired: Desired, applied: Snapshot) -> Plan:
    """Mark the actions that undo changes made outside the specs. Pure.

    A subscription action is drift when the specs ask for the same as at the last apply (so the
    world moved, not the specs); a request is drift when the customer was in the specs at the
    last apply (the relationship ended from the other side). Removals follow the specs."""
    if not applied:
        return plan
    now = spec_snapshot(desired)

    def drifted(action: Action) -> bool:
        before = applied.get(action.customer_id)
        if before is None or action.customer_id not in desired.customers:
            return False
        if action.type == "request_relationship":
            return True
        sub = action.subscription_id or ""
        return sub in before and before[sub] == now[action.customer_id].get(sub)

    actions = tuple(
        a.model_copy(
            update={
                "drift": True,
                "reason": _("drift: changed outside the specs; {}").format(a.reason),
            }
        )
        if drifted(a)
        else a
        for a in plan.actions
    )
    return replace(plan, actions=actions)
