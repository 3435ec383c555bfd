"""Journal before acting: nothing changes before the run's start (and the action's) is on disk;
when the journal cannot be written (disk full, read-only, EIO), no further action starts, those
in flight finish, and the outcome is still reported. The attack first: a journal that fails.
The last test is the PostgreSQL store's: its connection ended by the server mid-run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import customer, desired, records, run, snapshot, sub, world

from controller.apply import Executor
from controller.errors import StateError
from controller.plan import plan
from controller.providers.memory import MemoryProvider
from controller.records import MemoryStore

DISK_FULL = "journal.jsonl: cannot write: No space left on device"


class FailingJournal(MemoryStore):
    """A store whose journal takes ``room`` entries, then fails as a full disk does."""

    def __init__(self, room: int, records_: Any = None) -> None:
        super().__init__(records_)
        self.room = room

    def append_journal(self, entry: Mapping[str, Any], *, sync: bool = True) -> None:
        if len(self.journal) >= self.room:
            raise StateError(DISK_FULL)
        super().append_journal(entry, sync=sync)


class Recorder(MemoryProvider):
    """Checks, at each change, that the journal already holds that action's start."""

    def __init__(self, current: Any, store: MemoryStore) -> None:
        super().__init__(current)
        self.store = store
        self.unjournaled: list[tuple[str, ...]] = []

    def _call(self, *call: str) -> None:
        started = {
            (e["type"], e["customer_id"], e.get("subscription_id"))
            for e in self.store.journal
            if e["event"] == "action_started"
        }
        if (call[0], call[1], call[2] if len(call) > 2 else None) not in started:
            self.unjournaled.append(call)
        super()._call(*call)


def six_independent_suspensions() -> tuple[Any, Any]:
    current = world(*(customer(c, sub(c * 10)) for c in range(1, 7)))
    made = plan(desired(), current, records(managed=tuple(range(1, 7))))
    return current, made


@pytest.mark.parametrize("room", [0, 1, 3, 5])
def test_when_the_journal_fails_no_further_action_starts_and_every_result_is_returned(
    room: int,
) -> None:
    current, made = six_independent_suspensions()
    assert len(made.actions) == 12  # six suspensions, six removals after them
    store = FailingJournal(room)
    provider = Recorder(current, store)
    results = Executor(provider, store, parallelism=1).run(made)
    assert [r.id for r in results] == [a.id for a in made.actions]  # the outcome is complete
    assert provider.unjournaled == []  # journal before acting
    started = [e for e in store.journal if e["event"] == "action_started"]
    assert len(provider.calls) == len(started)  # nothing ran past the failure
    if room == 0:
        assert provider.calls == []  # run_started could not be written: nothing at all
    skipped = [r.error or "" for r in results if r.status == "skipped"]
    assert any(DISK_FULL in error for error in skipped)
    assert all(DISK_FULL in error or "which did not apply" in error for error in skipped)
    assert [r.status for r in results].count("applied") == len(provider.calls)


def test_a_journal_that_fails_mid_run_lets_actions_in_flight_finish() -> None:
    current, made = six_independent_suspensions()
    store = FailingJournal(4)
    executor = Executor(MemoryProvider(current), store, parallelism=8)
    results = executor.run(made)
    assert executor.journal_error == DISK_FULL
    statuses = {r.status for r in results}
    assert "applied" in statuses and "skipped" in statuses
    assert len(results) == len(made.actions)


def _journal_on_a_full_disk(example: Path) -> None:
    journal = example / "state" / "journal.jsonl"
    journal.unlink(missing_ok=True)
    journal.symlink_to("/dev/full")  # every write: ENOSPC, even for root


def test_cli_apply_with_a_full_disk_journal_changes_nothing_and_prints_the_outcome(
    example: Path,
) -> None:
    _journal_on_a_full_disk(example)
    world_before = (example / "state" / "world.json").read_bytes()
    result = run("--yes", cwd=example)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Apply: applied 0 of 6, failed 0, skipped 6." in result.stdout
    assert "not started: the journal cannot be written" in result.stdout
    assert f"error: state/{DISK_FULL}" in result.stderr
    assert (example / "state" / "world.json").read_bytes() == world_before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_cli_apply_with_a_read_only_journal_file_changes_nothing(example: Path) -> None:
    journal = example / "state" / "journal.jsonl"
    journal.write_text("")
    journal.chmod(0o444)
    before = snapshot(example / "state")
    result = run("--yes", cwd=example)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Apply: applied 0 of 6" in result.stdout
    assert snapshot(example / "state")["world.json"] == before["world.json"]


def test_when_the_database_goes_away_mid_run_no_further_action_starts(pg_url: str) -> None:
    """The PostgreSQL store's journal failing: the store's session is ended by the server
    after the second change (a failover, an administrator, a lost network)."""
    import uuid

    import psycopg

    from controller.pgstore import PostgresStore

    current, made = six_independent_suspensions()
    store = PostgresStore(pg_url, str(uuid.uuid4()))
    backend = store._conn.info.backend_pid

    class CutAfterTwo(MemoryProvider):
        def _call(self, *call: str) -> None:
            super()._call(*call)
            if len(self.calls) == 2:
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (backend,))

    provider = CutAfterTwo(current)
    executor = Executor(provider, store, parallelism=1)
    results = executor.run(made)
    assert [r.id for r in results] == [a.id for a in made.actions]  # the outcome is complete
    assert len(provider.calls) == 2  # nothing started once the journal could not record it
    assert executor.journal_error is not None, "the lost connection halts the run"
    assert [r.status for r in results].count("applied") == 2
    skipped = [r.error or "" for r in results if r.status == "skipped"]
    assert any("the journal cannot be written" in error for error in skipped)
    with pytest.raises(StateError, match="connection was lost"):
        store.append_journal({"event": "x"})  # it writes nothing more, ever
