"""The executor: runs a plan's DAG through the provider, the only code that changes anything.

Actions start as soon as everything they depend on has been applied, up to ``parallelism`` at
once. Temporary provider errors are retried with exponential backoff and full jitter (honouring
Retry-After) within a time budget; a failed action's dependents are skipped, independent ones go
on. Journal before acting: the run's start and each action's start are durable before the
provider is called, and each outcome before anything that depends on it starts. When the journal
cannot be written, no further action starts: those in flight finish, the rest are skipped, and
the run still returns every result, so the outcome is reported.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .document import ActionResult
from .errors import ProviderError, StateError
from .i18n import _
from .plan import Action, Plan
from .providers.base import Provider, logical_request
from .records import PendingRequest, RecordStore, utc_now
from .retry import RetryPolicy

log = logging.getLogger("reconcile")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Executor:
    """Applies one plan; ``on_result`` hears of each finished action (for progress output)."""

    provider: Provider
    store: RecordStore
    parallelism: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_result: Callable[[Action, ActionResult], None] | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep
    stop: threading.Event = field(default_factory=threading.Event)
    _records_lock: threading.Lock = field(default_factory=threading.Lock)
    # Why the journal cannot be written (the first failure), once it could not be.
    journal_error: str | None = field(default=None, init=False)

    def run(self, plan: Plan, *, run_id: str | None = None) -> tuple[ActionResult, ...]:
        """Apply every action of ``plan`` in dependency order; return each one's result."""
        run_id = run_id or new_run_id()
        self._journal(
            run_id,
            sync=True,  # on disk before the first change
            event="run_started",
            actions=len(plan.actions),
            fingerprint=plan.fingerprint,
        )
        results = self._run_dag(plan, run_id)
        ordered = tuple(results[a.id] for a in plan.actions)
        counts: dict[str, Any] = {
            s: sum(r.status == s for r in ordered) for s in ("applied", "failed", "skipped")
        }
        self._journal(run_id, sync=True, event="run_finished", **counts)
        return ordered

    def _run_dag(self, plan: Plan, run_id: str) -> dict[str, ActionResult]:
        by_id = {a.id: a for a in plan.actions}
        waiting = {a.id: set(a.depends_on) for a in plan.actions}
        dependents: dict[str, list[str]] = {a.id: [] for a in plan.actions}
        for action in plan.actions:
            # Each once: an id listed twice (a saved plan is a file) would start it twice.
            for before in dict.fromkeys(action.depends_on):
                dependents[before].append(action.id)
        results: dict[str, ActionResult] = {}
        ready = deque(a.id for a in plan.actions if not waiting[a.id])
        with ThreadPoolExecutor(max_workers=max(1, self.parallelism)) as pool:
            running: dict[Future[ActionResult], str] = {}
            while ready or running:
                while ready and len(running) < self.parallelism and not self._halted():
                    action_id = ready.popleft()
                    running[pool.submit(self._perform, by_id[action_id], run_id)] = action_id
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                unlocked = []
                for future in done:
                    action_id = running.pop(future)
                    result = future.result()
                    self._finish(by_id[action_id], result, results)
                    if result.status == "applied":
                        for dependent in dependents[action_id]:
                            waiting[dependent].discard(action_id)
                            if not waiting[dependent] and dependent not in results:
                                unlocked.append(dependent)
                    else:
                        self._skip_dependents(action_id, by_id, dependents, results, run_id)
                if unlocked:
                    # What they depend on must be on record before they start.
                    self._sync_journal()
                    ready.extend(unlocked)
        for action in plan.actions:  # stopped early: what never started is skipped
            if action.id not in results:
                result = ActionResult(id=action.id, status="skipped", error=self._not_started())
                self._journal_action(run_id, action, result)
                self._finish(action, result, results)
        return results

    def _halted(self) -> bool:
        """Start nothing more: asked to stop, or the journal cannot record what would start."""
        return self.stop.is_set() or self.journal_error is not None

    def _not_started(self) -> str:
        if self.journal_error is None:
            return "not started"
        return f"not started: the journal cannot be written: {self.journal_error}"

    def _finish(
        self, action: Action, result: ActionResult, results: dict[str, ActionResult]
    ) -> None:
        results[action.id] = result
        if self.on_result is not None:
            self.on_result(action, result)

    def _skip_dependents(
        self,
        failed_id: str,
        by_id: Mapping[str, Action],
        dependents: Mapping[str, list[str]],
        results: dict[str, ActionResult],
        run_id: str,
    ) -> None:
        stack = list(dependents[failed_id])
        while stack:
            action_id = stack.pop()
            if action_id in results:
                continue
            result = ActionResult(
                id=action_id, status="skipped", error=f"depends on {failed_id}, which did not apply"
            )
            self._journal_action(run_id, by_id[action_id], result)
            self._finish(by_id[action_id], result, results)
            stack.extend(dependents[action_id])

    def _perform(self, action: Action, run_id: str) -> ActionResult:
        # Journal before acting: the start is on disk before the provider is called (workers
        # starting at once share one sync). Outcomes are synced in groups: before any dependent
        # starts, and at the end of the run; the next run plans from what it observes.
        started = self._journal(
            run_id,
            sync=True,
            event="action_started",
            id=action.id,
            type=action.type,
            customer_id=action.customer_id,
            subscription_id=action.subscription_id,
        )
        if not started:
            return ActionResult(id=action.id, status="skipped", error=self._not_started())
        # One logical request per action, the same across its retries (an idempotency key).
        token = logical_request.set(f"{run_id}/{action.id}")
        try:
            self._call_with_retries(action)
            result = ActionResult(id=action.id, status="applied")
        except (ProviderError, StateError) as exc:  # StateError: the pending request unsaved
            result = ActionResult(id=action.id, status="failed", error=str(exc))
        except Exception as exc:  # a bug must not leave the run unrecorded: fail this action
            log.exception("unexpected error in %s", action.id)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            result = ActionResult(id=action.id, status="failed", error=error)
        finally:
            logical_request.reset(token)
        self._journal_action(run_id, action, result)
        return result

    def _call_with_retries(self, action: Action) -> None:
        # The rate limit is charged by the provider, once per request it makes (an action may
        # make several: read, change, re-read), not here.
        self.retry.call(lambda: self._call(action), sleep=self.sleep)

    def _call(self, action: Action) -> None:
        customer, subscription = action.customer_id, action.subscription_id or ""
        match action.type:
            case "suspend_subscription":
                self.provider.suspend_subscription(customer, subscription)
            case "reactivate_subscription":
                self.provider.reactivate_subscription(customer, subscription)
            case "update_quantity":
                assert isinstance(action.to, int)
                self.provider.update_quantity(customer, subscription, action.to)
            case "cancel_subscription":
                self.provider.cancel_subscription(customer, subscription)
            case "set_auto_renew":
                assert isinstance(action.to, bool)
                self.provider.set_auto_renew(customer, subscription, action.to)
            case "remove_relationship":
                self.provider.remove_relationship(customer)
            case "request_relationship":
                url = self.provider.request_relationship(customer)
                self._record_pending(customer, url)

    def _record_pending(self, customer_id: str, url: str) -> None:
        """Record the request at once: the invitation must not be lost if the run is killed."""
        request = PendingRequest(
            customer_id=customer_id,
            name=self.names.get(customer_id, ""),
            requested_at=utc_now(),
            invitation_url=url,
        )
        with self._records_lock:
            self.store.save(self.store.load().with_pending(request))

    def _journal_action(self, run_id: str, action: Action, result: ActionResult) -> None:
        self._journal(
            run_id,
            event="action_" + result.status,
            id=action.id,
            type=action.type,
            customer_id=action.customer_id,
            subscription_id=action.subscription_id,
            error=result.error,
        )

    def _journal(self, run_id: str, *, sync: bool = False, **entry: Any) -> bool:
        """Append (with ``sync``, durably) and say whether it worked; a failure is kept in
        ``journal_error`` and halts the run instead of escaping from a worker."""
        # No lock here: the store makes concurrent appends durable together (group commit).
        entry = {"time": utc_now(), "run": run_id, **entry}
        return self._journaling(lambda: self.store.append_journal(entry, sync=sync))

    def _sync_journal(self) -> bool:
        return self._journaling(self.store.sync_journal)

    def _journaling(self, write: Callable[[], None]) -> bool:
        if self.journal_error is not None:
            return False
        try:
            write()
            return True
        except (StateError, OSError) as exc:
            message = str(exc) if isinstance(exc, StateError) else exc.strerror or repr(exc)
            with self._records_lock:
                if self.journal_error is None:
                    self.journal_error = message
                    log.error(_("%s; starting no more actions"), message)
            return False
