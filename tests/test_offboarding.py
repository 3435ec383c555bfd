"""Offboarding today, end to end through the command line (contract section 7): the world's
clock, the cancellation guard, and what the local world refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Runner
from helpers import run, world_document
from test_cli import assert_clean_failure, edit, snapshot

from controller.cli import parse_duration

LITWARE = "e63a6417-ee7e-4d3a-92d3-a24a3c6a1186"
LITWARE_E3 = "93909124-e58f-4c11-8226-2c98f6f26972"


@pytest.mark.parametrize(
    ("text", "hours"),
    [("8d", 192), ("36h", 36), ("2w", 336), ("1y", 8760), ("1y2d", 8808), (" 1D ", 24)],
)
def test_durations(text: str, hours: int) -> None:
    assert parse_duration(text).total_seconds() == hours * 3600


def test_a_bad_duration_is_a_usage_error_and_changes_nothing(example: Path) -> None:
    before = snapshot(example / "state")
    for bad in ("8", "8x", "d", "1d 2h", "1m"):
        result = run("world", "advance", bad, cwd=example)
        assert result.returncode == 1, result.stderr
        assert "not a duration like 8d" in result.stderr
        assert "Traceback" not in result.stderr
    assert snapshot(example / "state") == before


def _cancellable_litware(example: Path) -> None:
    """Litware bought its E3 yesterday (inside the window); the partner cancels in the window."""
    edit(
        example / "state" / "world.json",
        '"term_end": "2027-03-01T00:00:00Z",',
        '"term_end": "2027-11-30T00:00:00Z", "cancel_until": "2026-12-07T09:00:00Z",',
    )
    edit(
        example / "specs" / "partner.yaml",
        "  prune: managed",
        "  offboarding: cancel_in_window\n  prune: managed",
    )
    (example / "specs" / "customers" / "litware.yaml").unlink()


def test_cancellations_beyond_the_limit_are_refused_and_the_override_lifts_it(
    example: Path,
) -> None:
    _cancellable_litware(example)
    dry = run("--dry-run", "--max-cancellations", "0", cwd=example)
    assert dry.returncode == 0
    assert "more than --max-cancellations 0: applying it will be refused" in dry.stdout
    before = snapshot(example / "state")
    refused = run("--max-cancellations", "0", cwd=example)
    assert_clean_failure(refused, before, example, "cancels 1 subscriptions, more than")
    applied = run(
        "--max-cancellations", "0", "--allow-mass-removal", "--output", "json", cwd=example
    )
    assert applied.returncode == 0, applied.stderr
    document = json.loads(applied.stdout)
    litware = [a["type"] for a in document["actions"] if a["customer_id"] == LITWARE]
    assert litware == ["suspend_subscription", "cancel_subscription", "remove_relationship"]
    world = world_document(example / "state" / "world.json")
    after = next(c for c in world["customers"] if c["id"] == LITWARE)
    assert after["relationship"] == "none"
    assert after["subscriptions"][0]["status"] == "deleted"


def test_the_window_closes_with_the_clock(example: Path, reconcile: Runner) -> None:
    _cancellable_litware(example)
    assert reconcile("world", "advance", "7d").returncode == 0  # 2026-12-08: closed
    planned = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    litware = [a["type"] for a in planned["actions"] if a["customer_id"] == LITWARE]
    assert litware == ["suspend_subscription", "set_auto_renew"]
    [waiting] = [b for b in planned["blocked"] if b["customer_id"] == LITWARE]
    assert (waiting["reason"], waiting["until"]) == ("awaiting_term_end", "2027-11-30")


def test_a_renewal_gives_a_new_window_and_term(example: Path) -> None:
    advanced = run("world", "advance", "1y", cwd=example)  # Litware's E3 renews on 2027-03-01
    assert "Microsoft 365 E3 (Litware Inc): renewed until 2028-03-01" in advanced.stdout
    world = world_document(example / "state" / "world.json")
    e3 = next(s for c in world["customers"] for s in c["subscriptions"] if s["id"] == LITWARE_E3)
    assert e3["term_end"] == "2028-03-01T00:00:00Z"
    assert e3["cancel_until"] == "2027-03-08T00:00:00Z"
    assert e3["refundable_quantity"] == 40


def test_a_saved_plan_made_before_the_window_closed_is_refused_as_stale(
    example: Path, reconcile: Runner
) -> None:
    """The tenant is unchanged, only the clock moved, so the fingerprint still matches; but a
    plan made now no longer cancels (the window closed: auto-renewal off instead), so the saved
    plan is refused before anything is applied, rather than half applied with the cancellation
    refused by the service (900117, which the local world and the emulator answer as Partner
    Center does: tests/test_rules.py, tests/test_emulator.py, tests/test_pccontract.py)."""
    _cancellable_litware(example)
    assert reconcile("--dry-run", "--plan-out", "plan.json").returncode == 0
    saved = json.loads((example / "plan.json").read_text())
    assert reconcile("world", "advance", "7d").returncode == 0
    cancel = next(a for a in saved["actions"] if a["type"] == "cancel_subscription")
    before = snapshot(example / "state")
    refused = reconcile("--plan", "plan.json", "--output", "json")
    assert_clean_failure(refused, before, example, "is not one a plan made now holds")
    assert refused.stderr == (
        f"error: the saved plan's action {cancel['id']} (cancel_subscription for customer "
        f"{LITWARE}, subscription {LITWARE_E3}) is not one a plan made now holds: make a new "
        "plan\n"
    )
    again = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    made_now = {a["type"] for a in again["actions"] if a["subscription_id"] == LITWARE_E3}
    assert made_now == {"set_auto_renew"}


def test_a_saved_cancellation_the_window_now_blocks_says_so(example: Path) -> None:
    """``status: cancelled`` in the specs, saved inside the window and applied after it: a plan
    made now has the cancellation blocked, and the refusal names the reason."""
    _cancellable_litware(example)
    (example / "specs" / "customers" / "litware.yaml").write_text(
        f"customers:\n  - id: {LITWARE}\n    name: Litware Inc\n    subscriptions:\n"
        f"      - id: {LITWARE_E3}\n        commerce: nce\n        status: cancelled\n"
    )
    assert run("--dry-run", "--plan-out", "plan.json", cwd=example).returncode == 0
    assert run("world", "advance", "7d", cwd=example).returncode == 0
    before = snapshot(example / "state")
    refused = run("--plan", "plan.json", cwd=example)
    assert_clean_failure(refused, before, example, "is blocked now (cancel_window_closed)")
