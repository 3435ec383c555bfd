"""Pure: part of a plan, as Terraform's -target (``--only`` / ``--exclude``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

# Reasons and warnings are data: the JSON plan keeps them in English and the text and markdown
# renderers translate them (i18n.shown); so are the errors raised here (the CLI shows them so).
from .i18n import english as _
from .plan import Plan
from .records import Records

_V = TypeVar("_V")


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


def _merge_ids(
    before: tuple[str, ...], after: tuple[str, ...], targets: Targets
) -> tuple[str, ...]:
    kept = {c for c in before if not targets.includes(c)}
    return tuple(sorted(kept | {c for c in after if targets.includes(c)}))


def target_records(before: Records, after: Records, targets: Targets) -> Records:
    """The records after a targeted apply: ``after`` for the targeted customers, ``before`` for
    the rest, so that a partial apply records no baseline for customers it did not touch. Pure."""
    if not targets:
        return after
    pending = [p for p in before.pending if not targets.includes(p.customer_id)]
    pending += [p for p in after.pending if targets.includes(p.customer_id)]
    return after.model_copy(
        update={
            "managed": _merge_ids(before.managed, after.managed, targets),
            "protected": _merge_ids(before.protected, after.protected, targets),
            "pending": tuple(sorted(pending, key=lambda p: p.customer_id)),
            "offboarding": target_mapping(before.offboarding, after.offboarding, targets),
        }
    )


def target_mapping(
    before: Mapping[str, _V], after: Mapping[str, _V], targets: Targets
) -> dict[str, _V]:
    """A per-customer mapping (the applied snapshot) after a targeted apply: ``after`` for the
    targeted customers, ``before`` for the rest. Pure."""
    merged = {c: v for c, v in before.items() if not targets.includes(c)}
    merged.update({c: v for c, v in after.items() if targets.includes(c)})
    return dict(sorted(merged.items()))


def leave_out_unobserved(
    plan: Plan, unobserved: Mapping[str, str] | None, targets: Targets | None = None
) -> Plan:
    """Drop every item of the customers that could not be observed: a customer whose
    subscriptions are unknown must never look like one that has none (which could plan its
    removal or a re-purchase). Those the ``targets`` include are kept in ``Plan.unobserved``,
    with a warning each: the plan is incomplete, as Terraform's plan whose refresh failed, and
    the run fails; leaving them out with --exclude makes it whole again. Pure; dependencies
    never cross customers."""
    if not unobserved:
        return plan
    wanted = targets or Targets()
    missing = {c: why for c, why in sorted(unobserved.items()) if wanted.includes(c)}
    warnings = [
        _("customer {} could not be observed, so nothing is planned for it: {}").format(
            customer_id, why
        )
        for customer_id, why in missing.items()
    ]
    return replace(
        plan,
        actions=tuple(a for a in plan.actions if a.customer_id not in unobserved),
        blocked=tuple(b for b in plan.blocked if b.customer_id not in unobserved),
        unmanaged=tuple(u for u in plan.unmanaged if u.customer_id not in unobserved),
        warnings=(*plan.warnings, *warnings),
        unobserved=missing,
    )
