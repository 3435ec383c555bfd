"""The controller's records: protection, the managed set, pending requests, files and the lock.
(The PostgreSQL store's own tests are in test_pgstore.py; the journal's concurrency is tested
here on both stores.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PARTNER, customer, desired, gid, records, sub, want, world

from controller.errors import LockError, StateError
from controller.records import (
    FileStore,
    Records,
    RecordStore,
    effective_protected,
    next_records,
)


@pytest.mark.parametrize(
    ("recorded", "spec_protected", "expected"),
    [
        ((), None, False),
        ((), True, True),
        ((1,), None, True),  # listed without the key: protection stays
        ((1,), False, False),  # only an explicit false lifts it
    ],
)
def test_protection(recorded: tuple, spec_protected: bool | None, expected: bool) -> None:
    spec = desired(want(1, protected=spec_protected))
    assert (gid(1) in effective_protected(spec, records(protected=recorded))) is expected


def test_protection_survives_the_deletion_of_the_block() -> None:
    after = next_records(records(), desired(want(1, protected=True)), world(customer(1)))
    assert gid(1) in effective_protected(desired(want(2)), after)


def test_managed_set_follows_the_specs_and_forgets_removed_customers() -> None:
    current = world(customer(1), customer(2, relationship="none"), customer(3))
    after = next_records(records(managed=(1, 2, 3)), desired(want(4)), current)
    assert after.managed == (gid(1), gid(3), gid(4))  # 2 was removed; 4 is in the specs


def test_pending_requests_end_on_acceptance_or_when_the_specs_drop_them() -> None:
    current = world(customer(1), customer(2, relationship="none"), customer(3, relationship="none"))
    after = next_records(records(pending=(1, 2, 3)), desired(want(1), want(2)), current)
    assert [p.customer_id for p in after.pending] == [gid(2)]


def test_records_file_round_trip_is_stable(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert store.load() == Records()
    recs = records(managed=(2, 1), protected=(1,), pending=(3,))
    store.save(recs)
    assert store.load() == recs
    stamp = store.records_path.stat().st_mtime_ns
    time.sleep(0.01)
    store.save(recs)
    assert store.records_path.stat().st_mtime_ns == stamp  # unchanged records are not rewritten
    assert json.loads(store.records_path.read_text())["format_version"] == 1


def test_a_corrupt_records_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "records.json").write_text('{"managed": "nope"}')
    with pytest.raises(StateError, match="records.json: managed"):
        FileStore(tmp_path).load()


def test_a_torn_last_journal_line_is_ignored(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.append_journal({"event": "run_started", "run": "r"})
    with open(store.journal_path, "a") as handle:
        handle.write('{"event": "action_sta')
    assert store.read_journal() == [{"event": "run_started", "run": "r"}]


def test_the_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with store.lock(timeout=0), pytest.raises(LockError, match=f"pid {os.getpid()} on"):
        FileStore(tmp_path).lock(timeout=0.1).__enter__()
    with store.lock(timeout=0):
        pass
    assert not (tmp_path / "lock.json").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from controller.records import FileStore\n"
            "with FileStore(Path(sys.argv[1])).lock(timeout=0):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LockError):
        FileStore(tmp_path).lock(timeout=0).__enter__()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with FileStore(tmp_path).lock(
        timeout=2
    ):  # the kernel released it; the stale lock.json is not a lock
        pass


def test_world_file_keeps_subscriptions_in_order(tmp_path: Path) -> None:
    from controller.providers.local import LocalProvider, render_world

    (tmp_path / "world.json").write_text(render_world(world(customer(1, sub(12), sub(11)))))
    provider = LocalProvider(tmp_path)
    provider.suspend_subscription(gid(1), gid(11))
    provider.close()  # the change log folded into the file
    saved = json.loads((tmp_path / "world.json").read_text())
    assert [s["id"] for s in saved["customers"][0]["subscriptions"]] == [gid(12), gid(11)]
    assert saved["customers"][0]["subscriptions"][1]["status"] == "suspended"
    assert not list(tmp_path.glob(".world.json.*"))  # no temporary file left behind


def test_journal_group_commit_keeps_every_line_and_each_writers_order(tmp_path: Path) -> None:
    import threading

    from controller.fsutil import DurableLog

    log = DurableLog(tmp_path / "log")

    def writer(n: int) -> None:
        for i in range(200):
            log.append(json.dumps({"writer": n, "i": i}), wait=i % 3 == 0)
        log.sync()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert len(lines) == 16 * 200
    for n in range(16):
        assert [e["i"] for e in lines if e["writer"] == n] == list(range(200))


@pytest.fixture(params=["file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    """A store of each kind, empty."""
    if request.param == "file":
        yield FileStore(tmp_path)
        return
    from controller.pgstore import PostgresStore

    opened = PostgresStore(request.getfixturevalue("pg_url"), PARTNER)
    yield opened
    opened.close()


def test_the_executors_threads_journal_through_either_store_losing_nothing(
    store: RecordStore,
) -> None:
    """Workers append at once, some waiting for durability (as the executor's do): every entry
    is kept, in each worker's order, and the records saved meanwhile are intact."""
    import threading

    def worker(n: int) -> None:
        for i in range(60):
            store.append_journal(
                {"event": "action_applied", "run": f"w{n}", "id": str(i)}, sync=i % 3 == 0
            )
        store.sync_journal()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    store.save(records(managed=(1, 2), pending=(3,)))
    for thread in threads:
        thread.join()
    entries = store.read_journal()
    assert len(entries) == 8 * 60
    for n in range(8):
        assert [int(e["id"]) for e in entries if e["run"] == f"w{n}"] == list(range(60))
    assert store.load() == records(managed=(1, 2), pending=(3,))


def test_a_journal_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").mkdir()  # a directory where the file should be
    with pytest.raises(StateError, match="journal.jsonl: cannot write"):
        FileStore(tmp_path).append_journal({"event": "x"})


def test_a_large_journal_is_rotated_when_a_run_takes_the_lock(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from controller import records as records_module

    monkeypatch.setattr(records_module, "JOURNAL_MAX_BYTES", 200)
    store = FileStore(tmp_path)
    for n in range(10):
        store.append_journal({"event": "run_started", "run": f"r{n}"})
    with store.lock(timeout=0):
        store.append_journal({"event": "run_started", "run": "new"})
    assert [e["run"] for e in store.read_journal()] == ["new"]
    assert (tmp_path / "journal.1.jsonl").read_text().count("run_started") == 10
    with store.lock(timeout=0):  # small again: left alone
        pass
    assert [e["run"] for e in store.read_journal()] == ["new"]
