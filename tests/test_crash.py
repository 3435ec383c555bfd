"""Real ``reconcile`` processes on a large local plan: killed with SIGKILL at many moments,
stopped with SIGTERM, and started twice at once. Whatever happens, the world stays readable, no
relationship is removed while a subscription is active, and the next run converges.

The tests of the records run with them in the state folder and in PostgreSQL (``state_store``);
those of the world written in batches are about the world file, with the file store."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import StateStore
from helpers import RECONCILE, run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from generate import generate  # noqa: E402

from controller.providers.local import read_world  # noqa: E402
from controller.records import FileStore  # noqa: E402

APPLY = ["--allow-mass-removal", "--rate-limit", "0", "--parallelism", "4"]


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 300 actions: 75 customers removed, 3 active subscriptions each."""
    root = tmp_path_factory.mktemp("large")
    generate(root, customers=80, subscriptions=3, remove=0.95, seed=3)
    return root


def fresh_copy(large: Path, tmp_path: Path) -> Path:
    shutil.copytree(large / "specs", tmp_path / "specs")
    shutil.copytree(large / "state", tmp_path / "state")
    return tmp_path


def start(directory: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RECONCILE, *APPLY, *extra],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def file_journal(directory: Path) -> list[dict]:
    return FileStore(directory / "state").read_journal()


def kill_part_way(
    process: subprocess.Popen[str],
    victim: subprocess.Popen[str],
    journal: Callable[[], list[dict]],
    entries: int,
) -> None:
    """SIGKILL ``victim`` once ``process`` has started a run and journaled ``entries`` more
    entries: a point in the run counted in its own steps, so that the kill lands part way however
    fast or slow the machine (a delay in seconds would miss a run that is quicker)."""
    runs_before = sum(e["event"] == "run_started" for e in journal())
    deadline = time.monotonic() + 60
    while sum(e["event"] == "run_started" for e in journal()) == runs_before:
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    target = len(journal()) + entries
    while len(journal()) < target and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.001)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()


def check_invariants(directory: Path, store: StateStore) -> None:
    world = read_world(directory / "state" / "world.json")  # readable, valid
    for customer in world.customers:
        if customer.relationship == "none":
            assert all(s.status != "active" for s in customer.subscriptions), customer.id
    store.open(directory).load()  # readable, valid
    if store.kind == "file":
        json.loads((directory / "state" / "records.json").read_text())
    # Within each run, in file order: a removal starts only after every suspension that run
    # started for that customer is on record as applied. (Across runs the world is the record:
    # a kill may lose the last outcomes of a run, and the next run observes what they did.)
    started: dict[tuple[str, str], set[str]] = {}
    applied: dict[tuple[str, str], set[str]] = {}
    for entry in store.open(directory).read_journal():
        key = (entry.get("run", ""), entry.get("customer_id") or "")
        if entry.get("type") == "suspend_subscription":
            book = started if entry["event"] == "action_started" else applied
            if entry["event"] in ("action_started", "action_applied"):
                book.setdefault(key, set()).add(entry["subscription_id"])
        if entry["event"] == "action_started" and entry["type"] == "remove_relationship":
            assert started.get(key, set()) <= applied.get(key, set()), "removal before suspension"


def test_sigkill_at_many_moments_never_breaks_an_ordering_rule_and_the_next_run_converges(
    large: Path, tmp_path: Path, state_store: StateStore
) -> None:
    """Ten kills with the records in the folder; five (a representative subset, to keep CI
    short) with the records in PostgreSQL, where the kill also drops the connection mid-apply."""
    directory = fresh_copy(large, tmp_path)
    state_store.use(directory)
    journal = state_store.open(directory).read_journal
    kills = 10 if state_store.kind == "file" else 5
    rng = random.Random(42)
    interrupted = 0
    for _ in range(kills):
        process = start(directory)
        kill_part_way(process, process, journal, rng.randint(0, 150))
        check_invariants(directory, state_store)
        runs = [e for e in journal() if e["event"] == "run_started"]
        finished = [e for e in journal() if e["event"] == "run_finished"]
        interrupted += len(runs) > len(finished)
    assert interrupted >= kills * 3 // 10, "the kills should land in the middle of applies"
    final = run(*APPLY, cwd=directory)
    assert final.returncode == 0, final.stderr
    check_invariants(directory, state_store)
    assert run("--dry-run", "--detailed-exitcode", cwd=directory).returncode == 0
    world = read_world(directory / "state" / "world.json")
    assert sum(c.relationship == "none" for c in world.customers) >= 70
    check_nothing_lost_or_done_twice(directory, state_store)


def check_nothing_lost_or_done_twice(directory: Path, store: StateStore) -> None:
    """No change was applied twice across the runs (a resumed run plans from what it observes),
    each one on record as applied is in the world, and the records forgot exactly the customers
    whose relationship ended."""
    world = read_world(directory / "state" / "world.json").customers_by_id
    entries = store.open(directory).read_journal()
    applied = [
        (e["type"], e["customer_id"], e["subscription_id"])
        for e in entries
        if e["event"] == "action_applied"
    ]
    assert len(applied) == len(set(applied)), "an action was applied twice"
    for kind, customer_id, subscription_id in applied:
        customer = world[customer_id]
        if kind == "remove_relationship":
            assert customer.relationship == "none"
        elif kind == "suspend_subscription":
            assert customer.subscriptions_by_id[subscription_id].status == "suspended"
    managed = set(store.open(directory).load().managed)
    assert not {c for c in managed if world[c].relationship == "none"}, "a removed one is managed"


def test_sigterm_finishes_what_is_in_flight_records_it_and_exits_143(
    large: Path, tmp_path: Path, state_store: StateStore
) -> None:
    directory = fresh_copy(large, tmp_path)
    state_store.use(directory)
    journal = state_store.open(directory).read_journal
    process = start(directory)
    deadline = time.monotonic() + 30
    while not any(e["event"] == "action_applied" for e in journal()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "SIGTERM" in stderr
    entries = journal()
    started = {e["id"] for e in entries if e["event"] == "action_started"}
    outcomes = {e["id"] for e in entries if e["event"] in ("action_applied", "action_failed")}
    assert started == outcomes  # every action that started was recorded as finished
    last = [e for e in entries if e["event"] != "protected"][-1]  # protection is journaled after
    assert last["event"] == "run_finished" and last["skipped"] > 0
    check_invariants(directory, state_store)
    status = run("status", cwd=directory)
    assert "skipped" in status.stdout
    assert run(*APPLY, cwd=directory).returncode == 0
    assert run("--dry-run", "--detailed-exitcode", cwd=directory).returncode == 0


def test_two_applies_at_once_exactly_one_applies_and_the_other_names_the_holder(
    large: Path, tmp_path: Path, state_store: StateStore
) -> None:
    directory = fresh_copy(large, tmp_path)
    state_store.use(directory)
    journal = state_store.open(directory).read_journal
    # 100 requests a second: the winner holds the lock for about 3 s, so that the other, however
    # late a loaded machine starts it, still finds it held (unthrottled, the 300 changes
    # appended to the world's log take well under a second).
    held = ("--rate-limit", "6000")
    first, second = start(directory, *held), start(directory, *held)
    results = [(p, *p.communicate(timeout=120)) for p in (first, second)]
    codes = sorted(p.returncode for p, _out, _err in results)
    assert codes == [0, 1], [(p.returncode, err) for p, _out, err in results]
    winner = next(p for p, _out, _err in results if p.returncode == 0)
    loser_err = next(err for p, _out, err in results if p.returncode == 1)
    assert f"locked by pid {winner.pid}" in loser_err
    assert sum(e["event"] == "run_started" for e in journal()) == 1


def test_with_a_lock_timeout_the_second_apply_waits_its_turn(
    large: Path, tmp_path: Path, state_store: StateStore
) -> None:
    directory = fresh_copy(large, tmp_path)
    state_store.use(directory)
    journal = state_store.open(directory).read_journal
    first = start(directory)
    deadline = time.monotonic() + 30
    while not any(e["event"] == "run_started" for e in journal()):  # it holds the lock
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    second = start(directory, "--lock-timeout", "120")
    assert first.wait(timeout=120) == 0
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert sum(e["event"] == "run_started" for e in journal()) == 1  # nothing left to do


# --- the world written in batches: a change is on disk before it is reported ------------------


@pytest.fixture(scope="module")
def quantities(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 quantity changes, one per customer (each subscription shows whether it was made)."""
    root = tmp_path_factory.mktemp("quantities")
    generate(root, customers=300, subscriptions=2, drift=1.0, seed=5)
    return root


def unwritten_but_applied(directory: Path, before: dict[str, int]) -> list[str]:
    """Quantity changes the journal says applied that the world file does not show."""
    world = read_world(directory / "state" / "world.json")
    shown = {s.id: s.quantity for c in world.customers for s in c.subscriptions}
    return [
        e["subscription_id"]
        for e in file_journal(directory)
        if e["event"] == "action_applied" and e["type"] == "update_quantity"
        if shown[e["subscription_id"]] != before[e["subscription_id"]] + 1
    ]


def start_emulator_process(directory: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [RECONCILE, "emulator", "--port", "0", "--latency", "0.005"],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    url = process.stderr.readline().split(" on ")[1].split()[0]
    env = {
        "PATH": "/usr/bin:/bin",
        "PARTNER_CENTER_BASE_URL": url,
        "PARTNER_CENTER_TENANT_ID": "0e1ef465-9299-45ce-a98c-57c49bded0ce",
        "PARTNER_CENTER_ACCESS_TOKEN": "x",
    }
    return process, env


@pytest.mark.parametrize("killed", ["apply", "emulator"])
def test_sigkill_while_the_world_is_written_in_batches_loses_no_reported_change(
    quantities: Path, tmp_path: Path, killed: str
) -> None:
    """kill -9 of a local apply at parallelism 8, or of the emulator serving one: every change
    the journal says applied is in the world (world.json and its change log, where the kills
    leave changes not yet folded in), and the next run folds the log in and converges."""
    directory = fresh_copy(quantities, tmp_path)
    world = read_world(directory / "state" / "world.json")
    before = {s.id: s.quantity for c in world.customers for s in c.subscriptions}
    rng = random.Random(7)
    kills = 3 if killed == "apply" else 2
    log = directory / "state" / "world.changes.jsonl"
    logs_left = 0
    for _ in range(kills):
        extra: list[str] = ["--parallelism", "8"]
        emulator, env = None, None
        if killed == "emulator":
            emulator, env = start_emulator_process(directory)
            extra = ["--provider", "partner-center", "--parallelism", "8"]
        process = start(directory, *extra, env=env)
        kill_part_way(
            process, emulator or process, lambda: file_journal(directory), rng.randint(0, 150)
        )
        if emulator is not None:
            process.send_signal(signal.SIGKILL)  # its requests now fail and are retried
            process.communicate()
        assert unwritten_but_applied(directory, before) == []
        logs_left += log.exists()
    assert logs_left > 0, "the kills should land while changes are in the log"
    applied = {
        e["subscription_id"] for e in file_journal(directory) if e["event"] == "action_applied"
    }
    assert 0 < len(applied) < 300, "the kills should land in the middle of applies"
    final = run(*APPLY, cwd=directory)
    assert final.returncode == 0, final.stderr
    assert not log.exists()  # folded into world.json by the run's first write and its end
    assert unwritten_but_applied(directory, before) == []
    assert run("--dry-run", "--detailed-exitcode", cwd=directory).returncode == 0
