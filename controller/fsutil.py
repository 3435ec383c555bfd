"""Durable file writes: every state file is replaced atomically, never left half-written."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def readable_json(document: Any, **options: Any) -> str:
    """``json.dumps(document)`` that strict readers (pydantic's) can read back. A lone surrogate
    (Python's json and YAML escapes accept ``\\ud800``; pydantic refuses it) becomes U+FFFD, so
    that no state file is ever written that the controller could not read again."""
    text = json.dumps(document, **options)
    if "\\ud" in text or "\\uD" in text:  # also a non-BMP character's pair: then look closer
        text = json.dumps(with_replaced(document, _SURROGATE), **options)
    return text


def with_replaced(value: Any, unwanted: re.Pattern[str]) -> Any:
    """``value`` (JSON-like) with every ``unwanted`` character in its strings, keys included,
    replaced by U+FFFD."""
    if isinstance(value, str):
        return unwanted.sub("\ufffd", value)
    if isinstance(value, dict):
        return {with_replaced(k, unwanted): with_replaced(v, unwanted) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [with_replaced(v, unwanted) for v in value]
    return value


FileIdentity = tuple[int, int, int, int]


def identity(stat: os.stat_result) -> FileIdentity:
    """What tells one version of a file from another cheaply: device, inode, modification time
    and size (an atomic replace gives a new inode; an edit in place a new time or size)."""
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def atomic_write(path: Path, text: str | bytes, *, mode: int | None = None) -> FileIdentity:
    """Write ``text`` to ``path`` so that a reader sees the old or the new file, never a mix,
    even if the process is killed: temporary file, fsync, rename, fsync of the directory.
    ``mode`` (e.g. 0o600 for a file holding tokens) is set before any byte is written.
    Returns the identity of the file written (taken before the rename, so that it is this
    write's even if someone replaces the file right after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path) if mode is None else mode)
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            written = identity(os.fstat(handle.fileno()))
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)
    return written


def _mode_for(path: Path) -> int:
    """The file's own mode when it exists, else what a plain open() would give (0666 & ~umask),
    rather than mkstemp's 0600."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def append_durably(path: Path, line: str) -> None:
    """Append one line and fsync it before returning: a journal entry that was written stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line if line.endswith("\n") else line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def directory_lock(directory: Path, *, timeout: float) -> Iterator[bool]:
    """flock() the directory itself for as long as the block runs; yields whether it was had.

    Locking the directory rather than a lock file creates nothing, so a refused run leaves the
    directory byte-for-byte as it was; and the kernel drops the lock when its holder dies, so a
    lock left by a killed process is taken over at once (``timeout`` 0: try once)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class DurableLog:
    """An append-only file of lines, made durable in groups.

    ``append`` queues a line; ``sync`` returns once everything queued so far is on disk. Group
    commit: whoever syncs first becomes the leader and writes every queued line with one fsync,
    while later callers wait for it; so many workers journaling at once cost one fsync per batch,
    not one each. Lines reach the file in the order they were queued."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._queued = 0  # sequence number of the last line queued
        self._durable = 0  # ... and of the last line on disk
        self._leading = False
        self._failure: tuple[int, OSError] | None = None
        self._handle: TextIO | None = None

    def append(self, line: str, *, wait: bool = True) -> None:
        """Queue ``line``; with ``wait``, return once it (and everything before it) is on disk."""
        with self._cond:
            self._queue.append(line if line.endswith("\n") else line + "\n")
            self._queued += 1
            if wait:
                self._wait_for(self._queued)

    def sync(self) -> None:
        """Return once every line queued so far is on disk."""
        with self._cond:
            self._wait_for(self._queued)

    def close(self) -> None:
        with self._cond:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _wait_for(self, sequence: int) -> None:
        while self._durable < sequence:
            if self._failure and sequence <= self._failure[0]:
                raise self._failure[1]
            if self._leading:
                self._cond.wait()
            else:
                self._lead()

    def _lead(self) -> None:
        """Write and sync everything queued; called with the condition held, released for I/O."""
        self._leading = True
        batch, last = self._queue, self._queued
        self._queue = []
        self._cond.release()
        failure: tuple[int, OSError] | None = None
        try:
            self._write("".join(batch))
        except OSError as exc:
            failure = (last, exc)
        finally:
            self._cond.acquire()
            self._leading = False
            if failure is None:
                self._durable = last
            else:
                self._failure = failure
            self._cond.notify_all()

    def _write(self, text: str) -> None:
        """Append and sync; the file stays open between batches (only the leader touches it)."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            if _ends_torn(self.path):  # a kill mid-append: keep the torn line on its own
                text = "\n" + text
        self._handle.write(text)
        self._handle.flush()
        os.fdatasync(self._handle.fileno())


def _ends_torn(path: Path) -> bool:
    """Whether ``path`` ends in the middle of a line."""
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"
