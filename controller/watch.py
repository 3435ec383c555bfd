"""Watch mode: a level-triggered loop that keeps the world converged with the specs.

A pass re-reads everything (specs, current state, records) and plans afresh; it never relies on
which file changed. Passes run when the specs change (a burst of edits is debounced into one),
every ``interval`` seconds regardless (drift made in the portal, accepted invitations: these
resyncs read the whole Partner Center tenant, the spec-change passes what they need), and
sooner after a failed pass, with backoff. Passes never overlap: changes made during one cause
exactly one more after it. A stop request lets the actions in flight finish, then ends the loop.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import metrics
from .errors import ReconcileError
from .i18n import _, ngettext
from .plan import Plan
from .reconcile import Options, apply, dry_run, spec_cache_path
from .records import utc_now
from .render import Outcome
from .spec import Desired, load_specs

if TYPE_CHECKING:
    from .leader import Leadership

log = logging.getLogger("reconcile")

DEBOUNCE_MS = 300
TICK_MS = 500
FIRST_BACKOFF = 5.0


@dataclass
class PassResult:
    """What one pass did, for its summary line."""

    ok: bool
    applied: int = 0
    failed: int = 0
    blocked: int = 0
    left: int = 0
    error: str | None = None


@dataclass
class WatchSettings:
    specs_dir: Path
    options: Options
    dry_run: bool
    interval: float
    health_file: Path | None = None
    leadership: Leadership | None = None  # replicas sharing a database: only the leader applies


Render = Callable[[object], str]


class Watcher:
    """Runs passes when due; ``emit`` receives each pass's rendered output (plan or outcome)."""

    def __init__(
        self,
        settings: WatchSettings,
        *,
        emit: Callable[[str], None],
        render_plan: Render,
        render_outcome: Render,
        render_error: Callable[[str], str],
        show_plan: Callable[[Plan], None] = lambda _plan: None,
        emit_idle: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.emit = emit
        # As a one-off apply: the plan before applying it (text), per-action progress lines on
        # stderr; a pass with nothing to do prints nothing but its summary line (unless
        # emit_idle: a JSON stream gets one document per pass).
        self.show_plan = show_plan
        self.emit_idle = emit_idle
        self.render_plan, self.render_outcome, self.render_error = (
            render_plan,
            render_outcome,
            render_error,
        )
        self.stop = stop or threading.Event()
        self.passes = 0
        self._failures = 0

    def run(self) -> None:
        """Watch until ``stop`` is set."""
        from watchfiles import watch  # imported on demand: only watch mode needs it

        next_due = 0.0  # a first pass at once
        dirty = False
        changes_seen = watch(
            self.settings.specs_dir,
            debounce=DEBOUNCE_MS,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
            stop_event=self.stop,
            raise_interrupt=False,
        )
        # The first pass runs on the first tick (within TICK_MS), once the watcher is started:
        # edits made during that pass are then seen too.
        for changes in changes_seen:
            dirty = dirty or bool(changes)
            if self.stop.is_set():
                break
            if not self._leading():
                next_due = 0.0  # a pass as soon as this replica leads
                continue
            if dirty or time.monotonic() >= next_due:
                resync, dirty = not dirty, False  # a pass on the timer, not on a spec change
                result = self.run_pass(resync=resync)
                next_due = time.monotonic() + self._delay_after(result)

    def _leading(self) -> bool:
        """Whether this replica may apply: always alone; with replicas, while it leads (a standby
        tries to take the lead on every tick, so it takes over within TICK_MS)."""
        leadership = self.settings.leadership
        leading = leadership is None or self.settings.dry_run or leadership.try_lead()
        metrics.LEADER.set(1 if leading else 0)
        return leading

    def _pass_stop(self) -> threading.Event:
        """What stops a pass's apply: a signal, or lost leadership (at once, not after it)."""
        leadership = self.settings.leadership
        if leadership is None:
            return self.stop
        from .leader import StopWhenAny

        return StopWhenAny(self.stop, leadership.lost)

    def _delay_after(self, result: PassResult) -> float:
        """The interval after a good pass; after failures, backoff: 5 s, 10 s, … up to it."""
        if result.ok:
            self._failures = 0
            return self.settings.interval
        self._failures += 1
        # The exponent stops growing once the backoff is past any interval: 2 ** 1024 is no
        # float, and a watch that failed 1,025 passes in a row (85 hours of a broken spec at
        # 300 s) would otherwise die of an OverflowError instead of trying again.
        doublings = min(self._failures - 1, 40)
        return min(self.settings.interval, FIRST_BACKOFF * 2**doublings)

    def run_pass(self, *, resync: bool = False) -> PassResult:
        """One pass: load, plan, and (unless dry-run) apply; reports any error and never raises
        one (but KeyboardInterrupt and SystemExit). A ``resync`` (the periodic pass) reads the
        whole tenant (``--refresh full``) unless ``--refresh none`` was asked."""
        self.passes += 1
        started = time.monotonic()
        try:
            result = self._pass(self._options(resync))
        except ReconcileError as exc:  # reported; the loop goes on and tries again
            result = self._failed(str(exc))
        except OSError as exc:  # a state or spec file the pass could not read or write
            where = f"{exc.filename}: " if exc.filename else ""
            result = self._failed(f"{where}{exc.strerror or type(exc).__name__}")
        except Exception as exc:  # a bug must not end a controller that runs for months
            log.debug("unexpected error in pass %d", self.passes, exc_info=True)
            result = self._failed(_("unexpected error: {}: {}").format(type(exc).__name__, exc))
        metrics.record_pass(result.ok)
        if result.ok and self.settings.health_file is not None:
            try:
                self.settings.health_file.touch()
            except OSError as exc:  # the probe then sees a stale file, which is the truth
                log.error(_("error: %s: %s"), self.settings.health_file, exc.strerror)
        log.info("%s", self._summary(result, time.monotonic() - started))
        return result

    def _failed(self, message: str) -> PassResult:
        """Report a failed pass (log, and the output's error form); the loop retries."""
        for line in message.split("\n"):
            log.error(_("error: %s"), line)
        self.emit(self.render_error(message))
        return PassResult(ok=False, error=message)

    def _options(self, resync: bool) -> Options:
        options = self.settings.options
        if resync and options.refresh == "auto":
            return replace(options, refresh="full")
        return options

    def _pass(self, options: Options) -> PassResult:
        specs_dir = self.settings.specs_dir
        desired = load_specs(specs_dir, cache=spec_cache_path(specs_dir))
        if self.settings.dry_run:
            plan = dry_run(desired, options)
            metrics.record_plan(plan)
            if plan.has_changes or self.emit_idle:
                self.emit(self.render_plan(plan))
            return PassResult(ok=True, blocked=len(plan.blocked), left=len(plan.actions))
        outcome = self._apply(desired, options)
        metrics.record_outcome(outcome)
        if outcome.plan.has_changes or outcome.remaining.has_changes or self.emit_idle:
            self.emit(self.render_outcome(outcome))
        for problem in outcome.problems:
            log.error(_("error: %s"), problem)
        return PassResult(
            ok=not outcome.problems,
            error=outcome.problems[0] if outcome.problems else None,
            applied=outcome.count("applied"),
            failed=outcome.count("failed"),
            blocked=len(outcome.remaining.blocked),
            left=len(outcome.remaining.actions),
        )

    def _apply(self, desired: Desired, options: Options) -> Outcome:
        """Apply as a one-off apply does: show the plan, then a progress line per action."""
        from .progress import Progress, make_progress

        progress: list[Progress] = []

        def start(plan: Plan) -> bool:
            self.show_plan(plan)
            progress.append(make_progress(plan.names))
            progress[0].start(len(plan.actions))
            return True

        try:
            outcome = apply(
                desired,
                options,
                confirm=start,
                on_result=lambda action, result: progress[0].advance(action, result),
                stop=self._pass_stop(),
            )
        finally:
            for shown in progress:
                shown.close()
        assert isinstance(outcome, Outcome)  # no question is asked in watch mode
        return outcome

    def _summary(self, result: PassResult, seconds: float) -> str:
        if result.error is not None:
            first = result.error.split("\n")[0]
            return _("{} pass {}: error ({:.1f} s): {}").format(
                utc_now(), self.passes, seconds, first
            )
        if self.settings.dry_run:
            return ngettext(
                "{} pass {}: planned {} change, {} blocked ({:.1f} s)",
                "{} pass {}: planned {} changes, {} blocked ({:.1f} s)",
                result.left,
            ).format(utc_now(), self.passes, result.left, result.blocked, seconds)
        return _("{} pass {}: applied {}, failed {}, blocked {}, left {} ({:.1f} s)").format(
            utc_now(),
            self.passes,
            result.applied,
            result.failed,
            result.blocked,
            result.left,
            seconds,
        )


def error_document(message: str) -> str:
    """A pass that failed, as one JSON line."""
    return json.dumps({"time": utc_now(), "error": message.split("\n")}) + "\n"
