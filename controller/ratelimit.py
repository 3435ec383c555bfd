"""One request-rate limiter shared by every worker of an apply (Partner Center allows 500
customer and subscription requests per minute per tenant)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket: ``per_minute`` requests per minute on average, bursts up to ``burst``.

    ``acquire`` reserves a token under the lock and sleeps outside it, so waiting workers are
    served in turn and never sleep while holding the lock. ``per_minute`` 0 means no limit."""

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, burst))
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a token; returns how long this call waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
