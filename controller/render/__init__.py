"""Rendering: a plan or an apply's outcome in, text out; one module per output format.

All user-facing wording of plans lives here, behind ``_()``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..document import ActionResult
from ..i18n import _, ngettext
from ..plan import ACTION_TYPES, ActionType, Blocked, Plan
from ..untrusted import printable

# Destructive kinds first, the order in which summaries list them.
DISPLAY_ORDER: tuple[ActionType, ...] = (
    "remove_relationship",
    "cancel_subscription",
    "suspend_subscription",
    "set_auto_renew",
    "update_quantity",
    "reactivate_subscription",
    "request_relationship",
)
assert set(DISPLAY_ORDER) == set(ACTION_TYPES)
DESTRUCTIVE: frozenset[ActionType] = frozenset(
    {"remove_relationship", "cancel_subscription", "suspend_subscription"}
)


# New-commerce actions, counted in summaries only when a plan has some (most plans have none).
_SHOWN_WHEN_PRESENT: frozenset[ActionType] = frozenset({"cancel_subscription", "set_auto_renew"})


def summary_types(plan: Plan) -> list[ActionType]:
    """The action types a summary counts, in display order."""
    return [t for t in DISPLAY_ORDER if t not in _SHOWN_WHEN_PRESENT or plan.summary[t]]


def action_title(type_: ActionType) -> str:
    return {
        "suspend_subscription": _("suspend subscription"),
        "reactivate_subscription": _("reactivate subscription"),
        "update_quantity": _("update quantity"),
        "cancel_subscription": _("cancel subscription"),
        "set_auto_renew": _("set auto-renewal"),
        "remove_relationship": _("remove relationship"),
        "request_relationship": _("request relationship"),
    }[type_]


def summary_phrase(type_: ActionType, count: int) -> str:
    return {
        "remove_relationship": _("{} to remove"),
        "cancel_subscription": _("{} to cancel"),
        "suspend_subscription": _("{} to suspend"),
        "set_auto_renew": ngettext("{} auto-renewal to set", "{} auto-renewals to set", count),
        "update_quantity": _("{} to update"),
        "reactivate_subscription": _("{} to reactivate"),
        "request_relationship": _("{} to request"),
    }[type_].format(count)


def value_word(value: object) -> str:
    """A ``from``/``to`` value for people: statuses and relationships in the reader's language,
    as the portal shows them (the JSON plan keeps the values themselves); other values as they
    are."""
    words = {
        "active": _("active"),
        "suspended": _("suspended"),
        "cancelled": _("cancelled"),
        "deleted": _("deleted"),
        "expired": _("expired"),
        "disabled": _("disabled"),
        "pending": _("pending"),
        "reseller": _("reseller"),
        "none": _("none"),
    }
    if isinstance(value, bool):  # auto-renewal
        return _("on") if value else _("off")
    return words.get(value, str(value)) if isinstance(value, str) else str(value)


def named(names: Mapping[str, str], item_id: str | None) -> str:
    """``Contoso Ltd (36b8a5ac-…)`` when a name is known, else the id; names are untrusted
    text (from specs, the world, the service), shown escaped (see ``untrusted.printable``)."""
    if item_id is None:
        return ""
    name = names.get(item_id)
    return printable(f"{name} ({item_id})" if name else item_id)


def subject(names: Mapping[str, str], customer_id: str, subscription_id: str | None) -> str:
    """What an action acts on, standing alone (a log line): a subscription with its customer,
    ``Power BI Pro (2d06…) of Contoso Ltd (36b8…)``, or the customer."""
    customer = named(names, customer_id)
    if subscription_id is None:
        return customer
    return _("{} of {}").format(named(names, subscription_id), customer)


def no_changes_line(plan: Plan) -> str:
    """Only what is true of a plan with no actions: "matches" only when nothing is blocked and
    nothing warned, and naming what was observed (Partner Center, or the local world)."""
    counts = []
    if plan.blocked:
        counts.append(
            ngettext("{} blocked", "{} blocked", len(plan.blocked)).format(len(plan.blocked))
        )
    if plan.warnings:
        n = len(plan.warnings)
        counts.append(ngettext("{} warning", "{} warnings", n).format(n))
    if counts:
        return _("No changes; {}.").format(", ".join(counts))
    if plan.source == "local_world":
        return _("No changes. The local world matches the specs.")
    return _("No changes. Partner Center matches the specs.")


def age_text(seconds: int) -> str:
    """``45 s``, ``12 min``, ``3 h 12 min``, ``2 d 3 h``."""
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return _("{} d {} h").format(days, hours % 24)
    if hours:
        return _("{} h {} min").format(hours, minutes % 60)
    if minutes:
        return _("{} min").format(minutes)
    return _("{} s").format(seconds)


def freshness_line(plan: Plan) -> str | None:
    """How old the plan's oldest observation is, when some customers came from the
    observation cache (Partner Center); None when everything was read now."""
    seen = plan.freshness
    if seen is None or not seen.from_cache:
        return None
    return ngettext(
        "Observed: {} customer read now, {} from the observation cache; the oldest observation "
        "is {} old (--refresh full reads every customer).",
        "Observed: {} customers read now, {} from the observation cache; the oldest observation "
        "is {} old (--refresh full reads every customer).",
        seen.read,
    ).format(seen.read, seen.from_cache, age_text(seen.age_seconds))


@dataclass(frozen=True)
class Outcome:
    """An apply's outcome: the plan applied, each action's result, what a fresh plan made
    right afterwards still finds to do (empty when the world converged), and state that could
    not be written."""

    plan: Plan
    results: tuple[ActionResult, ...]
    remaining: Plan
    # What went wrong around the actions: the journal or the records could not be written.
    problems: tuple[str, ...] = ()

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def unobserved(self) -> dict[str, str]:
        """Customers that could not be observed before or after the apply: nothing was done
        for them, or what was done could not be seen."""
        return {**self.plan.unobserved, **self.remaining.unobserved}

    @property
    def succeeded(self) -> bool:
        return (
            self.count("applied") == len(self.results)
            and not self.remaining.has_changes
            and not self.problems
            and not self.unobserved
        )


def explain_blocked(
    blocked: Blocked, plan: Plan, name: Callable[[str | None], str] | None = None
) -> str:
    """One line telling a person what a blocked item waits for, when it ends, and what to do by
    hand; ``name`` shows an id (escaped for the output format)."""
    show = name or (lambda item_id: named(plan.names, item_id))
    customer = show(blocked.customer_id)
    subscription = show(blocked.subscription_id)
    until = blocked.until.isoformat() if blocked.until else _("an unknown date")
    head = _("{} of {}").format(action_title(blocked.type), customer)
    match blocked.reason:
        case "awaiting_acceptance":
            target = _("{} of {}").format(subscription, customer) if subscription else customer
            return _(
                "{} {}: waits for the customer to accept the relationship invitation "
                "(see `reconcile status`)"
            ).format(action_title(blocked.type), target)
        case "awaiting_term_end":
            turning_off = any(
                a.type == "set_auto_renew" and a.subscription_id == blocked.subscription_id
                for a in plan.actions
            )
            renewal = (
                _("auto-renewal is being turned off") if turning_off else _("auto-renewal is off")
            )
            return _(
                "{}: waits for {} (new commerce) to end at its term end {}; {}. "
                "Run again after that date to remove the relationship"
            ).format(head, subscription, until, renewal)
        case "azure_subscriptions_active":
            return _(
                "{}: waits for the active Azure subscriptions under {}: cancel them in the "
                "Azure portal (the customer's or through the partner's admin access), then "
                "run again"
            ).format(head, subscription)
        case "azure_reservations_open":
            return _(
                "{}: waits for open Azure reservations or savings plans: cancel them through "
                "Azure support (a support request from the partner's tenant), then run again"
            ).format(head)
        case "addon_follows_base":
            return _(
                "{}: waits for the add-on {}, which ends only with its base subscription"
            ).format(head, subscription)
        case "cancel_window_closed":
            return _(
                "cancel {}: its cancellation window (168 hours after purchase or renewal) has "
                "closed, so it can no longer be cancelled; set auto_renew: false in the specs "
                "instead, and it ends at its term end {}"
            ).format(subscription, until)
        case "quantity_decrease_not_refundable":
            return _(
                "update quantity of {}: new-commerce seats can be returned only within 168 "
                "hours of purchase or renewal, and no more than the refundable ones; keep the "
                "quantity until the renewal, or lower it then (inside the new window)"
            ).format(subscription)
        case "suspended_by_microsoft":
            return _(
                "reactivate {}: Microsoft suspended it (not the partner), so the controller never "
                "reactivates it; resolve it with Microsoft support"
            ).format(subscription)
        case "term_ended":
            return _(
                "reactivate {}: its term has ended, so it can no longer be reactivated; "
                "a new subscription must be bought"
            ).format(subscription)
        case "reactivation_period_over":
            return _(
                "reactivate {}: it was suspended more than 90 days ago, so it can no longer be "
                "reactivated; a new subscription must be bought"
            ).format(subscription)
    return f"{action_title(blocked.type)} {subscription or customer}: {blocked.reason}"
