"""One reconcile pass, wired from the parts: load, observe, plan, and (when applying) execute,
observe again and re-plan. Shared by the command line and, later, the watch loop."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .current import CurrentState
from .document import ActionResult
from .drift import attribute_drift, settled_snapshot, spec_snapshot
from .errors import PlanError, ProviderError, StalePlanError, StateError
from .i18n import _, english_plural
from .observation import (
    DEFAULT_MAX_AGE,
    FULL,
    STALE_PER_RUN,
    Observation,
    ObservePolicy,
    Refresh,
    plan_needs,
)
from .perf import paused_gc
from .plan import (
    Action,
    Freshness,
    Plan,
    check_cancellation_limit,
    check_not_empty,
    check_partner,
    check_removal_limit,
    plan,
)
from .protection import keep_protection, read_witnesses, remember_protected
from .providers.base import CachingProvider, Provider
from .ratelimit import RateLimiter
from .records import FileStore, Records, RecordStore, next_records
from .render import Outcome
from .spec import Desired, customer_line, load_specs
from .targeting import Targets, leave_out_unobserved, target, target_mapping, target_records
from .typos import check_mistyped_ids

if TYPE_CHECKING:
    from .importer import ImportPlan

EVERYONE = Targets()
log = logging.getLogger("reconcile")
PARTNER_CENTER_RATE_LIMIT = 500.0  # requests per minute per tenant, as Partner Center documents


@dataclass(frozen=True)
class Options:
    """What shapes one run, from the command line."""

    state_dir: Path
    provider: str = "local"
    max_removals: int = 10
    max_cancellations: int = 10
    allow_mass_removal: bool = False
    parallelism: int = 8
    lock_timeout: float = 0.0
    rate_limit: float | None = None  # requests per minute; 0: no limit; None: the provider's
    # How much of a Partner Center tenant a plan reads afresh (see ``observation``).
    refresh: Refresh = "auto"
    max_age: timedelta = DEFAULT_MAX_AGE
    max_stale: int = STALE_PER_RUN

    @property
    def requests_per_minute(self) -> float:
        """The rate limit of this run: as given, else Partner Center's documented limit for
        the partner-center provider, and none for the local world (nothing to protect)."""
        if self.rate_limit is not None:
            return self.rate_limit
        return PARTNER_CENTER_RATE_LIMIT if self.provider == "partner-center" else 0.0

    targets: Targets = field(default_factory=Targets)
    state_url: str | None = None  # postgresql://…: records in a shared database, not state_dir
    partner: str | None = None  # whose rows in that database (default: see store_partner)


def open_provider(options: Options) -> Provider:
    """The provider named on the command line, charging one token of the run's rate limiter per
    request it makes; Partner Center's settings come from the environment only."""
    rate_limiter = RateLimiter(options.requests_per_minute)  # one for every request of the run
    if options.provider == "partner-center":
        from .providers.partnercenter import PartnerCenterProvider

        return PartnerCenterProvider.from_env(
            os.environ,
            rate_limiter=rate_limiter,
            parallelism=options.parallelism,
            state_dir=options.state_dir,
        )
    from .providers.local import LocalProvider

    return LocalProvider(options.state_dir, rate_limiter=rate_limiter)


def spec_cache_path(specs_dir: Path) -> Path | None:
    """Where the parsed specs of ``specs_dir`` are cached: in the user's cache directory, never
    in the checkout (see ``speccache``); None when the environment turns the cache off."""
    from .speccache import cache_file

    return cache_file(specs_dir, os.environ)


def open_store(options: Options, desired: Desired | None = None) -> RecordStore:
    """The file store in ``state_dir``, or the PostgreSQL store at ``state_url``."""
    if not options.state_url:
        return FileStore(options.state_dir)
    from .pgstore import PostgresStore  # imported on demand: psycopg is only needed here

    return PostgresStore(options.state_url, store_partner(options, desired))


def store_partner(options: Options, desired: Desired | None) -> str:
    """Whose rows the PostgreSQL store reads and writes, known before anything is observed:
    ``--partner``, else the specs' ``partner.id``, else the provider's tenant (the local world's
    partner, or ``PARTNER_CENTER_TENANT_ID``), else the only partner the database knows."""
    if options.partner:
        return options.partner
    if desired is not None and desired.partner.id:
        return desired.partner.id
    from .providers.local import read_world, world_path

    path = world_path(options.state_dir)
    if options.provider == "local" and path.exists():
        return read_world(path).partner.id
    tenant = os.environ.get("PARTNER_CENTER_TENANT_ID", "").strip().lower()
    if tenant:
        return tenant
    from .pgstore import known_partners

    assert options.state_url is not None
    partners = known_partners(options.state_url)
    if len(partners) == 1:
        return partners[0]
    raise PlanError(
        _(
            "the PostgreSQL store needs to know the partner: give partner.id in the specs, "
            "--partner, or PARTNER_CENTER_TENANT_ID"
        )
    )


@contextmanager
def opened(store: RecordStore) -> Iterator[RecordStore]:
    """Close the store's connection (if it has one) when done."""
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def policy_of(options: Options) -> ObservePolicy:
    return ObservePolicy(
        refresh=options.refresh, max_age=options.max_age, stale_per_run=options.max_stale
    )


def make_plan(
    desired: Desired,
    provider: Provider,
    store: RecordStore,
    targets: Targets = EVERYONE,
    policy: ObservePolicy = FULL,
) -> Plan:
    """Observe (as much as ``policy`` asks) and plan the targeted part, with the partner check;
    changes nothing but the observation cache."""
    with paused_gc():
        records = store.load()
        current, freshness = observe(provider, store, desired, records, policy, check=True)
        records, warnings = with_protection(store, records, desired, current)
        made = attribute_drift(plan(desired, current, records), desired, store.load_applied())
        check_mistyped_ids(desired, current, made, line=customer_line)
        if warnings:
            made = replace(made, warnings=(*made.warnings, *warnings))
        made = target(leave_out_unobserved(made, current.unobserved, targets), targets)
        return replace(made, source=observed_source(provider), freshness=freshness)


def observe(
    provider: Provider,
    store: RecordStore,
    desired: Desired,
    records: Records,
    policy: ObservePolicy,
    *,
    also: frozenset[str] = frozenset(),
    check: bool = False,
) -> tuple[CurrentState, Freshness | None]:
    """The current state: from a provider that keeps an observation cache (Partner Center),
    the customers ``policy`` asks for (and ``also``) read now and the rest from the cache, which
    is then updated; from any other (the local world, a file read), all of it. With ``check``,
    the partner check comes before anything is cached."""
    if not isinstance(provider, CachingProvider):
        current = provider.observe()
        if check:
            check_partner(desired, current, records)
        return current, None
    partner = provider.tenant_id
    cached = store.load_observations(partner) if policy.refresh != "full" else {}
    needs = plan_needs(desired, records, store.load_applied(), also)
    observed: Observation = provider.observe_with(cached, needs, policy)
    current = observed.current
    if check:
        check_partner(desired, current, records)
    if policy.refresh != "none":
        try:
            store.save_observations(partner, observed.observations, observed.fresh)
        except StateError as exc:  # a cache not written costs time, never correctness
            log.warning(_("observation cache not written: %s"), exc)
    freshness = None
    if observed.oldest is not None and current.now is not None:
        age = max(0, int((current.now - observed.oldest).total_seconds()))
        freshness = Freshness(observed.oldest, age, observed.from_cache, observed.read)
    return current, freshness


def observed_source(provider: Provider) -> str:
    """What a plan was made from, for its wording: a simulated world, or Partner Center."""
    from .providers.world import WorldProvider

    return "local_world" if isinstance(provider, WorldProvider) else "partner_center"


def with_protection(
    store: RecordStore, records: Records, desired: Desired, current: CurrentState
) -> tuple[Records, tuple[str, ...]]:
    """``records`` (the store's), with any protection lifted by hand kept (and a warning for
    each): see ``protection``."""
    partner_id = records.partner_id or current.partner.id
    return keep_protection(
        records,
        desired,
        read_witnesses(store, partner_id),
        names={c.id: c.name for c in current.customers},
        records_file=str(getattr(store, "records_path", "records")),
    )


def dry_run(desired: Desired, options: Options) -> Plan:
    """Plan, and change nothing: no lock, no write."""
    check_not_empty(desired, allow_mass_removal=options.allow_mass_removal)
    provider = open_provider(options)
    with opened(open_store(options, desired)) as store:
        result = make_plan(desired, provider, store, options.targets, policy_of(options))
    if result.removals > options.max_removals and not options.allow_mass_removal:
        warning = english_plural(
            "this plan removes {} relationship, more than --max-removals {}: "
            "applying it will be refused",
            "this plan removes {} relationships, more than --max-removals {}: "
            "applying it will be refused",
            result.removals,
        ).format(result.removals, options.max_removals)
        result = replace(result, warnings=(*result.warnings, warning))
    if result.cancellations > options.max_cancellations and not options.allow_mass_removal:
        warning = _(
            "this plan cancels {} subscriptions, more than --max-cancellations {}: "
            "applying it will be refused"
        ).format(result.cancellations, options.max_cancellations)
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
    provider = open_provider(options)
    with (
        opened(open_store(options, desired)) as store,
        store.lock(timeout=options.lock_timeout),
        closing(provider),  # the local world's change log folded into world.json, under the lock
    ):
        policy = policy_of(options)
        fresh = make_plan(desired, provider, store, options.targets, policy)
        chosen = _choose(fresh, saved_plan and target(saved_plan, options.targets))
        check_removal_limit(
            chosen,
            max_removals=options.max_removals,
            allow_mass_removal=options.allow_mass_removal,
        )
        check_cancellation_limit(
            chosen,
            max_cancellations=options.max_cancellations,
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
            stop=stop or threading.Event(),
        )
        results = executor.run(chosen) if chosen.has_changes else ()
        problems = [executor.journal_error] if executor.journal_error else []
        # Afterwards: what the actions touched is read again (and cached), whatever --refresh.
        touched = frozenset(a.customer_id for a in chosen.actions)
        again = policy if policy.refresh == "full" else replace(policy, refresh="auto")
        left = store.load()  # the records as the apply left them (pending requests)
        after, _freshness = observe(provider, store, desired, left, again, also=touched)
        remaining = _record_and_replan(desired, after, store, left, options.targets, problems)
        return Outcome(chosen, results, replace(remaining, source=chosen.source), tuple(problems))


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
    # Only the choice of actions and their order come from the file: what each action does,
    # and the blocked items and warnings (which --fail-on-warnings reads), are the fresh plan's.
    return replace(fresh, actions=saved_actions(saved.actions, fresh))


def _action_key(action: Action) -> tuple[object, ...]:
    return (action.type, action.customer_id, action.subscription_id, action.from_, action.to)


def saved_actions(saved: tuple[Action, ...], fresh: Plan) -> tuple[Action, ...]:
    """The saved plan's actions, each checked against its twin in the plan made now: a saved plan
    is a file (an artifact, a download) and its fingerprint is only a hash of the current state,
    so a hand-edited one could otherwise remove a protected customer or touch an unmanaged one.
    Each action must be in the fresh plan (same change, from the same value), at most once, and
    wait for at least what its twin waits for. Pure; keeps the saved ids (the journal's)."""
    twins = {_action_key(a): a for a in fresh.actions}
    by_id = {a.id: a for a in fresh.actions}
    saved_id: dict[str, str] = {}  # the fresh plan's id of an action -> the saved plan's id
    chosen = []
    for action in saved:
        twin = twins.get(_action_key(action))
        if twin is None or twin.id in saved_id:
            raise _not_held(action, fresh)
        unawaited = [d for d in twin.depends_on if saved_id.get(d) not in action.depends_on]
        if unawaited:
            raise PlanError(
                _("the saved plan's action {} must wait for {}: make a new plan").format(
                    action.id,
                    ", ".join(
                        f"{by_id[d].type} {by_id[d].subscription_id or by_id[d].customer_id}"
                        for d in unawaited
                    ),
                )
            )
        saved_id[twin.id] = action.id
        chosen.append(twin.model_copy(update={"id": action.id, "depends_on": action.depends_on}))
    return tuple(chosen)


def _not_held(action: Action, fresh: Plan) -> PlanError:
    """Why a saved action is refused: the plan made now has it blocked (time passed: a window
    closed since), or does not hold it at all (edited by hand, or the specs changed)."""
    what = (action.id, action.type, action.customer_id, action.subscription_id)
    for blocked in fresh.blocked:
        if (blocked.type, blocked.customer_id, blocked.subscription_id) == what[1:]:
            return StalePlanError(
                _(
                    "the saved plan's action {} ({} for customer {}, subscription {}) is blocked "
                    "now ({}): make a new plan"
                ).format(*what, blocked.reason)
            )
    return PlanError(
        _(
            "the saved plan's action {} ({} for customer {}, subscription {}) is not one a plan "
            "made now holds: make a new plan"
        ).format(*what)
    )


def _record_and_replan(
    desired: Desired,
    after: CurrentState,
    store: RecordStore,
    left: Records,
    targets: Targets,
    problems: list[str],
) -> Plan:
    """Record what the apply leaves (for the targeted customers only) and plan again: what is
    left is reported, and what matched becomes the baseline that tells drift later. A record
    that cannot be written is added to ``problems``: the outcome is still reported."""
    # A customer that could not be observed keeps its records and baseline as they were.
    observed = replace(targets, exclude=targets.exclude | frozenset(after.unobserved or ()))
    before, _warnings = with_protection(store, left, desired, after)  # the plan warned already
    records = target_records(before, next_records(before, desired, after), observed)
    remaining = plan(desired, after, records)
    settled = settled_snapshot(desired, after, remaining)
    try:
        store.save(records)
        remember_protected(store, records)
        store.save_applied(target_mapping(store.load_applied(), settled, observed))
    except StateError as exc:
        problems.append(str(exc))
    return target(leave_out_unobserved(remaining, after.unobserved, targets), targets)


def check_observed(current: CurrentState, customer_ids: set[str]) -> None:
    """Refuse to describe customers that could not be observed: their spec would say they have
    no subscriptions."""
    failed = sorted(customer_ids & set(current.unobserved or {}))
    if failed:
        raise ProviderError(
            _("could not observe {}: nothing imported; try again ({})").format(
                ", ".join(failed), (current.unobserved or {})[failed[0]]
            )
        )


def import_customers(
    specs_dir: Path, options: Options, *, wanted: frozenset[str], force: bool
) -> ImportPlan:
    """Write spec files for the current state's customers and mark them managed."""
    from .importer import plan_import, write_import

    desired = load_specs(specs_dir) if specs_dir.exists() else Desired()
    provider = open_provider(options)
    with opened(open_store(options, desired)) as store, store.lock(timeout=options.lock_timeout):
        records = store.load()
        # Everyone read now: the observation cache is filled, so the next plan reads little.
        current = observe(provider, store, desired, records, FULL, check=True)[0]
        result = plan_import(current, desired, specs_dir, sorted(wanted))
        check_observed(current, {c.id for c in result.customers})
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
