"""The versioned JSON plan (contract section 4): written by ``--output json`` and ``--plan-out``,
read back by ``--plan FILE``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .current import iso_utc
from .errors import StateError, validation_problem
from .i18n import _
from .plan import Action, ActionType, Blocked, Plan, Unmanaged

FORMAT_VERSION = 1
ResultStatus = Literal["applied", "failed", "skipped"]


class ActionResult(BaseModel):
    """What became of one action of an apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    status: ResultStatus
    error: str | None = None


class PlanDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[1]
    has_changes: bool
    fingerprint: str
    summary: dict[ActionType, int]
    actions: tuple[Action, ...]
    blocked: tuple[Blocked, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    warnings: tuple[str, ...] = ()
    results: tuple[ActionResult, ...] | None = None
    # Partner Center plans: how fresh the observation was (an additive field, see README).
    observation: dict[str, Any] | None = None


def to_document(plan: Plan, results: Sequence[ActionResult] | None = None) -> dict[str, Any]:
    """The plan (and, after an apply, its results) as the contract's JSON document."""
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "has_changes": plan.has_changes,
        "fingerprint": plan.fingerprint,
        "summary": plan.summary,
        "actions": [a.model_dump(mode="json", by_alias=True) for a in plan.actions],
        "blocked": [b.document() for b in plan.blocked],
        "unmanaged": [u.model_dump(mode="json") for u in plan.unmanaged],
        "warnings": list(plan.warnings),
    }
    if plan.freshness is not None:
        seen = plan.freshness
        document["observation"] = {
            "oldest": iso_utc(seen.oldest),
            "age_seconds": seen.age_seconds,
            "from_cache": seen.from_cache,
            "read": seen.read,
        }
    if results is not None:
        document["results"] = [r.model_dump(mode="json") for r in results]
    return document


def _check_order(actions: Sequence[Action], path: Path) -> None:
    seen: set[str] = set()
    for action in actions:
        if action.id in seen:
            raise StateError(_("{}: duplicate action id {}").format(path, action.id))
        missing = [d for d in action.depends_on if d not in seen]
        if missing:
            raise StateError(
                _("{}: action {} depends on {}, which does not come before it").format(
                    path, action.id, ", ".join(missing)
                )
            )
        seen.add(action.id)


def read_plan_file(path: Path) -> Plan:
    """Read a saved plan; refuse one that is malformed or not in a valid order."""
    try:
        document = PlanDocument.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise StateError(
            _("{}: not a saved plan: {}").format(path, validation_problem(exc))
        ) from exc
    _check_order(document.actions, path)
    return Plan(
        fingerprint=document.fingerprint,
        actions=document.actions,
        blocked=document.blocked,
        unmanaged=document.unmanaged,
        warnings=document.warnings,
    )
