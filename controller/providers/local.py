"""The local provider: a simulated Partner Center tenant in ``state/world.json``."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..current import CurrentState, Customer, Partner, Subscription
from ..errors import PermanentProviderError, StateError, validation_problem
from ..fsutil import FileIdentity, atomic_write, identity, readable_json
from ..i18n import _
from ..perf import share_fields_sets
from ..ratelimit import RateLimiter
from .world import WorldProvider
from .worldlog import (
    COMPACT_AFTER_BYTES,
    ChangeLog,
    changes_path,
    digest,
    header_line,
    log_identity,
    mark_folded,
    remove_log,
    replay,
)

# What tells one version of the world on disk from another: world.json's identity and its
# change log's (None: no log).
Versions = tuple[FileIdentity, FileIdentity | None]
_READ_ATTEMPTS = 5  # a world replaced while it is read is read again, so many times at most


def world_path(state_dir: Path) -> Path:
    return state_dir / "world.json"


def read_world(path: Path) -> CurrentState:
    """Read and validate a world file, with the changes of its log (``world.changes.jsonl``)
    made; a problem is one line naming the file (and line) and the field."""
    return _read_world(path)[0]


def _read_world(path: Path) -> tuple[CurrentState, Versions]:
    """The world of the world file and its log, and the versions of both read. A file replaced
    meanwhile (a compaction: the new file, then the log removed) is read again, so that a
    reader never takes the old file without the log that completed it."""
    for _attempt in range(_READ_ATTEMPTS):
        data, version = _read_bytes(path)
        try:
            world = CurrentState.model_validate_json(data)
        except ValidationError as exc:
            raise StateError(f"{path}: {validation_problem(exc)}") from exc
        world, log_version = replay(path, world, data)
        try:
            if identity(os.stat(path)) == version:
                break
        except OSError:
            pass  # reading it again says why
    share_fields_sets(world.customers)
    share_fields_sets(s for c in world.customers for s in c.subscriptions)
    return world, (version, log_version)


def _read_bytes(path: Path) -> tuple[bytes, FileIdentity]:
    try:
        with open(path, "rb") as handle:
            version = identity(os.fstat(handle.fileno()))
            return handle.read(), version
    except FileNotFoundError as exc:
        message = _("{}: no such file; the local provider needs a world file").format(path)
        raise StateError(message) from exc
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from exc


# Fields written only when they differ from their default, so that a world of legacy
# subscriptions (the seed's format) reads and writes back unchanged.
_OMITTED_AT_DEFAULT: dict[str, object] = {
    "commerce": "legacy",
    "azure_subscriptions_active": 0,
    "azure_reservations_open": 0,
}


def _without_defaults(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in item.items() if k not in _OMITTED_AT_DEFAULT or _OMITTED_AT_DEFAULT[k] != v
    }


@dataclass
class Rendering:
    """A world's customers as last rendered (immutable objects) and each one's text: a world
    that changes a few customers at a time is rendered again without rendering the others."""

    customers: tuple[Customer, ...] = ()
    texts: list[str] = field(default_factory=list)

    def texts_for(self, customers: tuple[Customer, ...]) -> list[str]:
        """Each customer's text, rendered again only where the customer is another object;
        the rendering then holds ``customers``."""
        if len(customers) == len(self.customers):  # the usual case: compared by position
            pairs = zip(customers, self.customers, self.texts, strict=True)
            texts = [text if c is old else _render_customer(c) for c, old, text in pairs]
        else:
            known = {c.id: (c, t) for c, t in zip(self.customers, self.texts, strict=True)}
            texts = [
                found[1] if (found := known.get(c.id)) and found[0] is c else _render_customer(c)
                for c in customers
            ]
        self.customers, self.texts = customers, texts
        return texts


def render_world(world: CurrentState, rendering: Rendering | None = None) -> str:
    """The world as human-readable JSON (unset optional fields left out); ``rendering`` keeps
    the customers' texts from one call to the next."""
    texts = (rendering or Rendering()).texts_for(world.customers)
    rest = world.model_dump(mode="json", exclude_none=True, exclude={"customers"})
    head = {
        k: [] if k == "customers" else rest[k]
        for k in type(world).model_fields
        if k in rest or k == "customers"
    }
    text = readable_json(head, indent=2)
    if not texts:
        return text + "\n"
    # The list as json.dumps(indent=2) nests it: at two levels' indent.
    before, after = text.split('"customers": []', 1)
    items = ",\n    ".join(texts)
    return "".join((before, '"customers": [\n    ', items, "\n  ]", after, "\n"))


def _render_customer(customer: Customer) -> str:
    """A customer as ``render_world`` lists it, indented to its place in the list."""
    return readable_json(_customer_document(customer), indent=2).replace("\n", "\n    ")


def _customer_document(customer: Customer) -> dict[str, Any]:
    document = customer.model_dump(mode="json", exclude_none=True)
    document["subscriptions"] = [_without_defaults(s) for s in document["subscriptions"]]
    return _without_defaults(document)


def _change_line(world: CurrentState, customers: list[Customer]) -> bytes:
    """One batch's line of the change log: the world's fields but its customers, and the
    customers the batch changed."""
    document = world.model_dump(mode="json", exclude_none=True, exclude={"customers"})
    document["customers"] = [_customer_document(c) for c in customers]
    return readable_json(document).encode() + b"\n"


class LocalProvider(WorldProvider):
    """The world of ``world.json`` and its change log, read and validated once, then kept in
    memory and written back in batches.

    Group commit: a change is made in memory under the lock, then its caller waits until a world
    holding it is on disk. The first to wait writes the latest world; changes made meanwhile are
    written together by the next writer. So an action is durable before it is reported, hence
    before the journal says it applied, and a kill at any moment loses only unreported changes.

    A batch is written as one line appended to the change log (``worldlog``) and fsynced: the
    customers it changed, not the whole world. The whole world is written (atomically:
    temporary file, fsync, rename, fsync of the directory; then the log removed) when the log
    has grown past ``worldlog``'s bound; on ``close``; after ``compact_when_quiet`` seconds
    without a change, when given (the emulator's); by the first write after reading a log
    someone else left (a killed process); and whenever a batch cannot be a line (a customer
    removed or moved).

    Someone else may change the file or the log (``reconcile world ...``, a test, an editor):
    their identities (inode, modification time, size) are checked whenever no write of this
    provider is pending, and a changed world is read and validated again. (While a batch is
    pending, the world is this provider's: an edit made then is overwritten by the batch, as one
    between a read and a write always could be.)"""

    def __init__(
        self,
        state_dir: Path,
        *,
        rate_limiter: RateLimiter | None = None,
        compact_when_quiet: float | None = None,
    ) -> None:
        super().__init__(rate_limiter=rate_limiter)
        self.path = world_path(state_dir)
        self.log_path = changes_path(self.path)
        self._world: CurrentState | None = None  # as read or last kept; under the lock
        # Tickets: of the last world kept, the last on disk, the last on disk or failed.
        self._writes = threading.Condition()
        self._kept = self._durable = self._settled = 0
        self._latest: CurrentState | None = None  # the world of ticket ``_kept``
        self._versions: Versions | None = None  # of the world on disk as read or last written
        self._writing = False
        self._failures: list[tuple[int, int, PermanentProviderError]] = []  # (after, upto, why]
        self._reread = False  # a write failed: the world in memory is not the file's
        # The writer's (whoever sets ``_writing``): what it last wrote and how.
        self._rendering = Rendering()
        self._written: CurrentState | None = None  # the world on disk, as read or written
        self._base: tuple[bytes, int] | None = None  # world.json's log header and size
        self._log: ChangeLog | None = None  # the log this provider appends to
        self._may_append = False  # no log but this provider's, and nobody changed the world
        self._quiet = compact_when_quiet
        self._last_append = 0.0
        self._compactor: threading.Thread | None = None
        self._closing = False

    def load_world(self) -> CurrentState:
        with self._writes:
            idle = self._settled == self._kept and not self._writing
            stale, self._reread = self._reread, False
            versions = self._versions
        if self._world is None or stale or (idle and self._changed_since(versions)):
            self._world, versions = _read_world(self.path)
            with self._writes:  # the world read is on disk: a ticket of its own, durable
                self._kept += 1
                self._durable = self._settled = self._kept
                self._versions = versions
                # A log left by another (a killed emulator) is folded in by the next write.
                self._may_append = versions[1] is None
                if not self._writing:
                    self._written, self._base = self._world, None
                    self._drop_log()
        return self._world

    def _changed_since(self, versions: Versions | None) -> bool:
        """Whether world.json or its log is not the version given (one stat each); a file
        that cannot be looked at has changed (reading it again says why)."""
        try:
            return (identity(os.stat(self.path)), log_identity(self.log_path)) != versions
        except OSError:
            return True

    def keep_world(self, world: CurrentState) -> int:
        with self._writes:
            if self._reread:  # made from a world whose write failed: it cannot be written
                raise self._failures[-1][2]
            self._kept += 1
            self._latest = self._world = world
            return self._kept

    def kept(self) -> int:
        with self._writes:
            return self._kept

    def await_kept(self, ticket: int) -> None:
        with self._writes:
            while self._settled < ticket:
                if self._writing:
                    self._writes.wait()
                else:
                    self._write_latest()
            for after, upto, failure in self._failures:
                if after < ticket <= upto:
                    raise failure

    def _write_latest(self) -> None:
        """Write the latest world kept; called with the condition held, released for I/O."""
        self._writing = True
        ticket, world = self._kept, self._latest
        assert world is not None
        may_append = self._may_append
        self._writes.release()
        versions: Versions | None = None
        failure: PermanentProviderError | None = None
        try:
            line = self._change_line(world) if may_append else None
            # Appended only to the file and log as this provider left them: a line in the log
            # of a file someone replaced since would be ignored (that batch is written whole,
            # over the other's edit, as any batch pending during an edit).
            if line is not None and not self._changed_since(self._versions):
                versions = self._append(world, line)
            else:
                versions = self._write_whole(world)
        except BaseException as exc:  # not written: say why to everyone waiting for it
            why = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
            message = _("{}: cannot write: {}").format(self.path, why)
            failure = PermanentProviderError(message, code="io_error")
            if not isinstance(exc, OSError):
                raise
        finally:
            self._writes.acquire()
            self._writing = False
            if versions is not None:
                self._durable, self._settled, self._versions = ticket, ticket, versions
                self._may_append = True
                self._watch_for_quiet()
            else:  # this batch and every change made from it since fail; the file is read again
                assert failure is not None
                self._failures.append((self._settled, self._kept, failure))
                self._settled, self._reread, self._may_append = self._kept, True, False
            self._writes.notify_all()

    def _change_line(self, world: CurrentState) -> bytes | None:
        """The log line of the changes from the world last written to ``world``; None when it
        must be written whole (the log is long enough, or customers went or moved)."""
        written = self._written
        if written is None or world.partner != written.partner:
            return None
        if self._log and self._base and self._log.size >= max(COMPACT_AFTER_BYTES, self._base[1]):
            return None
        old = written.customers
        if len(world.customers) < len(old):
            return None
        changed = []
        for new, was in zip(world.customers, old, strict=False):
            if new is not was:
                if new.id != was.id:
                    return None
                changed.append(new)
        changed.extend(world.customers[len(old) :])
        return _change_line(world, changed)

    def _append(self, world: CurrentState, line: bytes) -> Versions:
        assert self._versions is not None
        try:
            if self._log is None:
                header = self._base_header()
                if header is None:  # world.json is not the one read any more
                    return self._write_whole(world)
                mode = os.stat(self.path).st_mode & 0o777
                self._log = ChangeLog.create(self.log_path, header, line, mode=mode)
                appended = self._log.version
            else:
                appended = self._log.append(line)
        except FileExistsError:  # someone else's log appeared: it is overwritten, as an edit
            return self._write_whole(world)
        except BaseException:
            self._drop_log()  # cut back to its last line; the next write is whole
            raise
        self._written, self._last_append = world, time.monotonic()
        return self._versions[0], appended

    def _base_header(self) -> bytes | None:
        """The header of a log of world.json as read or written (hashed when first needed: a
        provider that only reads never hashes); None when the file changed since."""
        if self._base is None:
            assert self._versions is not None
            with open(self.path, "rb") as handle:
                version = identity(os.fstat(handle.fileno()))
                data = handle.read()
            if version != self._versions[0]:
                return None
            self._base = (header_line(digest(data)), len(data))
        return self._base[0]

    def _write_whole(self, world: CurrentState) -> Versions:
        """world.json written whole (atomically), then the log its changes are in removed.
        The log says first which file holds its changes, so that one a kill leaves behind is
        not taken for changes the file lacks."""
        data = render_world(world, self._rendering).encode()
        world_sha256 = digest(data)  # once: the folded line and the next log's header name it
        mark_folded(self.log_path, world_sha256)
        version = atomic_write(self.path, data)
        self._drop_log()
        remove_log(self.log_path)
        self._written, self._base = world, (header_line(world_sha256), len(data))
        return version, None

    def _drop_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _watch_for_quiet(self) -> None:
        """With ``compact_when_quiet``, start the thread that folds the log into world.json once
        changes stop; called with the condition held."""
        if self._quiet is None or self._log is None or self._compactor or self._closing:
            return
        self._compactor = threading.Thread(
            target=self._compact_when_quiet, name="world-compactor", daemon=True
        )
        self._compactor.start()

    def _compact_when_quiet(self) -> None:
        with self._writes:
            assert self._quiet is not None
            while self._log is not None and not self._closing:
                quiet_for = time.monotonic() - self._last_append
                if quiet_for < self._quiet or self._writing or self._settled < self._kept:
                    self._writes.wait(max(self._quiet - quiet_for, 0.05))
                    continue
                if not self._compact():
                    break  # someone changed the world meanwhile: the next read takes it
            self._compactor = None

    def _compact(self) -> bool:
        """Fold the log into world.json; called with the condition held, nothing pending.
        Whether it was done; a failure loses nothing (the log holds every change)."""
        world = self._written
        if self._log is None or world is None or self._changed_since(self._versions):
            return False
        self._writing = True
        self._writes.release()
        versions: Versions | None = None
        try:
            versions = self._write_whole(world)
        except OSError:
            pass
        finally:
            self._writes.acquire()
            self._writing = False
            if versions is not None:
                self._versions = versions
            self._writes.notify_all()
        return versions is not None

    def close(self) -> None:
        """Write what is pending and fold the log into world.json (a clean shutdown), so that
        the file alone holds the world."""
        with self._writes:
            self._closing = True
            while self._writing or self._settled < self._kept:
                if self._writing:
                    self._writes.wait()
                else:
                    self._write_latest()
            self._compact()
            self._writes.notify_all()

    def store_world(self, world: CurrentState) -> None:
        """Replace the world and return once it is on disk."""
        with self._mutex:
            ticket = self.keep_world(world)
        self.await_kept(ticket)


def init_world(state_dir: Path, partner: Partner, *, force: bool) -> Path:
    """Write an empty world for ``partner``; an existing one is kept unless ``force``."""
    path = world_path(state_dir)
    if path.exists() and not force:
        raise StateError(_("{}: a world exists already; --force replaces it").format(path))
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        # The log goes first, with the world it completes: left beside the new world, it would
        # be replayed over it when their bytes are the same (an empty world of the partner).
        remove_log(changes_path(path))
        atomic_write(path, render_world(CurrentState(partner=partner)))
    except OSError as exc:
        raise StateError(_("{}: cannot write: {}").format(path, exc.strerror)) from exc
    return path


def add_customer(world: CurrentState, customer: Customer) -> CurrentState:
    """The world with one more customer (for trying things out). Pure."""
    if customer.id in world.customers_by_id:
        raise StateError(_("customer {} is in the world already").format(customer.id))
    return world.replace_customer(customer)


def add_subscription(
    world: CurrentState, customer_id: str, subscription: Subscription
) -> CurrentState:
    """The world with one more subscription for a customer it knows. Pure."""
    customer = world.customers_by_id.get(customer_id)
    if customer is None:
        message = _(
            "customer {} is not in the world: add it first (`reconcile world add-customer`)"
        )
        raise StateError(message.format(customer_id))
    if subscription.id in customer.subscriptions_by_id:
        raise StateError(
            _("customer {} has a subscription {} already").format(customer_id, subscription.id)
        )
    return world.replace_customer(
        customer.evolve(subscriptions=(*customer.subscriptions, subscription))
    )
