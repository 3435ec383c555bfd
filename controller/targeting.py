"""Pure: part of a plan, as Terraform's -target (``--only`` / ``--exclude``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .i18n import _
from .plan import Plan


@dataclass(frozen=True)
class Targets:
    """Part of a plan, as Terraform's -target: only these customers, or all but these."""

    only: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.only or self.exclude)

    def includes(self, customer_id: str) -> bool:
        return (not self.only or customer_id in self.only) and customer_id not in self.exclude


def target(plan: Plan, targets: Targets) -> Plan:
    """Keep the targeted customers' actions, blocked and unmanaged items, and say the plan is
    partial. Pure. Dependencies never cross customers, so what is kept is still a valid DAG; ids
    are kept, so an action has the same id in the partial and the whole plan."""
    if not targets:
        return plan
    parts = []
    if targets.only:
        parts.append(_("only {}").format(", ".join(sorted(targets.only))))
    if targets.exclude:
        parts.append(_("excluding {}").format(", ".join(sorted(targets.exclude))))
    warning = _("this plan is partial ({}): the rest of the specs is not reconciled").format(
        "; ".join(parts)
    )
    return replace(
        plan,
        actions=tuple(a for a in plan.actions if targets.includes(a.customer_id)),
        blocked=tuple(b for b in plan.blocked if targets.includes(b.customer_id)),
        unmanaged=tuple(u for u in plan.unmanaged if targets.includes(u.customer_id)),
        warnings=tuple(dict.fromkeys((*plan.warnings, warning))),
    )
