"""The observation cache (issue 13): a Partner Center plan reads the customer list and only the
customers it needs; the cache lives outside the checkout and is believed only when this machine
wrote it; apply re-reads what it changes, so a stale cache never makes a wrong change.

Most tests run the emulator in-process (its ``handle`` behind an httpx transport): no sockets,
every request counted."""

from __future__ import annotations

import email.utils
import json
import logging
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TOKEN
from helpers import NOW, PARTNER, customer, desired, gid, records, sub, want, want_sub, world
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.current import CurrentState, Subscription
from controller.emulator import Emulator, Knobs
from controller.errors import PermanentProviderError, PlanError
from controller.observation import (
    FULL,
    Needs,
    ObservationFile,
    Observed,
    ObservePolicy,
    plan_needs,
    to_read,
)
from controller.providers.local import read_world, render_world
from controller.providers.partnercenter import PartnerCenterProvider, Settings
from controller.reconcile import EVERYONE, Options, make_plan
from controller.records import FileStore, MemoryStore
from controller.spec import CustomerSpec, Desired

AUTO = ObservePolicy()
NONE = ObservePolicy(refresh="none")


class InProcess:
    """The emulator behind an httpx transport, counting the requests it answers."""

    def __init__(self, state: Path) -> None:
        self.emulator = Emulator(state, Knobs(token=TOKEN, bom=False, page_size=500))
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = json.loads(request.content) if request.content else None
        target = request.url.raw_path.decode()
        status, payload, extra = self.emulator.handle(request.method, target, headers, body)
        self.requests.append((request.method, request.url.path))
        date = email.utils.format_datetime(self.emulator.clock(), usegmt=True)
        content = json.dumps(payload).encode() if payload is not None else b""
        return httpx.Response(status, content=content, headers={**extra, "Date": date})

    def provider(self) -> PartnerCenterProvider:
        settings_ = Settings(base_url="http://127.0.0.1", tenant_id=PARTNER)
        return PartnerCenterProvider(
            settings_, lambda: TOKEN, transport=httpx.MockTransport(self), sleep=lambda s: None
        )

    def reads(self, customer_id: str) -> int:
        return sum(f"/customers/{customer_id}/" in path for _method, path in self.requests)

    def patches(self) -> list[str]:
        return [path for method, path in self.requests if method == "PATCH"]


def put_world(state: Path, current: CurrentState) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "world.json").write_text(render_world(current))


def entry(subscriptions: tuple[Subscription, ...], n: int, age: timedelta) -> Observed:
    return Observed(customer=customer(n, *subscriptions), observed_at=NOW - age, listed="x")


# --- which customers a plan reads ---------------------------------------------------------


def test_auto_reads_the_needed_the_unknown_the_changed_and_the_oldest_stale_ones() -> None:
    listed = {gid(n): "x" for n in range(1, 8)}
    cached: dict[str, Observed | None] = {
        gid(1): entry((), 1, timedelta(hours=1)),  # fresh, not needed: from the cache
        gid(2): entry((), 2, timedelta(hours=1)),  # fresh, but its spec changed
        gid(3): entry((), 3, timedelta(hours=1)).model_copy(update={"listed": "y"}),  # relisted
        gid(4): None,  # listed before, never observed
        gid(5): entry((), 5, timedelta(hours=30)),  # stale
        gid(6): entry((), 6, timedelta(hours=40)),  # staler
        # 7: never seen
    }
    needs = Needs(read=frozenset({gid(2)}))
    policy = ObservePolicy(max_age=timedelta(hours=24), stale_per_run=1)
    assert to_read(listed, cached, needs, NOW, policy) == {gid(n) for n in (2, 3, 4, 6, 7)}
    assert to_read(listed, cached, needs, NOW, FULL) == set(listed)
    assert to_read(listed, cached, needs, NOW, NONE) == set()
    removal = Needs(fully=frozenset({gid(1)}))
    assert gid(1) in to_read(listed, cached, removal, NOW, policy)


def test_a_plan_needs_changed_specs_removals_and_pending_requests() -> None:
    wanted = desired(want(1, want_sub(11, quantity=5)), want(2, want_sub(21)), want(4))
    applied = {gid(1): {gid(11): "active/5"}, gid(2): {gid(21): "active/3"}}
    needs = plan_needs(wanted, records(managed=(1, 2, 3), pending=(4,)), applied)
    assert needs.read == {gid(2), gid(4)}  # 2's spec changed; 4 is new and pending
    assert needs.fully == {gid(3)}  # managed, left out of the specs: to be removed


# --- the cache file: outside the checkout, believed only when this machine wrote it ----------


def test_the_cache_file_is_outside_the_state_folder_and_tampering_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "checkout" / "state"
    state.mkdir(parents=True)
    store = FileStore(state)
    kept = {gid(1): entry((sub(11),), 1, timedelta(hours=2)), gid(2): None}
    store.save_observations(PARTNER, kept, frozenset())
    assert store.load_observations(PARTNER) == kept
    path = ObservationFile(state, PARTNER, __import__("os").environ).path
    assert path is not None and path.exists() and tmp_path / "checkout" not in path.parents
    assert not list((tmp_path / "checkout").rglob("observed-*"))
    assert store.load_observations(gid(99)) == {}  # another partner's: none
    # Someone edits the cache to hide a customer's subscription: not believed.
    path.write_bytes(path.read_bytes().replace(gid(11).encode(), gid(12).encode()))
    with caplog.at_level(logging.WARNING, logger="reconcile"):
        assert store.load_observations(PARTNER) == {}
    [warning] = [r.getMessage() for r in caplog.records]
    assert str(path) in warning and "ignored" in warning and "\n" not in warning
    # A copy of this state folder elsewhere does not read it either (keyed by the real path).
    assert FileStore(tmp_path / "copy").load_observations(PARTNER) == {}


def test_the_cache_is_off_with_the_parse_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNER_RECONCILER_NO_CACHE", "1")
    store = FileStore(tmp_path)
    store.save_observations(PARTNER, {gid(1): entry((), 1, timedelta(0))}, frozenset())
    assert store.load_observations(PARTNER) == {}


# --- through the emulator -------------------------------------------------------------------


def tenant(count: int) -> CurrentState:
    return world(*(customer(n, sub(n * 10 + 1, quantity=5)) for n in range(1, count + 1)))


def specs_of(current: CurrentState, **quantities: int) -> Desired:
    """Specs asking for what ``current`` holds, but the quantities given (``c3=7``)."""
    customers = []
    for c in current.customers:
        n = int(c.id[-12:])
        subs = [
            want_sub(int(s.id[-12:]), s.status, quantities.get(f"c{n}", s.quantity))
            for s in c.subscriptions
        ]
        customers.append(want(n, *subs))
    return replace(
        desired(*customers), partner=desired().partner.model_copy(update={"id": PARTNER})
    )


def applied_of(wanted: Desired) -> dict[str, dict[str, str]]:
    from controller.drift import spec_snapshot

    return spec_snapshot(wanted)


def test_a_one_customer_change_reads_the_list_and_that_customer_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    current = tenant(30)
    put_world(state, current)
    service = InProcess(state)
    store = MemoryStore(records(managed=tuple(range(1, 31))))
    unchanged = specs_of(current)
    store.save_applied(applied_of(unchanged))
    full = make_plan(unchanged, service.provider(), store, EVERYONE, FULL)
    assert not full.has_changes and len(service.requests) == 31  # the list, then everyone
    service.requests.clear()
    changed = specs_of(current, c7=9)
    made = make_plan(changed, service.provider(), store, EVERYONE, AUTO)
    assert [(a.type, a.customer_id) for a in made.actions] == [("update_quantity", gid(7))]
    assert len(service.requests) == 2 and service.reads(gid(7)) == 1
    assert made.freshness is not None and made.freshness.from_cache == 29
    assert made.freshness.read == 1
    # --refresh none: no request at all, the same plan.
    service.requests.clear()
    assert make_plan(changed, service.provider(), store, EVERYONE, NONE) == made
    assert service.requests == []


def test_refresh_none_names_the_customers_never_observed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    put_world(state, tenant(2))
    provider = InProcess(state).provider()
    with pytest.raises(PlanError, match="no observation cache"):
        make_plan(specs_of(tenant(2)), provider, MemoryStore(), EVERYONE, NONE)
    store = MemoryStore()
    store.save_observations(
        PARTNER, {gid(1): entry((), 1, timedelta(0)), gid(2): None}, frozenset()
    )
    with pytest.raises(PlanError, match=f"never observed: {gid(2)}"):
        make_plan(specs_of(tenant(2)), provider, store, EVERYONE, NONE)


def test_stale_observations_are_read_again_oldest_first_a_bounded_number_per_run(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    current = tenant(6)
    put_world(state, current)
    service = InProcess(state)
    wanted = specs_of(current)
    store = MemoryStore()
    store.save_applied(applied_of(wanted))
    old = {
        c.id: Observed(
            customer=c, observed_at=NOW - timedelta(hours=30 + int(c.id[-12:])), listed=""
        )
        for c in current.customers
    }
    # Right state, right listing, only old: take the digests from a first (full) observation.
    make_plan(wanted, service.provider(), store, EVERYONE, FULL)
    listed = {c: o.listed for c, o in store.load_observations(PARTNER).items() if o}
    store.save_observations(
        PARTNER,
        {c: o.model_copy(update={"listed": listed[c]}) for c, o in old.items()},
        frozenset(),
    )
    service.requests.clear()
    policy = ObservePolicy(max_age=timedelta(hours=24), stale_per_run=2)
    made = make_plan(wanted, service.provider(), store, EVERYONE, policy)
    assert [n for n in range(1, 7) if service.reads(gid(n))] == [5, 6]  # the two oldest
    assert made.freshness is not None and made.freshness.age_seconds == 34 * 3600


def test_a_customer_to_be_removed_is_read_fully_reservations_included() -> None:
    """A reserved instance can sit on a customer without any Azure subscription: only a full
    read (its entitlements) shows it, and the removal is then blocked, not tried."""
    customer_id = gid(1)

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/customers":
            item = {
                "id": customer_id,
                "relationshipToPartner": "reseller",
                "companyProfile": {"companyName": "Fabrikam"},
            }
            return httpx.Response(200, json={"items": [item]})
        if path.endswith("/subscriptions"):
            legacy = {
                "id": gid(11),
                "offerId": "CFQ7TTC0LH18",
                "quantity": 1,
                "status": "suspended",
                "attributes": {"etag": "e1"},
            }
            return httpx.Response(200, json={"items": [legacy]})
        if path.endswith("/entitlements"):
            reserved = {
                "entitlementType": "virtual_machine_reserved_instance",
                "quantityDetails": [{"quantity": 1, "status": "Fulfilled"}],
            }
            return httpx.Response(200, json={"items": [reserved]})
        return httpx.Response(404, json={"code": "404", "description": path})

    provider = PartnerCenterProvider(
        Settings(base_url="http://127.0.0.1", tenant_id=PARTNER),
        lambda: TOKEN,
        transport=httpx.MockTransport(handler),
    )
    [seen] = provider.observe_with({}, Needs(), FULL).current.customers
    assert seen.azure_reservations_open == 0  # no Azure: entitlements not asked (as before)
    removal = Needs(fully=frozenset({customer_id}))
    [seen] = provider.observe_with({}, removal, FULL).current.customers
    assert seen.azure_reservations_open == 1
    store = MemoryStore(records(managed=(1,)))
    other = CustomerSpec(id="7d1c3e2a-5b6f-4c8d-9e0a-1b2c3d4e5f60", name="Another company")
    made = make_plan(desired(other), provider, store, EVERYONE, AUTO)
    assert "remove_relationship" not in {a.type for a in made.actions}
    assert [b.type for b in made.blocked] == ["remove_relationship"]  # waits for the reservation


# --- apply: a stale cache never makes a wrong change -----------------------------------------


def apply_in_process(
    service: InProcess,
    store: MemoryStore,
    wanted: Desired,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    refresh: str = "auto",
) -> Any:
    from controller import reconcile

    provider = service.provider()
    monkeypatch.setattr(reconcile, "open_provider", lambda options: provider)
    monkeypatch.setattr(reconcile, "open_store", lambda options, desired=None: store)
    options = Options(
        state_dir=tmp_path,
        provider="partner-center",
        refresh=refresh,  # type: ignore[arg-type]
        rate_limit=0,
    )
    return reconcile.apply(wanted, options)


def test_a_change_behind_the_cache_is_refused_at_apply_and_the_cache_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache says customer 1's subscription was suspended by the partner; meanwhile
    Microsoft suspended it (fraud). A plan from the cache reactivates it: apply reads it first,
    sees it is not as cached, and changes nothing; afterwards the cache holds what is there."""
    state = tmp_path / "state"
    by_microsoft = sub(11, "suspended").model_copy(update={"suspended_by": "microsoft"})
    put_world(state, world(customer(1, by_microsoft), customer(2, sub(21))))
    service = InProcess(state)
    wanted = desired(want(1, want_sub(11)), want(2, want_sub(21)))
    store = MemoryStore(records(managed=(1, 2)))
    store.save_applied(applied_of(wanted))
    make_plan(wanted, service.provider(), store, EVERYONE, FULL)  # the cache, right so far
    cached = store.load_observations(PARTNER)
    assert cached[gid(1)] is not None
    by_partner = sub(11, "suspended").model_copy(update={"suspended_by": "partner"})
    stale = cached[gid(1)].model_copy(update={"customer": customer(1, by_partner)})
    store.save_observations(PARTNER, {**cached, gid(1): stale}, frozenset())
    before = (state / "world.json").read_bytes()
    service.requests.clear()
    outcome = apply_in_process(service, store, wanted, monkeypatch, tmp_path)
    assert [(a.type, a.customer_id) for a in outcome.plan.actions] == [
        ("reactivate_subscription", gid(1))
    ]
    [result] = outcome.results
    assert result.status == "failed" and "changed since it was observed" in (result.error or "")
    assert service.patches() == [] and (state / "world.json").read_bytes() == before
    healed = store.load_observations(PARTNER)[gid(1)]
    assert healed is not None and healed.customer.subscriptions[0].suspended_by == "microsoft"
    assert not outcome.remaining.actions  # planned again from what is there: nothing to do


def test_after_an_apply_the_cache_holds_what_was_observed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    current = tenant(3)
    put_world(state, current)
    service = InProcess(state)
    store = MemoryStore(records(managed=(1, 2, 3)))
    store.save_applied(applied_of(specs_of(current)))
    make_plan(specs_of(current), service.provider(), store, EVERYONE, FULL)
    outcome = apply_in_process(service, store, specs_of(current, c2=8), monkeypatch, tmp_path)
    assert [r.status for r in outcome.results] == ["applied"]
    cached = store.load_observations(PARTNER)[gid(2)]
    assert cached is not None and cached.customer.subscriptions[0].quantity == 8
    assert cached.etags  # legacy subscriptions carry etags


# --- the property: fresh cache, same plan; stale cache, caught at apply -----------------------

STATUSES = st.sampled_from(["active", "suspended"])
SUBSCRIPTION = st.tuples(STATUSES, st.integers(1, 4))
CUSTOMER = st.lists(SUBSCRIPTION, min_size=1, max_size=2)


def world_of(layout: list[list[tuple[str, int]]]) -> CurrentState:
    return world(
        *(
            customer(
                c + 1, *(sub((c + 1) * 10 + s, status, q) for s, (status, q) in enumerate(subs))
            )
            for c, subs in enumerate(layout)
        )
    )


def changed(layout: list[list[tuple[str, int]]], edits: list[Edit]) -> list[list[tuple[str, int]]]:
    out = [list(subs) for subs in layout]
    for c, s, value in edits:
        if c < len(out) and s < len(out[c]):
            out[c][s] = value
    return out


Edit = tuple[int, int, tuple[str, int]]
EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), SUBSCRIPTION), max_size=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=st.lists(CUSTOMER, min_size=1, max_size=4), edits=EDITS, seen=EDITS, drift=EDITS)
# Always tried: the cache saw drift (quantity 2) that the world has since undone by itself; the
# plan from the cache would "undo" it again.
@example(
    layout=[[("active", 1)]], edits=[], seen=[(0, 0, ("active", 2))], drift=[(0, 0, ("active", 1))]
)
def test_incremental_plans_equal_full_ones_on_a_fresh_cache_and_staleness_is_caught_at_apply(
    layout: list[list[tuple[str, int]]], edits: list[Edit], seen: list[Edit], drift: list[Edit]
) -> None:
    """``layout`` is what was last applied; the cache is made from a world that drifted since
    (``seen``: drift to undo); the pull request asks ``edits``. With the cache fresh, the
    incremental plan is the full one. Then the world changes again behind the cache's back
    (``drift``) and the incremental plan is applied: every change made is one the plan meant,
    to a subscription that was what the plan said; nothing else changes."""
    applied_specs = specs_of(world_of(layout))
    wanted = specs_of(world_of(changed(layout, edits)))
    cached_world = world_of(changed(layout, seen))
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as monkeypatch:
        state = Path(folder) / "state"
        put_world(state, cached_world)
        service = InProcess(state)
        store = MemoryStore(records(managed=tuple(range(1, len(layout) + 1))))
        store.save_applied(applied_of(applied_specs))
        make_plan(applied_specs, service.provider(), store, EVERYONE, FULL)  # a fresh cache
        incremental = make_plan(wanted, service.provider(), store, EVERYONE, AUTO)
        fresh_store = MemoryStore(store.load())
        fresh_store.save_applied(store.load_applied())
        full = make_plan(wanted, service.provider(), fresh_store, EVERYONE, FULL)
        assert incremental == full
        # The world changes behind the cache's back; the cache is not told.
        drifted = world_of(changed(changed(layout, seen), drift))
        put_world(state, drifted)
        outcome = apply_in_process(service, store, wanted, monkeypatch, Path(folder))
        after = read_world(state / "world.json")
    actions = {a.id: a for a in outcome.plan.actions}
    done = [actions[r.id] for r in outcome.results if r.status == "applied"]
    for action in done:  # applied: the subscription was what the plan said, and became its aim
        assert action.subscription_id is not None
        was = drifted.customers_by_id[action.customer_id].subscriptions_by_id[
            action.subscription_id
        ]
        now = after.customers_by_id[action.customer_id].subscriptions_by_id[action.subscription_id]
        field = "quantity" if action.type == "update_quantity" else "status"
        assert (str(getattr(was, field)), str(getattr(now, field))) == (
            str(action.from_),
            str(action.to),
        )
    touched = {a.subscription_id for a in done}
    for customer_ in after.customers:  # nothing changed that no applied action changed
        for s in customer_.subscriptions:
            if s.id not in touched:
                assert s == drifted.customers_by_id[customer_.id].subscriptions_by_id[s.id]
    cached = store.load_observations(PARTNER)  # the cache holds what the apply left
    for action in outcome.plan.actions:
        observed = cached[action.customer_id]
        assert observed is not None
        there = after.customers_by_id[action.customer_id].subscriptions
        assert [(s.id, s.status, s.quantity) for s in observed.customer.subscriptions] == [
            (s.id, s.status, s.quantity) for s in there
        ]


# --- the command line -------------------------------------------------------------------------


def test_the_command_line_plans_from_the_cache_and_says_how_fresh(example: Path) -> None:
    from conftest import start_emulator
    from helpers import run, snapshot

    stop, env = start_emulator(example / "state", Knobs(token=TOKEN))
    try:
        dry = ("--provider", "partner-center", "--dry-run")
        refused = run(*dry, "--refresh", "none", cwd=example, env=env)
        assert refused.returncode == 1 and "no observation cache" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        before = snapshot(example)
        assert run(*dry, cwd=example, env=env).returncode == 0  # fills the cache
        assert snapshot(example) == before  # never in the checkout
        text = run(*dry, "--refresh", "none", cwd=example, env=env)
        assert text.returncode == 0, text.stderr
        assert "from the observation cache; the oldest observation is" in text.stdout
        document = json.loads(run(*dry, "--output", "json", cwd=example, env=env).stdout)
        assert set(document["observation"]) == {"oldest", "age_seconds", "from_cache", "read"}
        bad = run(*dry, "--max-age", "soon", cwd=example, env=env)
        assert bad.returncode == 1 and "Invalid value for --max-age" in bad.stderr
    finally:
        stop()


def test_watch_mode_periodic_resync_reads_everything(tmp_path: Path) -> None:
    from controller.watch import Watcher, WatchSettings

    def watcher(refresh: str) -> Watcher:
        options = Options(state_dir=tmp_path, refresh=refresh)  # type: ignore[arg-type]
        settings_ = WatchSettings(tmp_path, options, True, 60)
        return Watcher(
            settings_,
            emit=lambda text: None,
            render_plan=str,
            render_outcome=str,
            render_error=str,
        )

    assert watcher("auto")._options(resync=True).refresh == "full"
    assert watcher("auto")._options(resync=False).refresh == "auto"
    assert watcher("none")._options(resync=True).refresh == "none"


def test_a_stale_etag_is_sent_again_only_if_the_subscription_is_still_as_planned() -> None:
    """Read in this run (no cache), then changed by someone else before the PATCH: the service
    refuses the old etag (2055); read again, the change is sent again only if what the plan
    decided on still holds (another etag alone is no reason to stop)."""
    customer_id, subscription_id = gid(1), gid(11)
    state = {"etag": "e1", "reasons": ["CustomerCancellation"]}
    patches: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        resource = {
            "id": subscription_id,
            "offerId": "CFQ7TTC0LH18",
            "quantity": 1,
            "status": "suspended",
            "suspensionReasons": state["reasons"],
            "attributes": {"etag": state["etag"]},
        }
        if path == "/v1/customers":
            item = {"id": customer_id, "relationshipToPartner": "reseller"}
            return httpx.Response(200, json={"items": [item]})
        if path.endswith("/subscriptions"):
            return httpx.Response(200, json={"items": [resource]})
        if request.method == "GET":
            return httpx.Response(200, json=resource)
        patches.append(request.headers.get("If-Match", ""))
        if request.headers.get("If-Match") != state["etag"]:
            return httpx.Response(
                400, json={"code": 2055, "description": "Etag is no longer valid"}
            )
        return httpx.Response(200, json={**resource, **json.loads(request.content)})

    def provider() -> PartnerCenterProvider:
        made = PartnerCenterProvider(
            Settings(base_url="http://127.0.0.1", tenant_id=PARTNER),
            lambda: TOKEN,
            transport=httpx.MockTransport(handler),
        )
        made.observe()
        return made

    benign = provider()
    state["etag"] = "e2"  # changed elsewhere, but still the partner's suspension
    benign.reactivate_subscription(customer_id, subscription_id)
    assert patches == ["e1", "e2"]
    patches.clear()
    state.update(etag="e3", reasons=["CustomerCancellation"])
    wrong = provider()
    state.update(etag="e4", reasons=["Fraud"])  # Microsoft suspended it meanwhile
    with pytest.raises(PermanentProviderError, match="changed since this run read it"):
        wrong.reactivate_subscription(customer_id, subscription_id)
    assert patches == ["e3"]  # never sent again


def test_every_output_says_how_old_the_oldest_observation_is() -> None:
    from controller.document import to_document
    from controller.plan import Freshness, Plan
    from controller.render.markdown import render_plan as markdown
    from controller.render.text import render_plan as text

    seen = Freshness(
        oldest=NOW - timedelta(hours=3, minutes=12), age_seconds=11520, from_cache=9999, read=1
    )
    plan = Plan(fingerprint="f" * 64, freshness=seen)
    line = "the oldest observation is 3 h 12 min old"
    assert line in text(plan) and line in markdown(plan)
    assert "1 customer read now, 9999 from the observation cache" in text(plan)
    assert to_document(plan)["observation"] == {
        "oldest": "2026-03-01T08:48:00Z",
        "age_seconds": 11520,
        "from_cache": 9999,
        "read": 1,
    }
    everything_read = Plan(fingerprint="f" * 64, freshness=replace(seen, from_cache=0))
    assert "observation" not in text(everything_read)  # nothing from the cache: no line
    assert "observation" not in to_document(Plan(fingerprint="f" * 64))  # the local world


def test_max_stale_bounds_how_many_old_observations_a_run_reads_again(example: Path) -> None:
    from conftest import start_emulator
    from helpers import run

    from controller.observation import STALE_PER_RUN

    assert Options(state_dir=example).max_stale == STALE_PER_RUN == 50  # the CLI's default too
    stop, env = start_emulator(example / "state", Knobs(token=TOKEN))
    try:
        dry = ("--provider", "partner-center", "--dry-run", "--output", "json")
        applied = run("--provider", "partner-center", "--yes", cwd=example, env=env)
        assert applied.returncode == 0, applied.stderr  # now few customers are needed
        counts = {}
        for bound in ("0", "1", "50"):
            cached = {**env, "PARTNER_RECONCILER_CACHE_DIR": str(example / f"cache-{bound}")}
            assert run(*dry, cwd=example, env=cached).returncode == 0  # fills this cache
            advanced = run("world", "advance", "2d", cwd=example)  # every entry 2 days old
            assert advanced.returncode == 0, advanced.stderr
            made = run(*dry, "--max-stale", bound, cwd=example, env=cached)
            assert made.returncode in (0, 2), made.stderr
            counts[bound] = json.loads(made.stdout)["observation"]["read"]
        # The needed customers always; then one old one more; then every old one.
        assert counts["0"] + 1 == counts["1"] < counts["50"], counts
        bad = run(*dry, "--max-stale", "-1", cwd=example, env=env)
        assert bad.returncode == 1 and "--max-stale" in bad.stderr
    finally:
        stop()
