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
    """Applies each action to the world under one lock: read, check the rules, write.

    Each observation and each action counts as one request against ``rate_limiter`` (none by
    default: a simulated world has no service to protect; ``--rate-limit`` simulates one)."""

    def __init__(self, *, rate_limiter: RateLimiter | None = None) -> None:
        self._mutex = threading.Lock()
        self._limiter = rate_limiter or RateLimiter(0)

    def load_world(self) -> CurrentState:
        raise NotImplementedError

    def store_world(self, world: CurrentState) -> None:
        raise NotImplementedError

    def clock(self) -> datetime:
        """The wall clock, for a world that keeps no clock of its own (no ``now``)."""
        return datetime.now(UTC)

    def _clocked(self, world: CurrentState) -> CurrentState:
        return world if world.now is not None else world.at(self.clock())

    def observe(self) -> CurrentState:
        self._limiter.acquire()
        with self._mutex:
            return self._clocked(self.load_world())

    def change(self, change: Callable[[CurrentState], CurrentState]) -> None:
        """Replace the world by ``change(world)``, atomically with respect to other changes.
        ``change`` sees the world's clock (or the wall clock); a world without a clock of its
        own is stored without one."""
        self._limiter.acquire()
        with self._mutex:
            world = self.load_world()
            changed = change(self._clocked(world))
            self.store_world(changed if world.now is not None else changed.at_no_clock())

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
            self.store_world(after)
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
        with self._mutex:
            return rules.request_relationship(self.load_world(), customer_id)

    def accept_invitation(self, customer_id: str, name: str | None = None) -> None:
        """Simulate the customer's admin accepting the invitation (not a provider action)."""
        self.change(lambda w: rules.accept_invitation(w, customer_id, name))
