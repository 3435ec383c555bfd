"""records.json is reviewable input: a protection removed from it by hand (while no spec says
``protected: false``) is kept, and the plan says so, instead of a silent removal. The attack
first: delete the customer's spec and its id from ``protected`` in one pull request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import desired, gid, records, run, want

from controller.protection import keep_protection, ledger_path
from controller.records import effective_protected

WOODGROVE = "2a97b12f-3a7d-467f-88d1-8172e4e5439b"
PARTNER = "0e1ef465-9299-45ce-a98c-57c49bded0ce"


def lift_by_hand(example: Path) -> None:
    """The pull request: Woodgrove's spec deleted, and its id taken out of ``protected``."""
    (example / "specs" / "customers" / "woodgrove.yaml").unlink()
    path = example / "state" / "records.json"
    document = json.loads(path.read_text())
    document["protected"] = []
    path.write_text(json.dumps(document, indent=2))


def removals(example: Path) -> tuple[list[str], list[str]]:
    result = run("--dry-run", "--output", "json", cwd=example)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    removed = [a["customer_id"] for a in plan["actions"] if a["type"] == "remove_relationship"]
    return removed, plan["warnings"]


def test_the_attack_without_any_witness_removes_the_customer(example: Path) -> None:
    """What a hand edit did before there were witnesses (and still does when both the ledger
    and the journal are missing: the limit the README states)."""
    lift_by_hand(example)
    removed, _warnings = removals(example)
    assert WOODGROVE in removed


def test_the_journal_witness_keeps_protection_on_a_fresh_ci_runner(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("--yes", cwd=example).returncode == 0  # the controller journals what it protects
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "fresh-runner"))  # no ledger here
    lift_by_hand(example)
    removed, warnings = removals(example)
    assert WOODGROVE not in removed
    [warning] = [w for w in warnings if WOODGROVE in w and "stays protected" in w]
    assert "Woodgrove Bank" in warning and "journal.jsonl" in warning
    assert "no spec says protected: false, so it stays protected" in warning


def test_the_ledger_outside_the_checkout_keeps_protection_when_the_journal_is_edited_too(
    example: Path, own_state_home: Path
) -> None:
    assert run("--yes", cwd=example).returncode == 0
    assert json.loads(ledger_path(PARTNER).read_text()) == {"protected": [WOODGROVE]}
    assert str(ledger_path(PARTNER)).startswith(str(own_state_home))
    lift_by_hand(example)
    (example / "state" / "journal.jsonl").unlink()  # the attacker edits the journal as well
    removed, warnings = removals(example)
    assert WOODGROVE not in removed
    assert any(WOODGROVE in w and str(ledger_path(PARTNER)) in w for w in warnings)
    # An apply keeps it protected, and writes it back into records.json.
    assert run("--yes", cwd=example).returncode == 0
    assert WOODGROVE in json.loads((example / "state" / "records.json").read_text())["protected"]


def test_a_spec_saying_protected_false_lifts_it_without_a_warning(example: Path) -> None:
    assert run("--yes", cwd=example).returncode == 0
    spec = example / "specs" / "customers" / "woodgrove.yaml"
    spec.write_text(spec.read_text().replace("protected: true ", "protected: false"))
    assert run("--yes", cwd=example).returncode == 0
    assert json.loads((example / "state" / "records.json").read_text())["protected"] == []
    assert json.loads(ledger_path(PARTNER).read_text()) == {"protected": []}
    spec.unlink()  # now its removal is what the specs ask
    removed, warnings = removals(example)
    assert WOODGROVE in removed and not any("stays protected" in w for w in warnings)


def test_a_damaged_ledger_is_one_line(example: Path) -> None:
    ledger_path(PARTNER).parent.mkdir(parents=True)
    ledger_path(PARTNER).write_bytes(b"\xff")
    result = run("--dry-run", cwd=example)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {ledger_path(PARTNER)}: unreadable protection ledger")


@pytest.mark.parametrize(
    ("spec_protected", "kept"), [(None, True), (True, True), (False, False)], ids=str
)
def test_keep_protection(spec_protected: bool | None, kept: bool) -> None:
    witnessed = {"ledger": frozenset({gid(1)})}
    spec = desired(want(1, protected=spec_protected))
    after, warnings = keep_protection(
        records(), spec, witnessed, names={gid(1): "One"}, records_file="records.json"
    )
    assert (gid(1) in after.protected) is (spec_protected is None)  # else the spec decides
    assert bool(warnings) is (spec_protected is None)
    assert (gid(1) in effective_protected(spec, after)) is kept
