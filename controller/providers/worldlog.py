"""The change log beside ``world.json``: each batch of changes is appended to it as one line and
made durable with one fsync of a few hundred bytes, instead of a rewrite of the whole world
(5 MB at 10,000 customers) per batch.

``world.changes.jsonl`` holds a first line ``{"format": 1, "world_sha256": HASH}`` naming the
``world.json`` it applies to (the SHA-256 of its bytes), then one line per batch: a world
document (the fields and rules of ``world.json``) holding only the customers that batch changed.
The world is ``world.json`` with each line's customers put in its place, in order, and the last
line's ``partner`` and ``now``.

Folding the log into ``world.json`` (compaction) first appends ``{"folded_into": HASH}``, fsynced:
the SHA-256 of the ``world.json`` about to be written, which holds every change of the log; then
writes that file atomically, then removes the log. So a log naming another ``world.json`` is
either a compaction's leftover (a kill before the log was removed: its last lines name the file
there, whose bytes hold its changes), ignored; or the file was replaced (an edit, a checkout)
while the log held changes not in it: those changes would be lost without a word, so the reader
refuses, naming both files and how many customers, unless the file holds every one of them as
the log does (then nothing is lost: an edit of other customers, a leftover of a version that
wrote no such line, a log of no changes).

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
from ..i18n import _, ngettext

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


def header_line(world_sha256: str) -> bytes:
    """The log's first line, naming the ``world.json`` of that ``digest``."""
    return Header(format=FORMAT, world_sha256=world_sha256).model_dump_json().encode() + b"\n"


def log_identity(path: Path) -> FileIdentity | None:
    """The log's identity, None when there is none (a reader's or a writer's change check)."""
    try:
        return identity(os.stat(path))
    except FileNotFoundError:
        return None


class Folded(BaseModel):
    """The line a compaction appends before it replaces ``world.json``: the SHA-256 of the file
    it is about to write, which holds every change of the log."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    folded_into: str = Field(pattern="^[0-9a-f]{64}$")


_FOLDED = b'{"folded_into"'  # how such a line starts, as this module writes it


def folded_line(world_sha256: str) -> bytes:
    return Folded(folded_into=world_sha256).model_dump_json().encode() + b"\n"


def replay(
    world_path: Path, world: CurrentState, world_data: bytes
) -> tuple[CurrentState, FileIdentity | None]:
    """``world`` (read from ``world_data``, at ``world_path``) with the changes of its log made,
    and the identity of the log read (None: there is none). Linear in the log's size, however
    many lines change the same customer. A log of another ``world.json`` that is not a compaction's
    leftover and holds changes that file lacks: StateError."""
    path = changes_path(world_path)
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
    world_sha256 = digest(world_data)
    applies = header.world_sha256 == world_sha256
    if not applies and world_sha256 in _last_folded(path, lines):
        return world, version  # a compaction's leftover: its changes are in the file
    # (Not applying to this file, a log may hold another partner's: this one lacks them all.)
    changed, last = _changes(path, lines, world.partner.id if applies else None)
    if not applies:
        _refuse_lost_changes(path, world_path, world, changed)
        return world, version  # the file holds them all (or there are none)
    if last is None:
        return world, version
    kept = tuple(changed.pop(c.id, c) for c in world.customers)
    customers = kept + tuple(changed.values())  # those the world did not have, in log order
    return CurrentState.model_construct(partner=last.partner, customers=customers, now=last.now), (
        version
    )


def _last_folded(path: Path, lines: list[bytes]) -> set[str]:
    """The files named by the ``folded_into`` lines that end the log (none: it ends with a
    batch). Each names a world.json holding every change before it; several follow one another
    when a compaction was killed before it replaced the file and the next one folded again."""
    named: set[str] = set()
    for number in range(len(lines) - 1, 0, -1):
        if not lines[number].startswith(_FOLDED):
            break
        named.add(_folded(path, number + 1, lines[number]).folded_into)
    return named


def _folded(path: Path, number: int, line: bytes) -> Folded:
    try:
        return Folded.model_validate_json(line)
    except ValidationError as exc:
        raise StateError(f"{path}:{number}: {validation_problem(exc)}") from exc


def _changes(
    path: Path, lines: list[bytes], partner_id: str | None
) -> tuple[dict[str, Customer], CurrentState | None]:
    """The log's customers as its last batch to change each left them (in the order first
    changed), and its last batch; ``folded_into`` lines (of a
    compaction that failed or was killed before it replaced the file) are skipped. Each batch
    must be of ``partner_id``'s world, when given."""
    changed: dict[str, Customer] = {}
    last: CurrentState | None = None
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith(_FOLDED):
            _folded(path, number, line)
            continue
        try:
            record = CurrentState.model_validate_json(line)
        except ValidationError as exc:
            raise StateError(f"{path}:{number}: {validation_problem(exc)}") from exc
        if partner_id is not None and record.partner.id != partner_id:
            message = _("{}:{}: partner.id: {} is not the world's partner ({})")
            raise StateError(message.format(path, number, record.partner.id, partner_id))
        changed.update((c.id, c) for c in record.customers)
        last = record
    return changed, last


def _refuse_lost_changes(
    path: Path, world_path: Path, world: CurrentState, changed: dict[str, Customer]
) -> None:
    """StateError when ``world`` (a world.json the log was not written against, and not a
    compaction's) lacks a customer as the log left it: that file was replaced while the log
    held changes, which reading it alone would drop without a word."""
    present = world.customers_by_id
    lost = [
        customer
        for customer_id, customer in changed.items()
        if (there := present.get(customer_id)) is None
        or there.model_dump() != customer.model_dump()
    ]
    if not lost:
        return
    message = ngettext(
        "{}: {} lacks the log's changes to {} customer ({}): the file was replaced while the "
        "log held changes not yet in it. Restore the {} the log was written against, or delete "
        "the log to keep the file as it is and lose them (if an earlier version was killed while "
        "folding the log in, the file may hold newer changes: check, then delete the log)",
        "{}: {} lacks the log's changes to {} customers (the first: {}): the file was replaced "
        "while the log held changes not yet in it. Restore the {} the log was written against, "
        "or delete the log to keep the file as it is and lose them (if an earlier version was "
        "killed while folding the log in, the file may hold newer changes: check, then delete "
        "the log)",
        len(lost),
    )
    raise StateError(message.format(path, world_path, len(lost), lost[0].id, world_path.name))


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
            _write_durably(self._fd, line)
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


def _write_durably(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fdatasync(fd)


def mark_folded(path: Path, world_sha256: str) -> None:
    """Before the bytes of that ``digest`` replace ``world.json``: append to the log at ``path``
    (if any) the line naming them, on disk when this returns, so that a reader finding the log
    beside that file knows it for a compaction's leftover, not changes the file lacks. A torn
    last line (of a killed append, never reported) is cut off first; a log without a whole line
    is left alone (every reader ignores it)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        if os.pread(fd, 1, size - 1) != b"\n":
            size = os.pread(fd, size, 0).rfind(b"\n") + 1
            if size == 0:
                return
            os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)
        try:
            _write_durably(fd, folded_line(world_sha256))
        except BaseException:  # no part of it stays: the next line would follow it
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def remove_log(path: Path) -> None:
    """Remove the log (its changes are in ``world.json`` now), durably: a log that came back
    after a crash would name a file whose bytes might, by chance, be its base again."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_directory(path.parent)
