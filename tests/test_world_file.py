"""The local world file kept in memory: read and validated once, written in batches (group
commit), each change on disk before it is reported, and someone else's edit noticed."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest
from helpers import customer, gid, sub, world

from controller.emulator import Emulator
from controller.errors import PermanentProviderError
from controller.providers import local, worldlog
from controller.providers.local import LocalProvider, read_world, render_world

AUTH = {"authorization": "Bearer t"}
CUSTOMERS = 8


def seeded(tmp_path: Path) -> Path:
    """A world of eight customers with one subscription each (quantity 1)."""
    state = tmp_path / "state"
    state.mkdir()
    customers = [customer(c, sub(100 + c)) for c in range(CUSTOMERS)]
    (state / "world.json").write_text(render_world(world(*customers, now=None)))
    return state


def quantity(state: Path, c: int) -> int:
    found = read_world(state / "world.json").customers_by_id[gid(c)]
    return found.subscriptions_by_id[gid(100 + c)].quantity


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The world files read (and validated) from now on."""
    reads: list[Path] = []
    real_read = local._read_world
    monkeypatch.setattr(local, "_read_world", lambda path: reads.append(path) or real_read(path))
    return reads


class CountingWrites:
    """The local world's writes (the whole world, or a batch appended to its log), counted, and
    slowed down so that changes arrive while a write is in flight."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.writes = 0
        self.delay = delay
        whole, append = local.atomic_write, worldlog.ChangeLog.append

        def counted_whole(path: Path, text: str) -> tuple[int, int, int, int]:
            self._count()
            return whole(path, text)

        def counted_append(log: worldlog.ChangeLog, line: bytes) -> tuple[int, int, int, int]:
            self._count()
            return append(log, line)

        monkeypatch.setattr(local, "atomic_write", counted_whole)
        monkeypatch.setattr(worldlog.ChangeLog, "append", counted_append)

    def _count(self) -> None:
        self.writes += 1
        time.sleep(self.delay)


def test_concurrent_changes_are_written_together_and_each_is_on_disk_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = seeded(tmp_path)
    writes = CountingWrites(monkeypatch, delay=0.05)
    provider = LocalProvider(state)
    provider.observe()
    seen_on_return: dict[tuple[int, int], int] = {}

    def worker(c: int) -> None:
        for n in range(2, 7):
            provider.update_quantity(gid(c), gid(100 + c), n)
            seen_on_return[(c, n)] = quantity(state, c)  # the file only moves forward

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(CUSTOMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(seen >= n for (_c, n), seen in seen_on_return.items()), seen_on_return
    assert all(quantity(state, c) == 6 for c in range(CUSTOMERS))
    changes = CUSTOMERS * 5
    assert len(seen_on_return) == changes
    assert 0 < writes.writes <= changes // 2, "changes that arrive during a write wait for the next"


def test_the_world_is_read_and_validated_once_and_again_only_when_someone_else_changes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, reads = seeded(tmp_path), counted_reads(monkeypatch)
    provider = LocalProvider(state)
    for n in range(20):
        provider.observe()
        provider.update_quantity(gid(1), gid(101), 2 + n)
    assert len(reads) == 1  # its own writes are not someone else's
    # Replaced atomically (reconcile world ..., another provider): a new file.
    LocalProvider(state).change(lambda w: w.replace_customer(customer(50, name="Added")))
    assert gid(50) in provider.observe().customers_by_id
    # Edited in place (an editor, a test): another size.
    path = state / "world.json"
    path.write_text(render_world(world(customer(1, sub(101, quantity=9)), now=None)))
    assert [c.id for c in provider.observe().customers] == [gid(1)]
    assert provider.observe().customers[0].subscriptions[0].quantity == 9
    assert len(reads) == 4  # the provider's three and the other provider's one


@pytest.mark.parametrize("write", ["appended", "whole"])
def test_a_world_that_cannot_be_written_fails_the_change_and_keeps_the_file_s_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """A full disk while a batch is appended to the log (the log is cut back to its last whole
    line) or while the whole world is written (the first write after a log left behind)."""
    state = seeded(tmp_path)
    provider = LocalProvider(state)
    provider.update_quantity(gid(3), gid(103), 4)  # the log holds one batch
    if write == "whole":
        provider = LocalProvider(state)  # it folds that log in with its first write
    provider.observe()
    log = state / "world.changes.jsonl"
    log_before = log.read_bytes()

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "atomic_write", full)
    monkeypatch.setattr(worldlog.os, "fdatasync", full)
    with pytest.raises(PermanentProviderError, match="cannot write: No space left") as failed:
        provider.update_quantity(gid(1), gid(101), 5)
    assert failed.value.code == "io_error"
    assert log.read_bytes() == log_before  # no part of the failed batch stays
    current = provider.observe().customers_by_id
    assert current[gid(1)].subscriptions_by_id[gid(101)].quantity == 1  # not on disk: not shown
    assert current[gid(3)].subscriptions_by_id[gid(103)].quantity == 4
    monkeypatch.undo()
    provider.update_quantity(gid(2), gid(102), 7)
    assert (quantity(state, 1), quantity(state, 2), quantity(state, 3)) == (1, 7, 4)


def test_the_emulator_serves_from_memory_and_sees_the_world_changed_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, reads = seeded(tmp_path), counted_reads(monkeypatch)
    emulator = Emulator(state)
    for c in range(CUSTOMERS):  # an observation: one read of the file, not one per request
        status, body, _ = emulator.handle(
            "GET", f"/v1/customers/{gid(c)}/subscriptions", AUTH, None
        )
        assert status == 200 and body["items"][0]["quantity"] == 1
    assert len(reads) == 1
    # `reconcile world accept` while it serves: another process replaces the file.
    LocalProvider(state).accept_invitation(gid(60), "Newcomer")
    status, body, _ = emulator.handle("GET", "/v1/customers?size=100", AUTH, None)
    assert status == 200 and gid(60) in [item["id"] for item in body["items"]]
