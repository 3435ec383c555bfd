"""One reconcile pass, wired from the parts: load, observe, plan, and (when applying) execute,
observe again and re-plan. Shared by the command line and, later, the watch loop."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .current import CurrentState
from .document import ActionResult
from .drift import attribute_drift, settled_snapshot, spec_snapshot
from .errors import StalePlanError
from .i18n import _
from .perf import paused_gc
from .plan import Action, Plan, check_not_empty, check_partner, check_removal_limit, plan
from .providers.base import Provider
from .ratelimit import RateLimiter
from .records import FileStore, RecordStore, next_records
from .render import Outcome
from .spec import Desired, load_specs
from .targeting import Targets, target, target_mapping, target_records

if TYPE_CHECKING:
    from .importer import ImportPlan

EVERYONE = Targets()


@dataclass(frozen=True)
class Options:
    """What shapes one run, from the command line."""

    state_dir: Path
    provider: str = "local"
    max_removals: int = 10
    allow_mass_removal: bool = False
    parallelism: int = 8
    lock_timeout: float = 0.0
    rate_limit: float = 500.0  # requests per minute; 0: no limit
    targets: Targets = field(default_factory=Targets)


def open_provider(name: str, state_dir: Path, rate_limiter: RateLimiter) -> Provider:
    """The provider named on the command line; Partner Center's settings come from the
    environment only."""
    if name == "partner-center":
        from .providers.partnercenter import PartnerCenterProvider

        return PartnerCenterProvider.from_env(os.environ, rate_limiter=rate_limiter)
    from .providers.local import LocalProvider

    return LocalProvider(state_dir)


def spec_cache_path(state_dir: Path) -> Path:
    """Where parsed specs are cached (see ``spec.SpecCache``)."""
    return state_dir / ".cache" / "specs.json"


def open_store(state_dir: Path) -> RecordStore:
    return FileStore(state_dir)


def make_plan(
    desired: Desired, provider: Provider, store: RecordStore, targets: Targets = EVERYONE
) -> Plan:
    """Observe and plan (the targeted part), with the partner check; reads only."""
    with paused_gc():
        current = provider.observe()
        records = store.load()
        check_partner(desired, current, records)
        made = attribute_drift(plan(desired, current, records), desired, store.load_applied())
        return target(made, targets)


def dry_run(desired: Desired, options: Options) -> Plan:
    """Plan, and change nothing: no lock, no write."""
    check_not_empty(desired, allow_mass_removal=options.allow_mass_removal)
    provider = open_provider(options.provider, options.state_dir, RateLimiter(options.rate_limit))
    result = make_plan(desired, provider, open_store(options.state_dir), options.targets)
    if result.removals > options.max_removals and not options.allow_mass_removal:
        warning = _(
            "this plan removes {} relationships, more than --max-removals {}: "
            "applying it will be refused"
        ).format(result.removals, options.max_removals)
        result = replace(result, warnings=(*result.warnings, warning))
    return result


def apply(
    desired: Desired,
    options: Options,
    *,
    saved_plan: Plan | None = None,
    confirm: Callable[[Plan], bool] = lambda _plan: True,
    on_result: Callable[[Action, ActionResult], None] | None = None,
    stop: threading.Event | None = None,
) -> Outcome | None:
    """Plan (or take the saved plan) and apply it under the state lock, then observe again.

    Returns None when ``confirm`` declines. Setting ``stop`` starts no more actions; those
    running finish and are recorded."""
    check_not_empty(desired, allow_mass_removal=options.allow_mass_removal)
    rate_limiter = RateLimiter(options.rate_limit)  # one for every request of this run
    provider = open_provider(options.provider, options.state_dir, rate_limiter)
    store = open_store(options.state_dir)
    with store.lock(timeout=options.lock_timeout):
        fresh = make_plan(desired, provider, store, options.targets)
        chosen = _choose(fresh, saved_plan and target(saved_plan, options.targets))
        check_removal_limit(
            chosen,
            max_removals=options.max_removals,
            allow_mass_removal=options.allow_mass_removal,
        )
        if chosen.has_changes and not confirm(chosen):
            return None
        from .apply import Executor  # here: a dry run has no use for the executor

        executor = Executor(
            provider,
            store,
            parallelism=options.parallelism,
            on_result=on_result,
            names=chosen.names,
            rate_limiter=rate_limiter,
            stop=stop or threading.Event(),
        )
        results = executor.run(chosen) if chosen.has_changes else ()
        after = provider.observe()
        remaining = _record_and_replan(desired, after, store, options.targets)
        return Outcome(chosen, results, remaining)


def _choose(fresh: Plan, saved: Plan | None) -> Plan:
    if saved is None:
        return fresh
    if saved.fingerprint != fresh.fingerprint:
        raise StalePlanError(
            _(
                "the saved plan is stale: the current state changed since it was made "
                "(fingerprint {} now, {} in the plan); make a new plan"
            ).format(fresh.fingerprint[:12], saved.fingerprint[:12])
        )
    return replace(saved, names=fresh.names)


def _record_and_replan(
    desired: Desired, after: CurrentState, store: RecordStore, targets: Targets
) -> Plan:
    """Record what the apply leaves (for the targeted customers only) and plan again: what is
    left is reported, and what matched becomes the baseline that tells drift later."""
    before = store.load()
    records = target_records(before, next_records(before, desired, after), targets)
    store.save(records)
    remaining = plan(desired, after, records)
    settled = settled_snapshot(desired, after, remaining)
    store.save_applied(target_mapping(store.load_applied(), settled, targets))
    return target(remaining, targets)


def import_customers(
    specs_dir: Path, options: Options, *, wanted: frozenset[str], force: bool
) -> ImportPlan:
    """Write spec files for the current state's customers and mark them managed."""
    from .importer import plan_import, write_import

    desired = load_specs(specs_dir) if specs_dir.exists() else Desired()
    provider = open_provider(options.provider, options.state_dir, RateLimiter(options.rate_limit))
    store = open_store(options.state_dir)
    with store.lock(timeout=options.lock_timeout):
        current = provider.observe()
        records = store.load()
        check_partner(desired, current, records)
        result = plan_import(current, desired, specs_dir, sorted(wanted))
        write_import(result, specs_dir, force=force)
        imported = {c.id for c in result.customers}
        now = spec_snapshot(load_specs(specs_dir))
        applied = store.load_applied()
        store.save_applied({**applied, **{c: s for c, s in now.items() if c in imported}})
        managed = set(records.managed) | imported
        store.save(
            records.model_copy(
                update={"partner_id": current.partner.id, "managed": tuple(sorted(managed))}
            )
        )
    return result
