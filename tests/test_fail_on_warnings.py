"""--fail-on-warnings: a listed subscription that does not exist (a warning) must be able to fail
CI, as policy flags do for tflint users; without it a dry run exits 0 over it."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import StateStore
from helpers import run, snapshot

MISSING = "9f0e6c1f-1111-4c1e-9f5e-2a1c3b4d5e6f"  # a subscription Partner Center does not have


def _list_a_missing_subscription(example: Path) -> None:
    path = example / "specs" / "customers" / "contoso.yaml"
    text = path.read_text()
    anchor = "    subscriptions:\n"
    path.write_text(text.replace(anchor, f"{anchor}      - id: {MISSING}\n", 1))


def test_fail_on_warnings_in_a_dry_run(example: Path) -> None:
    _list_a_missing_subscription(example)
    plain = run("--dry-run", "--detailed-exitcode", cwd=example)
    assert plain.returncode == 2  # changes; the warning alone would never fail it
    strict = run("--dry-run", "--detailed-exitcode", "--fail-on-warnings", cwd=example)
    assert strict.returncode == 1
    assert strict.stdout == plain.stdout and MISSING in strict.stdout  # the plan is still shown
    assert strict.stderr.splitlines()[-1] == (
        "error: the plan has 1 warning and --fail-on-warnings is set"
    )


def test_fail_on_warnings_without_changes_still_fails(example: Path) -> None:
    assert run("--yes", cwd=example).returncode == 0  # converge first
    _list_a_missing_subscription(example)
    plain = run("--dry-run", "--detailed-exitcode", "--output", "json", cwd=example)
    assert plain.returncode == 0 and json.loads(plain.stdout)["warnings"]  # silent before
    strict = run("--dry-run", "--detailed-exitcode", "--fail-on-warnings", cwd=example)
    assert strict.returncode == 1
    applied = run("--yes", "--fail-on-warnings", cwd=example)
    assert applied.returncode == 1
    assert applied.stderr.splitlines()[-1].endswith("--fail-on-warnings is set")


def test_fail_on_warnings_refuses_an_apply_and_applies_nothing(
    example: Path, state_store: StateStore
) -> None:
    """With the records in the folder or in PostgreSQL: nothing written to either."""
    state_store.use(example)
    _list_a_missing_subscription(example)
    before = snapshot(example)
    store = state_store.open(example)
    recorded = (store.load(), store.load_applied(), store.read_journal())
    for output in ("text", "json"):
        result = run("--yes", "--fail-on-warnings", "--output", output, cwd=example)
        assert result.returncode == 1
        assert MISSING in result.stdout  # the plan, with its warning, was shown
        assert result.stderr.splitlines()[-1] == (
            "error: the plan has 1 warning and --fail-on-warnings is set: nothing applied"
        )
    assert snapshot(example) == before
    assert (store.load(), store.load_applied(), store.read_journal()) == recorded
