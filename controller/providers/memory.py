"""An in-memory provider for tests and demos: records every call, and can be slowed down or made
to fail, so that the executor can be exercised without files or a network."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from ..current import CurrentState
from ..errors import PermanentProviderError, TemporaryProviderError
from .world import WorldProvider


@dataclass(frozen=True)
class Faults:
    """Shares (0..1) of calls that fail, each kind drawn independently per call."""

    throttled: float = 0.0  # HTTP 429 with Retry-After
    server_error: float = 0.0  # HTTP 5xx
    timeout: float = 0.0
    permanent: float = 0.0
    retry_after: float = 0.01
    seed: int = 0


class MemoryProvider(WorldProvider):
    """A world held in memory. ``calls`` lists every mutating call, in the order made."""

    def __init__(
        self, world: CurrentState, *, latency: float = 0.0, faults: Faults | None = None
    ) -> None:
        super().__init__()
        self.world = world
        self.latency = latency
        self.faults = faults or Faults()
        self.calls: list[tuple[str, ...]] = []
        self._random = random.Random(self.faults.seed)
        self._random_lock = threading.Lock()

    def load_world(self) -> CurrentState:
        return self.world

    def store_world(self, world: CurrentState) -> None:
        self.world = world

    def _call(self, *call: str) -> None:
        """Record a call, wait out the latency, and maybe fail before it takes effect."""
        self.calls.append(call)
        if self.latency:
            time.sleep(self.latency)
        with self._random_lock:
            draws = [self._random.random() for _ in range(4)]
        faults = self.faults
        if draws[0] < faults.throttled:
            raise TemporaryProviderError("429 Too Many Requests", retry_after=faults.retry_after)
        if draws[1] < faults.server_error:
            raise TemporaryProviderError("503 Service Unavailable")
        if draws[2] < faults.timeout:
            raise TemporaryProviderError("timed out")
        if draws[3] < faults.permanent:
            raise PermanentProviderError("400 Bad Request (injected)", code="injected")

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._call("suspend_subscription", customer_id, subscription_id)
        super().suspend_subscription(customer_id, subscription_id)

    def reactivate_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._call("reactivate_subscription", customer_id, subscription_id)
        super().reactivate_subscription(customer_id, subscription_id)

    def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None:
        self._call("update_quantity", customer_id, subscription_id, str(quantity))
        super().update_quantity(customer_id, subscription_id, quantity)

    def cancel_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._call("cancel_subscription", customer_id, subscription_id)
        super().cancel_subscription(customer_id, subscription_id)

    def set_auto_renew(self, customer_id: str, subscription_id: str, enabled: bool) -> None:
        self._call("set_auto_renew", customer_id, subscription_id, str(enabled).lower())
        super().set_auto_renew(customer_id, subscription_id, enabled)

    def remove_relationship(self, customer_id: str) -> None:
        self._call("remove_relationship", customer_id)
        super().remove_relationship(customer_id)

    def request_relationship(self, customer_id: str) -> str:
        self._call("request_relationship", customer_id)
        return super().request_relationship(customer_id)
