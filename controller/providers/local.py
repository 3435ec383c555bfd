"""The local provider: a simulated Partner Center tenant in ``state/world.json``."""

from __future__ import annotations

import os
import threading
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


def world_path(state_dir: Path) -> Path:
    return state_dir / "world.json"


def read_world(path: Path) -> CurrentState:
    """Read and validate a world file; a problem is one line naming the file and the field."""
    return _read_world(path)[0]


def _read_world(path: Path) -> tuple[CurrentState, FileIdentity]:
    """The world file's world, and the identity of the version read."""
    try:
        with open(path, "rb") as handle:
            version = identity(os.fstat(handle.fileno()))
            data = handle.read()
        world = CurrentState.model_validate_json(data)
    except FileNotFoundError as exc:
        message = _("{}: no such file; the local provider needs a world file").format(path)
        raise StateError(message) from exc
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise StateError(f"{path}: {validation_problem(exc)}") from exc
    share_fields_sets(world.customers)
    share_fields_sets(s for c in world.customers for s in c.subscriptions)
    return world, version


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
    document = customer.model_dump(mode="json", exclude_none=True)
    document["subscriptions"] = [_without_defaults(s) for s in document["subscriptions"]]
    return readable_json(_without_defaults(document), indent=2).replace("\n", "\n    ")


class LocalProvider(WorldProvider):
    """The world of ``world.json``, read and validated once, then kept in memory and written
    back in batches.

    Group commit: a change is made in memory under the lock, then its caller waits until a world
    holding it is on disk (written atomically: temporary file, fsync, rename, fsync of the
    directory). The first to wait writes the latest world; changes made meanwhile are written
    together by the next writer. So an action is durable before it is reported, hence before
    the journal says it applied, and a kill at any moment loses only unreported changes.

    Someone else may change the file (``reconcile world ...``, a test, an editor): its identity
    (inode, modification time, size) is checked whenever no write of this provider is pending,
    and a changed file is read and validated again. (While a batch is pending, the file is this
    provider's: an edit made then is overwritten by the batch, as one between a read and a write
    always could be.)"""

    def __init__(self, state_dir: Path, *, rate_limiter: RateLimiter | None = None) -> None:
        super().__init__(rate_limiter=rate_limiter)
        self.path = world_path(state_dir)
        self._world: CurrentState | None = None  # as read or last kept; under the lock
        self._rendering = Rendering()  # the writer's
        # Tickets: of the last world kept, the last on disk, the last on disk or failed.
        self._writes = threading.Condition()
        self._kept = self._durable = self._settled = 0
        self._latest: CurrentState | None = None  # the world of ticket ``_kept``
        self._version: FileIdentity | None = None  # of the file as read or last written
        self._writing = False
        self._failures: list[tuple[int, int, PermanentProviderError]] = []  # (after, upto, why]
        self._reread = False  # a write failed: the world in memory is not the file's

    def load_world(self) -> CurrentState:
        with self._writes:
            idle = self._settled == self._kept and not self._writing
            stale, self._reread = self._reread, False
            version = self._version
        if self._world is None or stale or (idle and self._changed_since(version)):
            self._world, version = _read_world(self.path)
            with self._writes:  # the world read is on disk: a ticket of its own, durable
                self._kept += 1
                self._durable = self._settled = self._kept
                self._version = version
        return self._world

    def _changed_since(self, version: FileIdentity | None) -> bool:
        try:
            return identity(os.stat(self.path)) != version
        except OSError:
            return True  # reading it again says why

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
        self._writes.release()
        version: FileIdentity | None = None
        failure: PermanentProviderError | None = None
        try:
            version = atomic_write(self.path, render_world(world, self._rendering))
        except BaseException as exc:  # not written: say why to everyone waiting for it
            why = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
            message = _("{}: cannot write: {}").format(self.path, why)
            failure = PermanentProviderError(message, code="io_error")
            if not isinstance(exc, OSError):
                raise
        finally:
            self._writes.acquire()
            self._writing = False
            if version is not None:
                self._durable, self._settled, self._version = ticket, ticket, version
            else:  # this batch and every change made from it since fail; the file is read again
                assert failure is not None
                self._failures.append((self._settled, self._kept, failure))
                self._settled, self._reread = self._kept, True
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
