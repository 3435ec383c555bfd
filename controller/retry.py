"""Retrying temporary provider errors: exponential backoff with full jitter, honouring
Retry-After, bounded in attempts and in total time. Shared by the executor (actions) and the
Partner Center client (reads)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import TemporaryProviderError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    budget: float = 120.0  # seconds, all attempts and waits of one call together
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait after failed attempt number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def call(self, attempt: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
        """``attempt()`` until it succeeds, raises anything but a temporary error, or the
        attempts or the time budget run out."""
        started = time.monotonic()
        for number in range(self.attempts):
            try:
                return attempt()
            except TemporaryProviderError as exc:
                delay = self.delay(number, exc.retry_after)
                last = number == self.attempts - 1
                if last or time.monotonic() - started + delay > self.budget:
                    raise TemporaryProviderError(
                        f"{exc} (gave up after {number + 1} attempts)", retry_after=exc.retry_after
                    ) from exc
                sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover
