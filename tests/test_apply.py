"""The executor: dependency order under concurrency, retries, partial failure, journal.

The tests that check what the executor records (outcomes, journal, pending requests) run with
an in-memory store and with the PostgreSQL store (``store_for``), whose one connection the
executor's worker threads share."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import customer, desired, gid, records, sub, want, want_sub, world

from controller.apply import Executor
from controller.errors import PermanentProviderError, TemporaryProviderError
from controller.plan import plan
from controller.providers.memory import Faults, MemoryProvider
from controller.records import MemoryStore, Records, RecordStore, next_records
from controller.retry import RetryPolicy

NO_WAIT = RetryPolicy(attempts=8, base_delay=0.0, max_delay=0.0, budget=60)


@pytest.fixture(params=["memory", "postgres"])
def store_for(request: pytest.FixtureRequest) -> Iterator[Callable[[Records], RecordStore]]:
    """Makes a store holding the given records: in memory, or in PostgreSQL."""
    if request.param == "memory":
        yield MemoryStore
        return
    from controller.pgstore import PostgresStore

    url = request.getfixturevalue("pg_url")
    opened: list[PostgresStore] = []

    def make(recs: Records) -> RecordStore:
        opened.append(PostgresStore(url, str(uuid.uuid4())))
        opened[-1].save(recs)
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def check_journal_order(store: RecordStore, made: Any) -> None:
    """Each action started only after what it depends on was on record as applied."""
    applied: set[str] = set()
    for entry in store.read_journal():
        if entry["event"] == "action_started":
            action = next(a for a in made.actions if a.id == entry["id"])
            assert set(action.depends_on) <= applied, entry
        elif entry["event"] == "action_applied":
            applied.add(entry["id"])


def removal_world(customers: int, subs: int) -> tuple:
    current = world(
        customer(99),
        *(customer(c, *(sub(c * 100 + s) for s in range(subs))) for c in range(1, customers + 1)),
    )
    return desired(want(99)), current, records(managed=tuple(range(1, customers + 1)))


class FailingFor(MemoryProvider):
    """Fails permanently on one subscription."""

    def __init__(self, current, bad_subscription: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(current)
        self.bad = bad_subscription

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None:
        if subscription_id == self.bad:
            raise PermanentProviderError("403 Forbidden", code="403")
        super().suspend_subscription(customer_id, subscription_id)


def test_dependents_of_a_failed_action_are_skipped_and_others_carry_on(store_for) -> None:  # type: ignore[no-untyped-def]
    spec, current, recs = removal_world(3, 2)
    made = plan(spec, current, recs)
    provider = FailingFor(current, gid(201))
    store = store_for(recs)
    results = {r.id: r for r in Executor(provider, store, retry=NO_WAIT).run(made)}
    journaled = {e["id"]: e["event"] for e in store.read_journal() if "id" in e}
    assert journaled == {i: f"action_{r.status}" for i, r in results.items()}
    by_target = {(a.type, a.customer_id, a.subscription_id): a.id for a in made.actions}
    assert results[by_target[("suspend_subscription", gid(2), gid(201))]].status == "failed"
    assert results[by_target[("remove_relationship", gid(2), None)]].status == "skipped"
    assert results[by_target[("suspend_subscription", gid(2), gid(200))]].status == "applied"
    for c in (1, 3):
        assert results[by_target[("remove_relationship", gid(c), None)]].status == "applied"
    after = provider.observe().customers_by_id
    assert after[gid(2)].relationship == "reseller"
    assert after[gid(1)].relationship == after[gid(3)].relationship == "none"


class Gauge(MemoryProvider):
    """Measures how many calls are in flight at once."""

    def __init__(self, current) -> None:  # type: ignore[no-untyped-def]
        super().__init__(current, latency=0.02)
        self.in_flight = self.peak = 0
        self.gauge_lock = threading.Lock()

    def _call(self, *call: str) -> None:
        with self.gauge_lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            super()._call(*call)
        finally:
            with self.gauge_lock:
                self.in_flight -= 1


def test_independent_actions_run_concurrently_within_the_bound_and_in_order() -> None:
    spec, current, recs = removal_world(12, 3)
    made = plan(spec, current, recs)
    provider = Gauge(current)
    results = Executor(provider, MemoryStore(recs), parallelism=6).run(made)
    assert {r.status for r in results} == {"applied"}
    assert 1 < provider.peak <= 6
    removed_at = {c[1]: i for i, c in enumerate(provider.calls) if c[0] == "remove_relationship"}
    for i, call in enumerate(provider.calls):
        if call[0] == "suspend_subscription":
            assert i < removed_at[call[1]]


def test_transient_failures_are_retried_until_a_large_plan_converges(store_for) -> None:  # type: ignore[no-untyped-def]
    spec, current, recs = removal_world(60, 4)  # 300 actions
    faults = Faults(throttled=0.1, server_error=0.05, timeout=0.05, seed=7)
    provider, store = MemoryProvider(current, faults=faults), store_for(recs)
    made = plan(spec, current, recs)
    assert len(made.actions) == 300
    results = Executor(provider, store, parallelism=16, retry=NO_WAIT).run(made)
    assert {r.status for r in results} == {"applied"}
    assert len(provider.calls) > 300  # some calls were retried
    check_journal_order(store, made)
    store.save(next_records(store.load(), spec, provider.observe()))
    assert not plan(spec, provider.observe(), store.load()).has_changes


def test_retry_after_is_honoured_and_retries_are_bounded() -> None:
    class Throttled(MemoryProvider):
        def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None:
            raise TemporaryProviderError("429 Too Many Requests", retry_after=1.5)

    current = world(customer(1, sub(11, quantity=1)))
    made = plan(desired(want(1, want_sub(11, quantity=2))), current, records())
    slept: list[float] = []
    retry = RetryPolicy(attempts=3, base_delay=0.1, max_delay=10, budget=100)
    executor = Executor(Throttled(current), MemoryStore(), retry=retry, sleep=slept.append)
    [result] = executor.run(made)
    assert result.status == "failed" and "gave up after 3 attempts" in (result.error or "")
    assert slept == [1.5, 1.5]


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    import random

    policy = RetryPolicy(base_delay=1, max_delay=8, rng=random.Random(1))
    delays = [[policy.delay(attempt, None) for _ in range(200)] for attempt in range(5)]
    for attempt, drawn in enumerate(delays):
        assert all(0 <= d <= min(8, 2**attempt) for d in drawn)
    assert max(delays[3]) > 4 > max(delays[1])


def test_a_request_is_recorded_as_pending_at_once_and_everything_is_journaled(store_for) -> None:  # type: ignore[no-untyped-def]
    current = world()
    made = plan(desired(want(5, name="Adatum")), current, records())
    store = store_for(records())
    Executor(MemoryProvider(current), store, names=made.names).run(made, run_id="r1")
    [pending] = store.load().pending
    assert pending.customer_id == gid(5) and pending.name == "Adatum"
    assert "invType=ResellerRelationship" in pending.invitation_url
    events = [e["event"] for e in store.read_journal()]
    assert events == ["run_started", "action_started", "action_applied", "run_finished"]
    assert all(e["run"] == "r1" for e in store.read_journal())


def test_a_stop_request_lets_running_actions_finish_and_starts_no_more() -> None:
    spec, current, recs = removal_world(10, 1)
    made = plan(spec, current, recs)
    provider = MemoryProvider(current, latency=0.05)
    executor = Executor(provider, MemoryStore(recs), parallelism=2)
    threading.Timer(0.07, executor.stop.set).start()
    started = time.monotonic()
    results = executor.run(made)
    assert time.monotonic() - started < 1
    statuses = [r.status for r in results]
    assert 0 < statuses.count("applied") < len(made.actions)
    assert "failed" not in statuses
    assert all(r.error == "not started" for r in results if r.status == "skipped")


class ReadOnly(MemoryProvider):
    """For dry runs: any mutating call is a failure of the test."""

    def _call(self, *call: str) -> None:
        raise AssertionError(f"a dry run called {call[0]}")


def test_planning_never_calls_a_mutating_method() -> None:
    from controller.reconcile import make_plan

    spec, current, recs = removal_world(3, 2)
    made = make_plan(spec, ReadOnly(current), MemoryStore(recs))
    assert len(made.actions) == 9  # planned, and nothing changed
    results = Executor(ReadOnly(current), MemoryStore(recs)).run(made)  # the guard itself works
    assert "a dry run called suspend_subscription" in (results[0].error or "")
    assert {r.status for r in results} == {"failed", "skipped"}  # recorded, not a crash
