"""The change log beside ``world.json``: each batch of changes is appended to it as one line and
made durable with one fsync of a few hundred bytes, instead of a rewrite of the whole world
(5 MB at 10,000 customers) per batch.

``world.changes.jsonl`` holds a first line ``{"format": 1, "world_sha256": HASH}`` naming the
``world.json`` it applies to (the SHA-256 of its bytes), then one line per batch: a world
document (the fields and rules of ``world.json``) holding only the customers that batch changed.
The world is ``world.json`` with each line's customers put in its place, in order, and the last
line's ``partner`` and ``now``.

A log naming another ``world.json`` is ignored: it is left over from a compaction whose removal
of the log a kill interrupted (its changes are in the file), or someone replaced the file since.
A last line without its newline was torn by a kill in the middle of an append: that batch was
never reported, and it is ignored. Anything else wrong is one line naming the file and line: the
log comes through pull requests with the rest of ``state/``, and is read as untrusted."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..current import CurrentState, Customer
from ..errors import StateError, validation_problem
from ..fsutil import FileIdentity, fsync_directory, identity
from ..i18n import _

FORMAT = 1
# The log is folded into world.json once it is larger than this or than world.json itself:
# reading the log then costs at most about as much as reading the file, and each byte appended
# is rewritten about once.
COMPACT_AFTER_BYTES = 1024 * 1024


class Header(BaseModel):
    """The log's first line: which ``world.json`` its changes apply to."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal[1]
    world_sha256: str = Field(pattern="^[0-9a-f]{64}$")


def changes_path(world_path: Path) -> Path:
    """The log of ``world_path``'s changes: ``world.changes.jsonl`` beside ``world.json``."""
    return world_path.with_name(world_path.stem + ".changes.jsonl")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header_line(world_data: bytes) -> bytes:
    return Header(format=FORMAT, world_sha256=digest(world_data)).model_dump_json().encode() + b"\n"


def log_identity(path: Path) -> FileIdentity | None:
    """The log's identity, None when there is none (a reader's or a writer's change check)."""
    try:
        return identity(os.stat(path))
    except FileNotFoundError:
        return None


def replay(
    path: Path, world: CurrentState, world_data: bytes
) -> tuple[CurrentState, FileIdentity | None]:
    """``world`` (read from ``world_data``) with the changes of the log at ``path`` made, and the
    identity of the log read (None: there is none). Linear in the log's size, however many lines
    change the same customer."""
    try:
        with open(path, "rb") as handle:
            version = identity(os.fstat(handle.fileno()))
            data = handle.read()
    except FileNotFoundError:
        return world, None
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from exc
    lines = data.split(b"\n")[:-1]  # what follows the last newline is torn (or nothing)
    if not lines:
        return world, version
    try:
        header = Header.model_validate_json(lines[0])
    except ValidationError as exc:
        raise StateError(f"{path}:1: {validation_problem(exc)}") from exc
    if header.world_sha256 != digest(world_data):
        return world, version  # the changes of another world.json
    changed: dict[str, Customer] = {}
    last: CurrentState | None = None
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = CurrentState.model_validate_json(line)
        except ValidationError as exc:
            raise StateError(f"{path}:{number}: {validation_problem(exc)}") from exc
        if record.partner.id != world.partner.id:
            message = _("{}:{}: partner.id: {} is not the world's partner ({})")
            raise StateError(message.format(path, number, record.partner.id, world.partner.id))
        changed.update((c.id, c) for c in record.customers)
        last = record
    if last is None:
        return world, version
    kept = tuple(changed.pop(c.id, c) for c in world.customers)
    customers = kept + tuple(changed.values())  # those the world did not have, in log order
    return CurrentState.model_construct(partner=last.partner, customers=customers, now=last.now), (
        version
    )


class ChangeLog:
    """A log this process created and appends to (one writer at a time: the provider's)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd, self.size = path, fd, 0
        self.version: FileIdentity | None = None  # after the last append

    @classmethod
    def create(cls, path: Path, header: bytes, first: bytes, *, mode: int) -> ChangeLog:
        """A new log holding ``header`` and the ``first`` batch, on disk (its directory entry
        too) when this returns. FileExistsError: someone else's log is there."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, mode)
        log = cls(path, fd)
        try:
            log.append(header + first)
            fsync_directory(path.parent)
        except BaseException:
            log.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return log

    def append(self, line: bytes) -> FileIdentity:
        """Append ``line`` and return once it is on disk; on failure the log is cut back to
        where it was, so that no part of it stays before the next line."""
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(line)
        self.version = identity(os.fstat(self._fd))
        return self.version

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def remove_log(path: Path) -> None:
    """Remove the log (its changes are in ``world.json`` now), durably: a log that came back
    after a crash would name a file whose bytes might, by chance, be its base again."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_directory(path.parent)
