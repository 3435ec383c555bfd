"""The shared rate limiter, on a fake clock: no sleeping, exact figures."""

from __future__ import annotations

import threading

from controller.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_passes_then_requests_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, burst=5, clock=clock, sleep=clock.sleep)  # 10 per second
    waits = [limiter.acquire() for _ in range(8)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert [round(w, 6) for w in waits[5:]] == [0.1, 0.1, 0.1]
    assert round(clock.now, 6) == 0.3


def test_tokens_refill_while_idle_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=3, clock=clock, sleep=clock.sleep)  # 1 per second
    for _ in range(3):
        limiter.acquire()
    clock.now += 100  # idle for long: only 3 tokens come back, not 100
    assert [limiter.acquire() for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire() == 1.0


def test_the_average_rate_holds_across_threads() -> None:
    clock = FakeClock()  # stands still: each reservation must wait longer than the last
    limiter = RateLimiter(120, burst=1, clock=clock, sleep=lambda seconds: None)  # 2 per second
    waits: list[float] = []
    threads = [threading.Thread(target=lambda: waits.append(limiter.acquire())) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(w, 6) for w in waits) == [i * 0.5 for i in range(9)]


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.acquire() == 0 for _ in range(1000))
