"""Hostile and broken input through the real command (in-process, as ``reconcile`` runs it):
spec files mutated line by line, state files and saved plans mutated field by field, and odd
option values. Whatever the input, a run ends with exit 0, 1 or 2, never a traceback; an error
is one line; and a refused run (a dry run, ``validate``, ``status``) changes nothing in
``state/``. Each fixed bug has its own test first; the hypothesis tests then search around them.

Unlike the random bytes of ``test_state_damage.py`` and ``test_hostile_specs.py``, which stop at
the first parser, these mutations keep each document well formed and change one value, key or
list item at a time, with values chosen for each field (times at the ends of the calendar, huge
and negative numbers, ids that differ only by case), so they reach the planner, the local world's
rules and the executor."""

from __future__ import annotations

import copy
import gc
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from helpers import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.cli import main

WOODGROVE = "2a97b12f-3a7d-467f-88d1-8172e4e5439b"  # protected
WOODGROVE_E3 = "7af03de6-17ad-40d1-9b02-02e748e6b730"
TAILSPIN = "8ca21255-597d-46ee-8895-0c95529977fd"  # unmanaged
TAILSPIN_BASIC = "49bca495-88ee-4157-9fd8-d8fde6e845d6"
CONTOSO_BASIC = "354ec307-e470-40d2-9563-5fed10cb4044"
LITWARE_E3 = "93909124-e58f-4c11-8226-2c98f6f26972"
EXIT_CODES = (0, 1, 2)


def reconcile(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``reconcile ARGS`` in this process: (exit code, stdout, stderr). Anything but the errors
    the command line reports (a traceback) escapes from ``main`` and fails the test."""
    try:
        code = main(args)
    finally:
        gc.enable()  # a dry run turns the collector off for its short process
    out, err = capsys.readouterr()
    return code, out, err


def assert_reported(code: int, out: str, err: str) -> None:
    """Exit 0, 1 or 2, no traceback, and an error in lines of their own (unless the outcome of
    an apply on stdout says why: a failed action, changes left)."""
    assert code in EXIT_CODES, (code, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    if code == 1 and not out:
        errors = [ln for ln in err.splitlines() if ln.startswith(("error: ", "Error: ", "specs/"))]
        assert errors, err[-2000:]


def world(example: Path) -> dict[str, Any]:
    return json.loads((example / "state/world.json").read_text())


def write_world(example: Path, document: dict[str, Any]) -> None:
    (example / "state/world.json").write_text(json.dumps(document, indent=1))


def subscription(document: dict[str, Any], subscription_id: str) -> dict[str, Any]:
    return next(
        s for c in document["customers"] for s in c["subscriptions"] if s["id"] == subscription_id
    )


# --- times at the ends of the calendar -------------------------------------------------------


def test_a_world_time_utc_cannot_hold_is_one_line(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """0001-01-01T00:00:00+01:00 is in year 0 in UTC: it was an OverflowError."""
    document = world(example)
    document["now"] = "0001-01-01T00:00:00+01:00"
    write_world(example, document)
    monkeypatch.chdir(example)
    before = snapshot(example / "state")
    code, _out, err = reconcile(["--dry-run"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err == "error: state/world.json: now: 0001-01-01T00:00:00+01:00 is out of range in UTC\n"
    assert snapshot(example / "state") == before


def test_a_suspension_dated_at_the_end_of_time_is_reactivated_without_overflow(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """suspended_at + 90 days (the legacy reactivation limit) overflowed in plan and apply."""
    document = world(example)
    subscription(document, CONTOSO_BASIC).update(
        status="suspended", suspended_by="partner", suspended_at="9999-12-31T00:00:00Z"
    )
    write_world(example, document)
    monkeypatch.chdir(example)
    code, out, err = reconcile(["--dry-run"], capsys)
    assert code == 0, err
    assert "reactivate subscription Microsoft 365 Business Basic" in out
    code, out, err = reconcile(["--yes"], capsys)
    assert code == 0, err
    assert subscription(world(example), CONTOSO_BASIC)["status"] == "active"


def test_the_world_clock_stops_at_the_end_of_the_calendar_with_one_line(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A term ending in 9999 renewed into year 10000 (ValueError), and the clock moved past
    9999 (OverflowError): both tracebacks."""
    document = world(example)
    document["now"] = "9999-12-30T00:00:00Z"
    subscription(document, LITWARE_E3)["term_end"] = "9999-12-31T00:00:00Z"
    write_world(example, document)
    monkeypatch.chdir(example)
    code, out, err = reconcile(["world", "advance", "1d"], capsys)
    assert code == 0, err
    assert "renewed until 9999-12-31" in out
    assert subscription(world(example), LITWARE_E3)["term_end"].startswith("9999-12-31T23:59:59")
    before = snapshot(example / "state")
    for duration in ("1d", "9999y"):
        code, _out, err = reconcile(["world", "advance", duration], capsys)
        assert code == 1 and err == (
            "error: the world's clock is 9999-12-31T00:00:00Z: it cannot move past the year 9999\n"
        )
    assert snapshot(example / "state") == before


def test_a_duplicate_key_beside_a_complex_key_is_one_line(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The duplicate-key check added a ``? [a]`` key's node list to a set: TypeError (found by
    the line-mutation fuzz below: ``!!str id`` beside ``id``, after ``? [a]``)."""
    (example / "specs" / "partner.yaml").write_text("partner:\n  ? [a]: x\n  id: 1\n  id: 2\n")
    monkeypatch.chdir(example)
    for command in (["validate"], ["--dry-run"]):
        code, _out, err = reconcile(command, capsys)
        assert code == 1
        assert err == "specs/partner.yaml:4: YAML syntax error: duplicate key 'id'\n"


# --- option values ---------------------------------------------------------------------------

TOO_LONG = ["99999999999999999999999d", "1" * 5000 + "h"]


@pytest.mark.parametrize("duration", TOO_LONG, ids=["huge", "5000 digits"])
@pytest.mark.parametrize("where", [["--dry-run", "--max-age"], ["world", "advance"]])
def test_a_duration_too_long_to_count_is_a_usage_error(
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: list[str],
    duration: str,
) -> None:
    monkeypatch.chdir(example)
    before = snapshot(example / "state")
    code, _out, err = reconcile([*where, duration], capsys)
    assert code == 1 and "Traceback" not in err
    assert "is longer than any duration the controller can count" in err
    assert max(len(line) for line in err.splitlines()) < 300  # the value is quoted cut
    assert snapshot(example / "state") == before


ODD_OPTIONS = [
    ["--lock-timeout", "nan"],
    ["--lock-timeout", "inf"],
    ["--lock-timeout", "1e300"],
    ["--rate-limit", "nan"],
    ["--rate-limit", "inf"],
    ["--rate-limit", "1e-300"],  # a wait of 6e301 s: time.sleep's OverflowError
    ["--rate-limit", "-1"],
    ["--interval", "nan", "--watch"],
    ["--interval", "inf", "--watch"],
    ["--interval", "0", "--watch"],
    ["--parallelism", "0"],
    ["--parallelism", "x"],
    ["--max-removals", "-1"],
    ["--max-cancellations", "1.5"],
    ["--max-stale", "-5"],
    ["--max-age", "-1h"],
    ["--max-age", "1e5h"],
    ["--max-age", ""],
    ["emulator", "--latency", "inf"],
    ["emulator", "--throttle", "nan"],
    ["emulator", "--server-errors", "1.5"],
    ["emulator", "--port", "70000"],
    ["world", "add-subscription", "36b8a5ac-453b-4f02-9061-e10e8bddc18a", "--quantity", "1000001"],
]


@pytest.mark.parametrize("args", ODD_OPTIONS, ids=" ".join)
def test_odd_option_values_are_usage_errors(
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """nan and inf were taken for numbers (a lock timeout of nan waited forever, a rate of nan
    was no limit), a tiny rate crashed the first wait, and --quantity above the world's bound
    was a pydantic traceback."""
    import controller.cli
    import controller.emulator

    def started(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(f"{args} was taken: watch mode or the emulator started")

    monkeypatch.setattr(controller.cli, "_watch", started)  # would run until stopped
    monkeypatch.setattr(controller.emulator, "make_server", started)
    monkeypatch.chdir(example)
    before = snapshot(example / "state")
    if args[0].startswith("--"):
        args = ["--dry-run", *args] if "--watch" not in args else args
    code, _out, err = reconcile(args, capsys)
    assert code == 1, err
    assert "Traceback" not in err and "Error: Invalid value for" in err, err
    assert snapshot(example / "state") == before


def test_watch_backs_off_after_any_number_of_failed_passes(example: Path) -> None:
    """5 s * 2 ** 1024 is no float: the 1,025th failed pass in a row (85 hours of a broken spec
    at the default 300 s) killed watch mode with an OverflowError."""
    from controller.reconcile import Options
    from controller.watch import PassResult, Watcher, WatchSettings

    settings_ = WatchSettings(example / "specs", Options(state_dir=example / "state"), True, 300)
    watcher = Watcher(
        settings_,
        emit=lambda _text: None,
        render_plan=str,
        render_outcome=str,
        render_error=str,
    )
    failed = PassResult(ok=False, error="x")
    delays = [watcher._delay_after(failed) for _ in range(2000)]
    assert delays[:3] == [5.0, 10.0, 20.0] and delays[-1] == 300.0


# --- saved plans -----------------------------------------------------------------------------


def _saved_plan(example: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, _out, err = reconcile(["--dry-run", "--plan-out", "plan.json"], capsys)
    assert code == 0, err
    return json.loads((example / "plan.json").read_text())


def _action(n: int, kind: str, customer: str, sub: str | None, was: Any, to: Any, *deps: str):  # type: ignore[no-untyped-def]
    return {
        "id": f"a{n}",
        "type": kind,
        "customer_id": customer,
        "subscription_id": sub,
        "depends_on": list(deps),
        "from": was,
        "to": to,
        "reason": "customer removed from specs",
    }


TAMPERED = {
    "removes the protected customer": [
        _action(1, "suspend_subscription", WOODGROVE, WOODGROVE_E3, "active", "suspended"),
        _action(2, "remove_relationship", WOODGROVE, None, "reseller", "none", "a1"),
    ],
    "changes an unmanaged subscription": [
        _action(1, "update_quantity", TAILSPIN, TAILSPIN_BASIC, 15, 1000000),
    ],
    "changes the planned value": [
        _action(5, "update_quantity", "36b8a5ac-453b-4f02-9061-e10e8bddc18a", CONTOSO_BASIC, 25, 1),
    ],
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_saved_plan_holding_what_no_plan_made_now_holds_is_refused(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """A saved plan is a file (a CI artifact, a download) and its fingerprint only a hash of
    the current state, which anyone can compute: a hand-edited plan removed the protected
    Woodgrove Bank and changed the unmanaged Tailspin Toys."""
    monkeypatch.chdir(example)
    plan = _saved_plan(example, capsys)
    plan["actions"] = TAMPERED[case]
    (example / "plan.json").write_text(json.dumps(plan))
    before = snapshot(example / "state")
    code, _out, err = reconcile(["--plan", "plan.json", "--yes"], capsys)
    assert code == 1
    assert re.fullmatch(
        r"error: the saved plan's action a\d \(\w+ for customer [0-9a-f-]{36}, subscription "
        r"[0-9a-f-]{36}\) is not one a plan made now holds: make a new plan\n",
        err,
    ), err
    assert snapshot(example / "state") == before


def test_a_saved_plan_must_keep_the_order_a_plan_made_now_has(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(example)
    plan = _saved_plan(example, capsys)
    removal = next(a for a in plan["actions"] if a["type"] == "remove_relationship")
    removal["depends_on"] = removal["depends_on"][:1]  # no longer waits for one suspension
    (example / "plan.json").write_text(json.dumps(plan))
    before = snapshot(example / "state")
    code, _out, err = reconcile(["--plan", "plan.json", "--yes"], capsys)
    assert code == 1
    assert err == (
        f"error: the saved plan's action {removal['id']} must wait for suspend_subscription "
        "78c91c04-ff74-4a11-8186-d464345cc944: make a new plan\n"
    )
    twice = _saved_plan(example, capsys)
    twice["actions"].append({**twice["actions"][-1], "id": "a99"})  # the same request twice
    (example / "plan.json").write_text(json.dumps(twice))
    code, _out, err = reconcile(["--plan", "plan.json", "--yes"], capsys)
    assert code == 1 and "action a99 (request_relationship" in err
    assert snapshot(example / "state") == before


def test_part_of_a_saved_plan_is_applied_as_saved(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Leaving actions out is not tampering (``--only`` does it): what is left is applied,
    under its saved ids, with the fresh plan's reasons."""
    monkeypatch.chdir(example)
    plan = _saved_plan(example, capsys)
    kept = [a for a in plan["actions"] if a["type"] in ("update_quantity", "request_relationship")]
    plan["actions"] = [{**a, "reason": "\x1b[2Jforged"} for a in reversed(kept)]
    (example / "plan.json").write_text(json.dumps(plan))
    code, out, err = reconcile(["--plan", "plan.json", "--yes", "--output", "json"], capsys)
    assert code == 1 and "Traceback" not in err  # changes are left after the apply
    applied = json.loads(out)
    assert [(r["id"], r["status"]) for r in applied["results"]] == [
        (a["id"], "applied") for a in reversed(kept)
    ]
    assert any(w.startswith("left after apply: ") for w in applied["warnings"])
    assert "forged" not in out
    assert subscription(world(example), CONTOSO_BASIC)["quantity"] == 30


def test_a_dependency_listed_twice_starts_its_dependent_once(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The executor counted a dependent once per listing: ``depends_on: [a1, a2, a2]`` in a saved
    plan started the removal twice, and the second one failed (no relationship any more)."""
    monkeypatch.chdir(example)
    plan = _saved_plan(example, capsys)
    removal = next(a for a in plan["actions"] if a["type"] == "remove_relationship")
    removal["depends_on"] = [*removal["depends_on"], removal["depends_on"][-1]]
    (example / "plan.json").write_text(json.dumps(plan))
    code, out, err = reconcile(["--plan", "plan.json", "--yes", "--output", "json"], capsys)
    assert code == 0, err
    assert {r["status"] for r in json.loads(out)["results"]} == {"applied"}
    journal = [json.loads(line) for line in (example / "state/journal.jsonl").open()]
    started = [e["id"] for e in journal if e["event"] == "action_started"]
    assert started.count(removal["id"]) == 1


# --- the protection witnesses ----------------------------------------------------------------


def test_ids_in_the_journal_witness_are_read_as_guids(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``protected`` journal entry naming no GUID crashed the apply with a pydantic
    traceback (after planning, before acting); one naming Woodgrove in upper case said it was
    missing from records.json."""
    journal = example / "state/journal.jsonl"
    entry = {"event": "protected", "time": "2026-12-01T09:00:00Z"}
    entry["protected"] = ["azure_plan", 7, WOODGROVE.upper()]
    journal.write_text(json.dumps(entry) + "\n")
    monkeypatch.chdir(example)
    code, out, err = reconcile(["--dry-run"], capsys)
    assert code == 0 and "is protected but missing" not in out, (out, err)
    code, out, err = reconcile(["--yes"], capsys)
    assert code == 0 and "Traceback" not in err, err


def test_a_ledger_naming_no_guid_is_one_line(
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    own_state_home: Path,
) -> None:
    from controller.protection import ledger_path

    ledger = ledger_path("0e1ef465-9299-45ce-a98c-57c49bded0ce")
    ledger.parent.mkdir(parents=True)
    ledger.write_text(json.dumps({"protected": ["azure_plan"]}))
    monkeypatch.chdir(example)
    before = snapshot(example / "state")
    code, _out, err = reconcile(["--yes"], capsys)
    assert code == 1
    assert err == f"error: {ledger}: protected: must be a list of customer ids\n"
    assert snapshot(example / "state") == before


# --- fuzz: documents mutated one field at a time ---------------------------------------------

TIMES = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T00:00:00Z",
    "9999-12-14T00:00:00Z",  # what Partner Center says of a term that never ends
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-12-01T09:00:00Z",
    "2026-11-30T09:00:00Z",
    "2026-12-08T09:00:00Z",
    "2020-02-29T00:00:00Z",
    "2026-12-01T09:00:00",
    "2026-12-01",
]
NUMBERS = [0, -1, 1, 1_000_000, 1_000_001, 2**63, -(2**63), 2**64, 10**30, 1.5, 1e308, True]
BY_KEY: dict[str, list[Any]] = {
    "now": TIMES,
    "term_end": TIMES,
    "cancel_until": TIMES,
    "suspended_at": TIMES,
    "requested_at": TIMES,
    "time": TIMES,
    "quantity": NUMBERS,
    "refundable_quantity": NUMBERS,
    "azure_subscriptions_active": NUMBERS,
    "azure_reservations_open": NUMBERS,
    "format_version": [0, 2, "1", None, 1.0],
    "status": ["active", "suspended", "deleted", "expired", "pending", "disabled", "cancelled"],
    "commerce": ["legacy", "nce", "azure_plan", "NCE"],
    "relationship": ["reseller", "none", "advisor", "syndication"],
    "suspended_by": ["partner", "microsoft", "x"],
    "auto_renew": [True, False, None, "yes", 0],
    "to": [0, 1, 30, 1_000_001, "none", "suspended", True, None],
    "from": [0, 25, "active", "reseller", False, None],
    "type": ["remove_relationship", "suspend_subscription", "update_quantity", "x"],
    "depends_on": [[], ["a1"], ["a1", "a1"], ["zz"], "a1"],
    "protected": [[], [WOODGROVE.upper()], ["x"], [WOODGROVE, WOODGROVE], None],
}
IDS = [
    WOODGROVE,
    WOODGROVE.upper(),
    TAILSPIN,
    TAILSPIN_BASIC,
    CONTOSO_BASIC,
    "00000000-0000-0000-0000-000000000000",
    "{" + WOODGROVE + "}",
    WOODGROVE.replace("-", ""),
]
ANY_VALUE = st.one_of(
    st.sampled_from([None, True, "", [], {}, "x" * 3000, "\x00", "\ud800", "\u202e", "1:30"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
EXTRA_KEYS = ["x", "now", "suspended_at", "term_end", "parent_id", "commerce", "protected", "id"]


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _paths(value, (*prefix, index))


def _value_for(key: Any, draw: Any) -> Any:
    if isinstance(key, str) and key in BY_KEY and draw(st.booleans()):
        return draw(st.sampled_from(BY_KEY[key]))
    if isinstance(key, str) and key.endswith("id") and draw(st.booleans()):
        return draw(st.sampled_from(IDS))
    return draw(ANY_VALUE)


@st.composite
def mutated(draw: Any, document: Any) -> Any:
    """``document`` with one to three fields replaced, removed, added, or list items repeated."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        operation = draw(st.sampled_from(["replace", "replace", "remove", "repeat", "add"]))
        if operation == "replace":
            parent[key] = _value_for(key, draw)
        elif operation == "remove":
            del parent[key]
        elif operation == "repeat" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))  # a duplicate id, a repeated action
        elif isinstance(parent, dict):
            extra = draw(st.sampled_from(EXTRA_KEYS))
            parent[extra] = _value_for(extra, draw)
    return document


@pytest.fixture(scope="module")
def applied_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example after one apply: records with a pending request, applied.json, a journal;
    and a saved plan of the example as shipped."""
    directory = tmp_path_factory.mktemp("applied")
    shutil.copytree(ROOT / "specs", directory / "specs")
    shutil.copytree(ROOT / "state", directory / "shipped")
    shutil.copytree(ROOT / "state", directory / "state")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        patch.setenv("XDG_STATE_HOME", str(directory / "home"))
        assert main(["--dry-run", "--state", "shipped", "--plan-out", "plan.json"]) == 0
        assert main(["--yes"]) == 0
    gc.enable()
    return directory


class Workspace:
    """A fresh copy of the example for each hypothesis example (a copy is a millisecond), in
    the working directory, with a $XDG_STATE_HOME (the protection ledger) of its own."""

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root = base, root

    def reset(self, state: str = "state") -> Path:
        for child in self.root.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.copytree(self.base / "specs", self.root / "specs")
        shutil.copytree(self.base / state, self.root / "state")
        shutil.copy(self.base / "plan.json", self.root / "plan.json")
        return self.root


@pytest.fixture
def workspace(
    applied_example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield Workspace(applied_example, tmp_path)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Each file, the state it is mutated in, and the commands run on it (those that may not change
# the state first: they are checked for that).
READERS: dict[str, tuple[str, list[list[str]]]] = {
    "state/world.json": ("shipped", [["--dry-run"], ["world", "advance", "1y"], ["--yes"]]),
    "state/records.json": ("state", [["--dry-run"], ["status"], ["--yes"]]),
    "state/applied.json": ("state", [["--dry-run"], ["--yes"]]),
    "state/journal.jsonl": ("state", [["status", "--output", "json"], ["--yes"]]),
}
CHANGES_NOTHING = {"--dry-run", "status"}


def _load(path: Path) -> Any:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(path.read_text())


def _dump(path: Path, document: Any) -> None:
    if path.suffix == ".jsonl" and isinstance(document, list):
        path.write_text("".join(json.dumps(entry) + "\n" for entry in document))
    else:
        path.write_text(json.dumps(document))


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_fuzz_a_state_file_mutated_field_by_field(
    name: str, data: st.DataObject, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    state, commands = READERS[name]
    root = workspace.reset(state)
    path = root / name
    _dump(path, data.draw(mutated(_load(path)), label=name))
    for command in commands:
        before = snapshot(root / "state")
        code, out, err = reconcile(command, capsys)
        assert_reported(code, out, err)
        if command[0] in CHANGES_NOTHING:
            assert snapshot(root / "state") == before, command


@FUZZ
@given(data=st.data())
def test_fuzz_a_tampered_saved_plan_never_acts_beyond_a_plan_made_now(
    data: st.DataObject, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace.reset("shipped")
    plan = root / "plan.json"
    _dump(plan, data.draw(mutated(_load(plan)), label="plan"))
    before = snapshot(root / "state")
    code, out, err = reconcile(["--plan", "plan.json", "--yes", "--output", "json"], capsys)
    assert_reported(code, out, err)
    if not out:  # refused: before acting
        assert code == 1 and snapshot(root / "state") == before
    else:  # what a plan made now holds, or part of it: all of it applies
        assert {r["status"] for r in json.loads(out)["results"]} <= {"applied"}
    after = json.loads((root / "state/world.json").read_text())
    customers = {c["id"]: c for c in after["customers"]}
    assert customers[WOODGROVE]["relationship"] == "reseller"  # protected
    assert subscription(after, TAILSPIN_BASIC) == subscription(
        world(workspace.base), TAILSPIN_BASIC
    )


# --- fuzz: spec files mutated line by line ---------------------------------------------------

# Values YAML 1.1 (PyYAML) and YAML 1.2 (yaml-rs) read differently, or that need care.
YAML_VALUES = [
    "yes", "No", "on", "~", "null", "010", "0o10", "0x1F", "0b101", "1_000", "1:30", "-1:30",
    "2026-01-01", "2026-01-01 10:00:00", ".inf", "-.inf", ".nan", "1e3", "1e400", "-0", "+5",
    "1000001", "9" * 40, "''", '"\\x00"', '"\\ud800"', '"\\u202e"', '"\\N"', '"\\L"', "\u202e",
    "\ufeff", "\x85", "\u2028", "[]", "{}", "[1, 2]", "{a: 1}", "!!str 5", "!!binary aGk=",
    "!!timestamp 2026-01-01", "&a x", "*a", "|\n    x", "'it''s'", "x #c", "- x", "? x",
    "@x", "%x", "!x", "\t5", "<<", ".5", "1__0", "36B8A5AC-453B-4F02-9061-E10E8BDDC18A",
    "{36b8a5ac-453b-4f02-9061-e10e8bddc18a}", "x" * 5000, "\U0001f600",
]  # fmt: skip
YAML_KEYS = [
    "id", "name", "quantity", "status", "commerce", "auto_renew", "protected", "prune",
    "offboarding", "subscriptions", "customers", "partner", "x", "1", "yes", "~", "<<",
    '"id"', "Id", "id\u200b", "!!str id", "? [a]", "? {a: 1}",
]  # fmt: skip
_ENTRY = re.compile(r"^(\s*-?\s*)([^:#\s][^:#]*):(.*)$")


@st.composite
def mutated_text(draw: Any, text: str) -> str:
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        entry = _ENTRY.match(lines[at])
        operation = draw(st.sampled_from(["value", "value", "key", "copy", "drop", "indent"]))
        if entry and operation == "value":
            lines[at] = f"{entry[1]}{entry[2]}: {draw(st.sampled_from(YAML_VALUES))}"
        elif entry and operation == "key":
            lines[at] = f"{entry[1]}{draw(st.sampled_from(YAML_KEYS))}:{entry[3]}"
        elif operation == "copy":
            lines.insert(at, lines[draw(st.integers(0, len(lines) - 1))])
        elif operation == "drop" and len(lines) > 1:
            del lines[at]
        else:
            lines[at] = " " * draw(st.integers(0, 14)) + lines[at].lstrip()
    return "\n".join(lines)


SPEC_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").rglob("*.yaml"))


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_fuzz_spec_files_mutated_line_by_line(
    data: st.DataObject, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace.reset("shipped")
    path = root / data.draw(st.sampled_from(SPEC_FILES), label="file")
    text = data.draw(mutated_text(path.read_text()), label="text")
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    before = snapshot(root / "state")
    answers = {}
    for command in (["validate"], ["--dry-run", "--output", "json"]):
        code, out, err = reconcile(command, capsys)
        assert_reported(code, out, err)
        assert snapshot(root / "state") == before
        problems = [ln for ln in err.splitlines() if ln.startswith("specs/")]
        assert all(re.match(r"specs/[\w/]+\.yaml:\d+: ", ln) for ln in problems), problems
        answers[command[0]] = problems
        if command[0] == "--dry-run" and code != 1:
            json.loads(out)  # exactly one JSON document
    # validate and the dry run read the specs alike (one through the parse cache, maybe)
    assert answers["validate"] == answers["--dry-run"] or not answers["validate"]
