"""``--output json``: exactly one JSON document (contract section 4)."""

from __future__ import annotations

import json

from ..document import to_document
from ..i18n import _
from ..plan import Plan
from . import Outcome


def render_plan(plan: Plan) -> str:
    return json.dumps(to_document(plan), indent=2) + "\n"


def render_outcome(outcome: Outcome) -> str:
    """The applied plan with its ``results``; what is left afterwards becomes a warning, so the
    document keeps the contract's shape."""
    document = to_document(outcome.plan, outcome.results)
    for action in outcome.remaining.actions:
        document["warnings"].append(
            _("left after apply: {} {} {}")
            .format(action.type, action.customer_id, action.subscription_id or "")
            .rstrip()
        )
    return json.dumps(document, indent=2) + "\n"
