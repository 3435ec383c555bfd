"""Human-readable plans and outcomes, like Terraform's: destructive actions first, one summary
line, colour only on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import click

from ..document import ActionResult
from ..i18n import _, ngettext, shown
from ..plan import Action, ActionType, Plan
from ..untrusted import printable
from . import (
    Outcome,
    action_title,
    explain_blocked,
    freshness_line,
    named,
    no_changes_line,
    subject,
    summary_phrase,
    summary_types,
    value_word,
)

_SYMBOL: dict[ActionType, tuple[str, str]] = {
    "remove_relationship": ("-", "red"),
    "cancel_subscription": ("x", "red"),
    "suspend_subscription": ("!", "red"),
    "set_auto_renew": ("~", "yellow"),
    "update_quantity": ("~", "yellow"),
    "reactivate_subscription": ("+", "green"),
    "request_relationship": ("+", "green"),
}

Style = Callable[..., str]


def _plain(text: str, **_styles: object) -> str:
    return text


def _styler(colour: bool) -> Style:
    return click.style if colour else _plain


def action_line(action: Action, plan: Plan, style: Style, *, alone: bool = False) -> str:
    """One action of a plan; ``alone`` (not under its customer's heading) names the customer."""
    symbol, colour = _SYMBOL[action.type]
    if alone:
        target = subject(plan.names, action.customer_id, action.subscription_id)
    else:
        target = named(plan.names, action.subscription_id or action.customer_id)
    # A saved plan file is untrusted too: its ids and values are shown escaped.
    change = printable(f"{value_word(action.from_)} -> {value_word(action.to)}")
    after = _(", after {}").format(printable(", ".join(action.depends_on)))
    head = style(
        f"{symbol} {printable(action.id)} {action_title(action.type)}", fg=colour, bold=True
    )
    return f"  {head} {target}: {change}{after if action.depends_on else ''}"


def summary_line(plan: Plan) -> str:
    parts = [summary_phrase(t, plan.summary[t]) for t in summary_types(plan)]
    extra = []
    if plan.blocked:
        extra.append(_("{} blocked").format(len(plan.blocked)))
    if plan.unmanaged:
        extra.append(_("{} unmanaged").format(len(plan.unmanaged)))
    tail = "; " + ", ".join(extra) if extra else ""
    return _("Plan: {}{}.").format(", ".join(parts), tail)


def _by_customer(actions: list[Action]) -> dict[str, list[Action]]:
    """Each customer's actions, customers in order of their first action: one pass, so a plan
    of many customers renders in linear time."""
    grouped: dict[str, list[Action]] = {}
    for action in actions:
        grouped.setdefault(action.customer_id, []).append(action)
    return grouped


def _grouped(plan: Plan, actions: list[Action], style: Style) -> list[str]:
    """Actions under a heading per customer, in plan order."""
    lines: list[str] = []
    for customer_id, mine in _by_customer(actions).items():
        reasons = printable(", ".join(dict.fromkeys(shown(a.reason) for a in mine)))
        lines += ["", f"{style(named(plan.names, customer_id), bold=True)}: {reasons}"]
        lines += [action_line(a, plan, style) for a in mine]
    return lines


def render_plan(plan: Plan, *, colour: bool = False) -> str:
    style = _styler(colour)
    lines: list[str] = []
    from_specs = [a for a in plan.actions if not a.drift]
    drift = [a for a in plan.actions if a.drift]
    if not plan.has_changes:
        lines.append(
            style(no_changes_line(plan), fg="yellow" if plan.blocked or plan.warnings else "green")
        )
    if from_specs:
        lines.append(_("The controller will perform these actions, destructive ones first:"))
        lines += _grouped(plan, from_specs, style)
    if drift:
        lines += [
            "",
            style(
                _("Drift: changed outside the specs (in the portal), to be undone:"),
                fg="yellow",
                bold=True,
            ),
        ]
        lines += _grouped(plan, drift, style)
    if plan.blocked:
        lines += ["", _("Blocked (cannot be done yet; what it waits for, and what to do):")]
        lines += [f"  {explain_blocked(b, plan)}" for b in plan.blocked]
    if plan.unmanaged:
        lines += ["", _("Unmanaged (not in the specs' care; reported and left alone):")]
        for item in plan.unmanaged:
            what = named(plan.names, item.customer_id)
            if item.subscription_id:
                what += _(", subscription {}").format(named(plan.names, item.subscription_id))
            lines.append(f"  {what}")
    if plan.warnings:
        lines += ["", _("Warnings:")]
        lines += [style(f"  ! {printable(shown(w))}", fg="yellow") for w in plan.warnings]
    if (observed := freshness_line(plan)) is not None:
        lines += ["", observed]
    lines += ["", style(summary_line(plan), bold=True)]
    return "\n".join(lines) + "\n"


def result_line(action: Action, result: ActionResult, names: Mapping[str, str]) -> str:
    """One line per finished action, for logs; the error may quote the service: escaped."""
    target = subject(names, action.customer_id, action.subscription_id)
    error = f": {printable(result.error)}" if result.error else ""
    head = f"{result.status:<7} {printable(action.id)} {action_title(action.type)}"
    return f"{head} {target}{error}"


def render_outcome(outcome: Outcome, *, colour: bool = False) -> str:
    style = _styler(colour)
    total = len(outcome.results)
    applied, failed, skipped = (outcome.count(s) for s in ("applied", "failed", "skipped"))
    lines = [
        style(
            _("Apply: applied {} of {}, failed {}, skipped {}.").format(
                applied, total, failed, skipped
            ),
            fg="green" if failed == 0 and skipped == 0 else "red",
            bold=True,
        )
    ]
    by_id = {a.id: a for a in outcome.plan.actions}
    for result in outcome.results:
        if result.status != "applied":
            lines.append("  " + result_line(by_id[result.id], result, outcome.plan.names))
    if outcome.remaining.has_changes:
        lines += ["", _("Still to do after the apply (run again to retry):")]
        lines += [
            action_line(a, outcome.remaining, style, alone=True) for a in outcome.remaining.actions
        ]
    elif outcome.unobserved:  # nothing to do for what was seen; the rest was not seen
        n = len(outcome.unobserved)
        lines.append(
            ngettext(
                "Not converged: {} customer could not be observed (see the errors).",
                "Not converged: {} customers could not be observed (see the errors).",
                n,
            ).format(n)
        )
    else:
        lines.append(_("Converged: a fresh plan has no changes."))
    if outcome.remaining.blocked:
        lines.append(_("Blocked, for a later run or a person:"))
        lines += [f"  {explain_blocked(b, outcome.remaining)}" for b in outcome.remaining.blocked]
    return "\n".join(lines) + "\n"
