"""A provider over a simulated world: read it, change it through the shared rules, keep it.

The local world file and the in-memory fake differ only in where the world is kept."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..current import CurrentState
from ..errors import PermanentProviderError
from ..ratelimit import RateLimiter
from . import rules


class WorldProvider:
    """Applies each action to the world under one lock: read, check the rules, keep.

    Where the world is kept is the subclass's: ``load_world`` gives the current one and
    ``keep_world`` replaces it, returning a ticket that ``await_kept`` waits on until the world
    holding that change (and every earlier one) is durable. Every answer, a change or a read, is
    given only once the world it was made from is durable (a refusal at once: it changed
    nothing); the lock is held only to read and change the world, never while waiting, so a
    world kept in a file is written in batches.

    Each observation and each action counts as one request against ``rate_limiter`` (none by
    default: a simulated world has no service to protect; ``--rate-limit`` simulates one)."""

    def __init__(self, *, rate_limiter: RateLimiter | None = None) -> None:
        self._mutex = threading.Lock()
        self._limiter = rate_limiter or RateLimiter(0)

    def load_world(self) -> CurrentState:
        raise NotImplementedError

    def store_world(self, world: CurrentState) -> None:
        raise NotImplementedError

    def keep_world(self, world: CurrentState) -> int:
        """Make ``world`` the current one; returns the ticket to await. By default it is
        stored at once (a world in memory)."""
        self.store_world(world)
        return 0

    def kept(self) -> int:
        """The ticket of the last world kept (what a read made now must await)."""
        return 0

    def await_kept(self, ticket: int) -> None:
        """Return once the world of ``ticket`` is durable (at once by default)."""

    def close(self) -> None:
        """Leave the world as a clean shutdown should (nothing to do by default)."""

    def clock(self) -> datetime:
        """The wall clock, for a world that keeps no clock of its own (no ``now``)."""
        from .. import planreuse

        planreuse.spoil("the wall clock")  # not an input a dry run's reuse can check
        return datetime.now(UTC)

    def _clocked(self, world: CurrentState) -> CurrentState:
        return world if world.now is not None else world.at(self.clock())

    def observe(self) -> CurrentState:
        self._limiter.acquire()
        return self.current()

    def current(self) -> CurrentState:
        """The world now (at its clock or the wall clock), once it is durable; not a request."""
        with self._mutex:
            world, ticket = self._clocked(self.load_world()), self.kept()
        self.await_kept(ticket)
        return world

    def world_clock(self) -> datetime:
        """The world's own clock, else the wall clock, without waiting for pending writes:
        only ``advance`` moves it, and a clock is not an answer made from what was changed."""
        with self._mutex:
            return self.load_world().now or self.clock()

    def change(self, change: Callable[[CurrentState], CurrentState]) -> None:
        """Replace the world by ``change(world)``, atomically with respect to other changes,
        and return once it is durable. ``change`` sees the world's clock (or the wall clock);
        a world without a clock of its own is kept without one."""
        self._limiter.acquire()
        with self._mutex:
            world = self.load_world()
            before = self._clocked(world)
            after = change(before)
            if after is before:  # nothing changed: await the world it was read from
                ticket = self.kept()
            else:
                ticket = self.keep_world(after if world.now is not None else after.at_no_clock())
        self.await_kept(ticket)

    def _act(self, change: Callable[[CurrentState], CurrentState]) -> None:
        """An action of the provider: a refusal with the service's own code says the code, as
        Partner Center's errors do (the emulator answers with the code in its body instead),
        explained as the Partner Center client explains it, so that a person reads the same
        sentence whichever provider refused."""
        try:
            self.change(change)
        except PermanentProviderError as exc:
            if exc.code and exc.code.isdigit():
                # Imported here: the local world needs the client's module only when refused.
                from .pcapi import EXPLAINED_CODES

                detail = f"{exc} (Partner Center error {exc.code})"
                explained = EXPLAINED_CODES.get(exc.code)
                message = f"{explained} [{detail}]" if explained else detail
                raise PermanentProviderError(message, code=exc.code) from exc
            raise

    def advance(self, by: timedelta) -> tuple[CurrentState, CurrentState]:
        """Move the world's clock forward (a world without one starts from the wall clock, and
        keeps a clock from then on); returns the world before and after."""
        with self._mutex:
            before = self._clocked(self.load_world())
            after = rules.advance(before, by)
            ticket = self.keep_world(after)
        self.await_kept(ticket)
        return before, after

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._act(lambda w: rules.suspend_subscription(w, customer_id, subscription_id))

    def reactivate_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._act(lambda w: rules.reactivate_subscription(w, customer_id, subscription_id))

    def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None:
        self._act(lambda w: rules.update_quantity(w, customer_id, subscription_id, quantity))

    def cancel_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._act(lambda w: rules.cancel_subscription(w, customer_id, subscription_id))

    def set_auto_renew(self, customer_id: str, subscription_id: str, enabled: bool) -> None:
        self._act(lambda w: rules.set_auto_renew(w, customer_id, subscription_id, enabled))

    def remove_relationship(self, customer_id: str) -> None:
        self._act(lambda w: rules.remove_relationship(w, customer_id))

    def request_relationship(self, customer_id: str) -> str:
        self._limiter.acquire()
        return rules.request_relationship(self.current(), customer_id)

    def accept_invitation(self, customer_id: str, name: str | None = None) -> None:
        """Simulate the customer's admin accepting the invitation (not a provider action)."""
        self.change(lambda w: rules.accept_invitation(w, customer_id, name))
