"""A provider over a simulated world: read it, change it through the shared rules, keep it.

The local world file and the in-memory fake differ only in where the world is kept."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..current import CurrentState
from . import rules


class WorldProvider:
    """Applies each action to the world under one lock: read, check the rules, write."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()

    def load_world(self) -> CurrentState:
        raise NotImplementedError

    def store_world(self, world: CurrentState) -> None:
        raise NotImplementedError

    def observe(self) -> CurrentState:
        with self._mutex:
            return self.load_world()

    def change(self, change: Callable[[CurrentState], CurrentState]) -> None:
        """Replace the world by ``change(world)``, atomically with respect to other changes."""
        with self._mutex:
            self.store_world(change(self.load_world()))

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None:
        self.change(lambda w: rules.suspend_subscription(w, customer_id, subscription_id))

    def reactivate_subscription(self, customer_id: str, subscription_id: str) -> None:
        self.change(lambda w: rules.reactivate_subscription(w, customer_id, subscription_id))

    def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None:
        self.change(lambda w: rules.update_quantity(w, customer_id, subscription_id, quantity))

    def remove_relationship(self, customer_id: str) -> None:
        self.change(lambda w: rules.remove_relationship(w, customer_id))

    def request_relationship(self, customer_id: str) -> str:
        with self._mutex:
            return rules.request_relationship(self.load_world(), customer_id)

    def accept_invitation(self, customer_id: str, name: str | None = None) -> None:
        """Simulate the customer's admin accepting the invitation (not a provider action)."""
        self.change(lambda w: rules.accept_invitation(w, customer_id, name))
