"""Prometheus metrics of the controller (served by watch mode on ``--listen``, at /metrics).

One registry of the controller's own, so that nothing else in the process adds to it. The
Partner Center client reports each response through ``count_partner_center_response``."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from .plan import Plan
from .render import Outcome

REGISTRY = CollectorRegistry(auto_describe=True)

PASSES = Counter(
    "reconcile_passes", "Watch passes, by result (ok, error).", ["result"], registry=REGISTRY
)
PLAN_ACTIONS = Gauge(
    "reconcile_plan_actions",
    "Actions in the plan of the last pass, by action type.",
    ["type"],
    registry=REGISTRY,
)
ACTIONS = Counter(
    "reconcile_actions",
    "Actions run, by action type and result (applied, failed, skipped).",
    ["type", "result"],
    registry=REGISTRY,
)
BLOCKED = Gauge(
    "reconcile_blocked_items",
    "Blocked items in the plan after the last pass (awaiting acceptance, term end, ...).",
    registry=REGISTRY,
)
DRIFT = Gauge(
    "reconcile_drift_actions",
    "Actions of the last plan that undo changes made outside the specs (in the portal).",
    registry=REGISTRY,
)
UNOBSERVED = Gauge(
    "reconcile_unobserved_customers",
    "Customers the last pass could not observe (left out of its plan; the pass goes on).",
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "reconcile_last_success_timestamp_seconds",
    "When the last pass that completed without error ended (Unix time).",
    registry=REGISTRY,
)
LEADER = Gauge(
    "reconcile_leader",
    "1 while this replica is the leader, 0 while it stands by.",
    registry=REGISTRY,
)
PARTNER_CENTER_REQUESTS = Counter(
    "reconcile_partner_center_requests",
    "Partner Center API responses, by HTTP status code.",
    ["code"],
    registry=REGISTRY,
)
PARTNER_CENTER_THROTTLED = Counter(
    "reconcile_partner_center_throttled",
    "Partner Center API responses that were throttling (HTTP 429).",
    registry=REGISTRY,
)


def count_partner_center_response(status: int) -> None:
    """Called by the Partner Center client for every response it receives."""
    PARTNER_CENTER_REQUESTS.labels(code=str(status)).inc()
    if status == 429:
        PARTNER_CENTER_THROTTLED.inc()


def record_plan(plan: Plan) -> None:
    """The plan a pass made: its size by type, drift and blocked items."""
    for action_type, count in plan.summary.items():
        PLAN_ACTIONS.labels(type=action_type).set(count)
    DRIFT.set(sum(1 for a in plan.actions if a.drift))
    BLOCKED.set(len(plan.blocked))
    UNOBSERVED.set(len(plan.unobserved))


def record_outcome(outcome: Outcome) -> None:
    """What an apply did, and what is still blocked afterwards."""
    record_plan(outcome.plan)
    types = {a.id: a.type for a in outcome.plan.actions}
    for result in outcome.results:
        ACTIONS.labels(type=types.get(result.id, "unknown"), result=result.status).inc()
    BLOCKED.set(len(outcome.remaining.blocked))
    UNOBSERVED.set(len(outcome.unobserved))


def record_pass(ok: bool) -> None:
    PASSES.labels(result="ok" if ok else "error").inc()
    if ok:
        LAST_SUCCESS.set(time.time())
