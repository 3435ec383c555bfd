"""The controller's own records: managed and protected customers, pending relationship requests,
the apply journal, and the lock that keeps two applies from interleaving.

They sit behind the small ``RecordStore`` interface so that the planner and the executor never
see files; ``FileStore`` keeps them in the state directory:

    state/records.json    managed, protected, pending (human-readable, replaced atomically)
    state/journal.jsonl   one JSON object per line, appended and fsynced, per apply event
    state/                the directory itself is flock()ed by the applying process (the kernel
                          releases it if the process dies, so a dead holder never blocks)
    state/lock.json       who holds the lock: pid, host, since (for the error message)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .current import CurrentState
from .errors import LockError, StateError, validation_problem
from .fsutil import DurableLog, atomic_write, directory_lock, readable_json
from .i18n import _, ngettext
from .ids import CustomerId, Guid
from .spec import Desired, Offboarding

if TYPE_CHECKING:
    from .observation import Observations, Observed

JOURNAL_MAX_BYTES = 16 * 1024 * 1024
APPLIED_SNAPSHOT = TypeAdapter(dict[str, dict[str, str]])
# The fields of a journal entry that readers rely on, and their types (others are kept as they are).
_JOURNAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "event": str,
    "run": str,
    "time": str,
    "actions": int,
    "id": str,
    "type": str,
    "customer_id": (str, type(None)),
    "subscription_id": (str, type(None)),
    "error": (str, type(None)),
}

log = logging.getLogger("reconcile")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PendingRequest(_Frozen):
    """A relationship request the controller made, until the customer accepts it."""

    customer_id: Guid
    name: str = ""
    requested_at: str
    invitation_url: str


class Records(_Frozen):
    """What the controller remembers between runs, apart from the journal."""

    format_version: Literal[1] = 1
    partner_id: Guid | None = None
    managed: tuple[Guid, ...] = ()
    protected: tuple[Guid, ...] = ()
    pending: tuple[PendingRequest, ...] = ()
    # A managed customer's own offboarding setting, remembered so that it still applies once
    # the customer's block is deleted from the specs (which is what removes it).
    offboarding: dict[Guid, Offboarding] = Field(default_factory=dict)

    @property
    def pending_by_id(self) -> dict[CustomerId, PendingRequest]:
        return {CustomerId(p.customer_id): p for p in self.pending}

    def with_pending(self, request: PendingRequest) -> Records:
        """A copy recording ``request`` (replacing an older one for the same customer)."""
        others = [p for p in self.pending if p.customer_id != request.customer_id]
        return self.model_copy(update={"pending": _sorted_pending([*others, request])})


def _sorted_pending(pending: list[PendingRequest]) -> tuple[PendingRequest, ...]:
    return tuple(sorted(pending, key=lambda p: p.customer_id))


def effective_protected(desired: Desired, records: Records) -> frozenset[CustomerId]:
    """Customers no plan may remove: recorded ones, plus ``protected: true`` in the specs, less
    those the specs list with ``protected: false`` (the only way to lift protection). Pure."""
    protected = {CustomerId(c) for c in records.protected}
    for customer_id, spec in desired.customers.items():
        if spec.protected is True:
            protected.add(customer_id)
        elif spec.protected is False:
            protected.discard(customer_id)
    return frozenset(protected)


def next_records(records: Records, desired: Desired, current: CurrentState) -> Records:
    """The records after a reconcile, from what was observed afterwards. Pure.

    Managed: every customer in the specs, plus those still managed and still related; a managed
    customer whose relationship is gone and that the specs no longer list is forgotten.
    Pending: dropped once the customer is a reseller customer, or once the specs drop it.
    """
    related = {CustomerId(c.id) for c in current.customers if c.relationship == "reseller"}
    managed = {CustomerId(c) for c in records.managed} & related | set(desired.customers)
    pending = [
        p
        for p in records.pending
        if p.customer_id in desired.customers and p.customer_id not in related
    ]
    offboarding = {c: o for c, o in records.offboarding.items() if c in managed}
    for customer_id, spec in desired.customers.items():
        if spec.offboarding is not None:
            offboarding[customer_id] = spec.offboarding
        else:
            offboarding.pop(customer_id, None)
    return Records(
        partner_id=current.partner.id,
        managed=tuple(sorted(managed)),
        protected=tuple(sorted(effective_protected(desired, records))),
        pending=_sorted_pending(pending),
        offboarding=dict(sorted(offboarding.items())),
    )


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class RecordStore(Protocol):
    """Where the controller keeps its records; a file store now, a shared database later."""

    def load(self) -> Records: ...

    def save(self, records: Records) -> None: ...

    def append_journal(self, entry: Mapping[str, Any], *, sync: bool = True) -> None:
        """Append ``entry``; with ``sync``, return once it and every earlier entry is durable."""
        ...

    def sync_journal(self) -> None:
        """Return once every entry appended so far is durable."""
        ...

    def read_journal(self) -> list[dict[str, Any]]: ...

    def load_applied(self) -> dict[str, dict[str, str]]:
        """What the specs asked at the last apply (customer -> subscription -> value)."""
        ...

    def save_applied(self, snapshot: Mapping[str, Mapping[str, str]]) -> None: ...

    def lock(self, *, timeout: float) -> Any: ...

    def load_observations(self, partner: str) -> Observations:
        """The observation cache of ``partner`` (see ``observation``); empty when there is none."""
        ...

    def save_observations(
        self, partner: str, observations: Mapping[str, Observed | None], fresh: frozenset[str]
    ) -> None:
        """Keep ``observations`` as the cache; ``fresh``: the customers read now."""
        ...


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Report a failed write of ``path`` as one line, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise StateError(_("{}: cannot write: {}").format(path, exc.strerror)) from exc


def _replace_if_changed(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` (and a final newline), unless it holds it.
    Whatever is there now (damaged, not UTF-8, a directory) only means it has to be written."""
    text += "\n"
    with contextlib.suppress(OSError):
        if path.read_bytes() == text.encode("utf-8"):
            return
    with _writing(path):
        atomic_write(path, text)


def _journal_entry(line: bytes) -> dict[str, Any] | None:
    """One journal line as an entry, or None when it is damaged (not UTF-8, not a JSON object,
    or a field readers rely on has the wrong type)."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    return entry if is_journal_entry(entry) else None


def is_journal_entry(entry: Any) -> bool:
    """Whether ``entry`` (JSON) is a journal entry readers can rely on: an object with an
    ``event``, and the fields they read of the right type (in any store)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("event"), str):
        return False
    return not any(
        name in entry and (not isinstance(entry[name], kind) or isinstance(entry[name], bool))
        for name, kind in _JOURNAL_FIELDS.items()
    )


class FileStore:
    """Records as files in the state directory (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.records_path = state_dir / "records.json"
        self.journal_path = state_dir / "journal.jsonl"
        self._journal = DurableLog(self.journal_path)
        self.applied_path = state_dir / "applied.json"
        self.holder_path = state_dir / "lock.json"

    def load(self) -> Records:
        if not self.records_path.exists():
            return Records()
        try:
            return Records.model_validate_json(self.records_path.read_bytes())
        except ValidationError as exc:
            raise StateError(f"{self.records_path}: {validation_problem(exc)}") from exc
        except OSError as exc:
            raise StateError(f"{self.records_path}: {exc.strerror}") from exc

    def save(self, records: Records) -> None:
        _replace_if_changed(
            self.records_path, readable_json(records.model_dump(mode="json"), indent=2)
        )

    def append_journal(self, entry: Mapping[str, Any], *, sync: bool = True) -> None:
        with _writing(self.journal_path):
            self._journal.append(json.dumps(dict(entry), sort_keys=True), wait=sync)

    def sync_journal(self) -> None:
        with _writing(self.journal_path):
            self._journal.sync()

    def read_journal(self) -> list[dict[str, Any]]:
        """Every readable journal entry. A torn last line (a kill mid-append) is ignored; other
        damaged lines are skipped and reported in one warning naming the file and line: the
        journal is history, and the next run plans from what it observes."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(f"{self.journal_path}: {exc.strerror}") from exc
        lines = data.splitlines()
        torn = len(lines) if not data.endswith(b"\n") else 0  # the last line, unfinished
        entries, damaged = [], []
        for number, line in enumerate(lines, start=1):
            entry = _journal_entry(line)
            if entry is not None:
                entries.append(entry)
            elif line.strip() and number != torn:
                damaged.append(number)
        if damaged:
            log.warning(
                ngettext(
                    "%s: skipped %d damaged line (line %d)",
                    "%s: skipped %d damaged lines (the first is line %d)",
                    len(damaged),
                ),
                self.journal_path,
                len(damaged),
                damaged[0],
            )
        return entries

    def load_applied(self) -> dict[str, dict[str, str]]:
        """The drift baseline; none yet is an empty one. A damaged file stops the plan (before
        anything is done) with one line saying how to rebuild it."""
        try:
            return APPLIED_SNAPSHOT.validate_json(self.applied_path.read_bytes())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            problem = exc.strerror
        except ValidationError as exc:
            problem = validation_problem(exc)
        raise StateError(
            _(
                "{}: {}; it only tells drift from spec changes: delete it, and the next apply "
                "writes it afresh"
            ).format(self.applied_path, problem)
        )

    def save_applied(self, snapshot: Mapping[str, Mapping[str, str]]) -> None:
        _replace_if_changed(self.applied_path, json.dumps(snapshot, indent=1, sort_keys=True))

    def load_observations(self, partner: str) -> Observations:
        """The observation cache: in the user's cache directory, never in ``state/`` (see
        ``observation``)."""
        from .observation import ObservationFile

        return ObservationFile(self.state_dir, partner, os.environ).load()

    def save_observations(
        self, partner: str, observations: Mapping[str, Observed | None], fresh: frozenset[str]
    ) -> None:
        from .observation import ObservationFile

        ObservationFile(self.state_dir, partner, os.environ).save(observations)

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        """Hold the state directory's apply lock, or raise LockError naming its holder."""
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise StateError(_("{}: not a directory").format(self.state_dir))
        with _writing(self.state_dir):
            self.state_dir.mkdir(parents=True, exist_ok=True)
        with directory_lock(self.state_dir, timeout=timeout) as acquired:
            if not acquired:
                raise LockError(self._holder_message())
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
            with _writing(self.holder_path):
                atomic_write(self.holder_path, json.dumps(holder) + "\n")
            try:
                self._rotate_journal()
                yield
            finally:
                self.holder_path.unlink(missing_ok=True)

    def _rotate_journal(self) -> None:
        """Keep the journal from growing without end (watch mode runs for months): past
        JOURNAL_MAX_BYTES it becomes journal.1.jsonl, replacing the previous one. Done under the
        lock, before a run starts, so no run is ever split across the two files."""
        try:
            if self.journal_path.stat().st_size <= JOURNAL_MAX_BYTES:
                return
        except FileNotFoundError:
            return
        self._journal.close()
        with _writing(self.journal_path):
            os.replace(self.journal_path, self.state_dir / "journal.1.jsonl")

    def _holder_message(self) -> str:
        # The holder writes lock.json just after taking the lock: give it a moment to appear.
        deadline = time.monotonic() + 1.0
        while True:
            try:
                holder = json.loads(self.holder_path.read_text(encoding="utf-8"))
                who = _("pid {pid} on {host}, since {since}").format(**holder)
                break
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    who = _("another process")
                    break
                time.sleep(0.02)
        return _("state directory {} is locked by {}: another apply is running").format(
            self.state_dir, who
        )


class MemoryStore:
    """Records held in memory, for tests and benchmarks."""

    def __init__(self, records: Records | None = None) -> None:
        self.records = records or Records()
        self.journal: list[dict[str, Any]] = []
        self.applied: dict[str, dict[str, str]] = {}
        self.observations: dict[str, Observations] = {}
        self._lock = threading.Lock()

    def load(self) -> Records:
        return self.records

    def save(self, records: Records) -> None:
        self.records = records

    def append_journal(self, entry: Mapping[str, Any], *, sync: bool = True) -> None:
        self.journal.append(dict(entry))

    def sync_journal(self) -> None:
        pass

    def load_applied(self) -> dict[str, dict[str, str]]:
        return self.applied

    def save_applied(self, snapshot: Mapping[str, Mapping[str, str]]) -> None:
        self.applied = {c: dict(s) for c, s in snapshot.items()}

    def read_journal(self) -> list[dict[str, Any]]:
        return list(self.journal)

    def load_observations(self, partner: str) -> Observations:
        return dict(self.observations.get(partner, {}))

    def save_observations(
        self, partner: str, observations: Mapping[str, Observed | None], fresh: frozenset[str]
    ) -> None:
        self.observations[partner] = dict(observations)

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        acquired = self._lock.acquire(timeout=timeout) if timeout > 0 else self._lock.acquire(False)
        if not acquired:
            raise LockError(_("the in-memory store is locked"))
        try:
            yield
        finally:
            self._lock.release()
