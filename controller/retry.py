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
from .i18n import _

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``max_delay`` caps the backoff the policy computes itself; a wait the service asks for
    (Retry-After) is honoured in full, since retrying earlier only earns another 429. The
    ``budget`` bounds all attempts and waits of one call together, whatever the service asks."""

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    budget: float = 120.0  # seconds
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait after failed attempt number ``attempt`` (0-based)."""
        if retry_after is not None:
            return max(0.0, retry_after)
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
                left = self.budget - (time.monotonic() - started)
                if number == self.attempts - 1:
                    why = _("gave up after {} attempts").format(number + 1)
                elif delay > left and exc.retry_after is not None:
                    why = _(
                        "gave up after {} attempts: the service asked to wait {:.0f} s, more "
                        "than the {:.0f} s left of the retry budget"
                    ).format(number + 1, delay, max(0.0, left))
                elif delay > left:
                    why = _("gave up after {} attempts: the retry budget of {:.0f} s ran out")
                    why = why.format(number + 1, self.budget)
                else:
                    sleep(delay)
                    continue
                raise TemporaryProviderError(f"{exc} ({why})", retry_after=exc.retry_after) from exc
        raise AssertionError("unreachable")  # pragma: no cover
