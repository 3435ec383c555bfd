"""``--output json``: exactly one JSON document (contract section 4)."""

from __future__ import annotations

from typing import Any

from ..document import to_document
from ..fsutil import readable_json
from ..i18n import english
from ..plan import Plan
from . import Outcome


def _dump(document: dict[str, Any], *, compact: bool) -> str:
    """Indented for people and files; compact (one line) for a stream of documents."""
    if compact:
        return readable_json(document, separators=(",", ":")) + "\n"
    return readable_json(document, indent=2) + "\n"


def render_plan(plan: Plan, *, compact: bool = False) -> str:
    return _dump(to_document(plan), compact=compact)


def render_outcome(outcome: Outcome, *, compact: bool = False) -> str:
    """The applied plan with its ``results``; what is left afterwards becomes a warning, so the
    document keeps the contract's shape."""
    document = to_document(outcome.plan, outcome.results)
    document["warnings"].extend(outcome.problems)  # the journal or records not written
    for action in outcome.remaining.actions:
        document["warnings"].append(
            english("left after apply: {} {} {}")
            .format(action.type, action.customer_id, action.subscription_id or "")
            .rstrip()
        )
    return _dump(document, compact=compact)
