"""``--output markdown``: a plan ready to paste into a pull-request comment.

Stable for the same plan (no times, no run ids), so a bot can update one comment in place.
"""

from __future__ import annotations

import html
import re

from ..i18n import _, ngettext, shown
from ..plan import Action, Plan, Value
from ..untrusted import printable
from . import (
    DESTRUCTIVE,
    Outcome,
    action_title,
    explain_blocked,
    freshness_line,
    named,
    no_changes_line,
    summary_types,
    value_word,
)

MARKER = "<!-- partner-reconciler plan -->"
WARNING = "⚠️"
DRIFT = "🔀"
COLLAPSE_AFTER = 10


# Inline markdown that untrusted text could start anywhere: code, emphasis, links and images,
# strikethrough, table cells, mentions and issue references (HTML is escaped apart).
_INLINE = re.compile(r"([\\`*_\[\]!~|@#])")
# ... and what starts a block only at the beginning of a list item: a heading, a list, a quote.
_BLOCK_START = re.compile(r"^(\d*)([-+.)])")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.:+-]*")


def md(text: object) -> str:
    """Untrusted text as markdown that shows it literally, on one line: control and bidi
    characters escaped (``printable``), then HTML (so ``<!--`` cannot hide the rest of a
    pull-request comment) and markdown punctuation."""
    escaped = html.escape(printable(text), quote=False)
    return _BLOCK_START.sub(r"\1\\\2", _INLINE.sub(r"\\\1", escaped))


def _value(value: Value) -> str:
    """A ``from``/``to`` value: in code style when it is a plain word or number, as it is in any
    plan the controller makes; otherwise (a hand-made plan file) escaped text."""
    text = str(value)
    return f"`{value_word(value)}`" if _PLAIN_VALUE.fullmatch(text) else md(text)


def _action_rows(plan: Plan, actions: list[Action]) -> list[str]:
    rows = [
        "| # | "
        + " | ".join(
            [_("action"), _("customer"), _("subscription"), _("change"), _("after"), _("reason")]
        )
        + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in actions:
        marker = f"{WARNING} " if a.type in DESTRUCTIVE else ""
        cells = [
            md(a.id),
            marker + action_title(a.type),
            _named(plan, a.customer_id),
            _named(plan, a.subscription_id),
            f"{_value(a.from_)} → {_value(a.to)}",
            md(", ".join(a.depends_on)),
            md(shown(a.reason)),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _named(plan: Plan, item_id: str | None) -> str:
    return md(named(plan.names, item_id))


def _section(title: str, body: list[str], *, collapse: bool) -> list[str]:
    if not collapse:
        return [f"#### {title}", "", *body, ""]
    return ["<details>", f"<summary>{title}</summary>", "", *body, "", "</details>", ""]


def render_plan(plan: Plan) -> str:
    lines = [MARKER, "### " + _("partner-reconciler plan"), ""]
    if not plan.has_changes:
        lines += [f"**{no_changes_line(plan)}**", ""]
    else:
        lines += ["| " + _("action") + " | " + _("count") + " |", "|---|---:|"]
        for type_ in summary_types(plan):
            marker = f"{WARNING} " if type_ in DESTRUCTIVE and plan.summary[type_] else ""
            lines.append(f"| {marker}{action_title(type_)} | {plan.summary[type_]} |")
        lines.append("")
    destructive = [a for a in plan.actions if a.type in DESTRUCTIVE and not a.drift]
    other = [a for a in plan.actions if a.type not in DESTRUCTIVE and not a.drift]
    drift = [a for a in plan.actions if a.drift]
    if destructive:
        title = f"{WARNING} " + _("Removals and suspensions ({})").format(len(destructive))
        collapse = len(destructive) > COLLAPSE_AFTER
        lines += _section(title, _action_rows(plan, destructive), collapse=collapse)
    if other:
        title = _("Other changes ({})").format(len(other))
        lines += _section(title, _action_rows(plan, other), collapse=len(other) > COLLAPSE_AFTER)
    if drift:
        title = f"{DRIFT} " + _("Drift: changed outside the specs, to be undone ({})").format(
            len(drift)
        )
        lines += _section(title, _action_rows(plan, drift), collapse=len(drift) > COLLAPSE_AFTER)
    if plan.blocked:
        rows = [
            f"- {explain_blocked(b, plan, lambda item_id: _named(plan, item_id))}"
            for b in plan.blocked
        ]
        title = _("Blocked ({})").format(len(plan.blocked))
        lines += _section(title, rows, collapse=True)
    if plan.unmanaged:
        customers = sum(u.subscription_id is None for u in plan.unmanaged)
        subscriptions = len(plan.unmanaged) - customers
        rows = [f"- {_named(plan, u.subscription_id or u.customer_id)}" for u in plan.unmanaged]
        title = _("Unmanaged, left alone: {}, {}").format(
            ngettext("{} customer", "{} customers", customers).format(customers),
            ngettext("{} subscription", "{} subscriptions", subscriptions).format(subscriptions),
        )
        lines += _section(title, rows, collapse=True)
    if plan.warnings:
        lines += _section(
            _("Warnings ({})").format(len(plan.warnings)),
            [f"- {md(shown(w))}" for w in plan.warnings],
            collapse=False,
        )
    if (observed := freshness_line(plan)) is not None:
        lines += [f"_{md(observed)}_", ""]
    fingerprint = _("fingerprint")
    lines.append(f"<sub>{fingerprint} {_value(plan.fingerprint[:16])}</sub>")
    return "\n".join(lines) + "\n"


def render_outcome(outcome: Outcome) -> str:
    applied, failed, skipped = (outcome.count(s) for s in ("applied", "failed", "skipped"))
    head = _("**Applied {} of {}**, failed {}, skipped {}.").format(
        applied, len(outcome.results), failed, skipped
    )
    failures = [
        f"- {md(r.id)} {r.status}: {md(r.error or '')}"
        for r in outcome.results
        if r.status != "applied"
    ]
    n_left = len(outcome.remaining.actions)
    left = (
        ngettext("Still to do: {} action.", "Still to do: {} actions.", n_left).format(n_left)
        if outcome.remaining.has_changes
        else _("Converged: a fresh plan has no changes.")
    )
    return render_plan(outcome.plan) + "\n" + "\n".join([head, *failures, left]) + "\n"
