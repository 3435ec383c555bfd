"""Properties over random desired/current pairs: valid order, suspend-before-remove, convergence
and idempotence, with the plan applied by the real executor to a world that enforces the rules."""

from __future__ import annotations

import tempfile
from pathlib import Path

from helpers import PARTNER, gid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.apply import Executor
from controller.current import CurrentState, Customer, Subscription
from controller.plan import Plan, plan
from controller.providers.local import LocalProvider, render_world
from controller.providers.memory import MemoryProvider
from controller.providers.world import WorldProvider
from controller.records import (
    FileStore,
    MemoryStore,
    PendingRequest,
    Records,
    RecordStore,
    next_records,
)
from controller.spec import CustomerSpec, Desired, PartnerSpec, SubscriptionSpec

STATUSES = ("active", "suspended", "deleted", "expired", "pending", "disabled")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Desired, CurrentState, Records]:
    count = draw(st.integers(0, 6))
    customers = []
    for c in range(1, count + 1):
        subs = tuple(
            Subscription(
                id=gid(c * 100 + s),
                status=draw(st.sampled_from(STATUSES)),
                quantity=draw(st.integers(1, 5)),
            )
            for s in range(draw(st.integers(0, 3)))
        )
        relationship = draw(st.sampled_from(("reseller", "reseller", "none")))
        customers.append(
            Customer(id=gid(c), name=f"C{c}", relationship=relationship, subscriptions=subs)
        )
    current = CurrentState(partner={"id": PARTNER}, customers=tuple(customers))
    known = [c.id for c in customers]
    unknown = [gid(900 + n) for n in range(draw(st.integers(0, 2)))]
    listed = (
        draw(st.lists(st.sampled_from(known + unknown), unique=True)) if known + unknown else []
    )
    specs = []
    for customer_id in listed:
        existing = current.customers_by_id.get(customer_id)
        sub_ids = [s.id for s in existing.subscriptions] if existing else []
        sub_ids += [gid(int(customer_id[-12:]) * 100 + 50)]  # one that does not exist
        chosen = draw(st.lists(st.sampled_from(sub_ids), unique=True))
        specs.append(
            CustomerSpec(
                id=customer_id,
                name=f"C{customer_id[-3:]}",
                protected=draw(st.sampled_from((None, True, False))),
                subscriptions=tuple(
                    SubscriptionSpec(
                        id=s,
                        status=draw(st.sampled_from(("active", "suspended"))),
                        quantity=draw(st.one_of(st.none(), st.integers(1, 5))),
                    )
                    for s in chosen
                ),
            )
        )
    desired = Desired(
        partner=PartnerSpec(prune=draw(st.sampled_from(("managed", "managed", "none")))),
        customers={s.id: s for s in specs},  # type: ignore[misc]
    )
    subset = st.lists(st.sampled_from(known), unique=True) if known else st.just([])
    pending = [
        PendingRequest(customer_id=i, requested_at="2026-01-01T00:00:00Z", invitation_url="u")
        for i in draw(st.lists(st.sampled_from(listed), unique=True) if listed else st.just([]))
    ]
    records = Records(
        managed=tuple(sorted(draw(subset))),
        protected=tuple(sorted(draw(subset))),
        pending=tuple(sorted(pending, key=lambda p: p.customer_id)),
    )
    return desired, current, records


def reconcile(desired: Desired, provider: WorldProvider, store: RecordStore) -> Plan:
    """One apply pass as the CLI runs it: plan, execute, update the records."""
    made = plan(desired, provider.observe(), store.load())
    results = Executor(provider, store, parallelism=4).run(made)
    failures = [r for r in results if r.status != "applied"]
    assert not failures, (failures, made.actions)
    store.save(next_records(store.load(), desired, provider.observe()))
    return made


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenarios())
def test_actions_come_after_everything_they_depend_on(scenario: tuple) -> None:
    made = plan(*scenario)
    seen: set[str] = set()
    for action in made.actions:
        assert set(action.depends_on) <= seen
        seen.add(action.id)


@SETTINGS
@given(scenarios())
def test_no_removal_without_every_active_subscription_suspended_first(scenario: tuple) -> None:
    desired, current, records = scenario
    made = plan(desired, current, records)
    for removal in (a for a in made.actions if a.type == "remove_relationship"):
        active = {
            s.id
            for s in current.customers_by_id[removal.customer_id].subscriptions
            if s.status == "active"
        }
        suspending = {
            a.subscription_id
            for a in made.actions
            if a.id in removal.depends_on
            and a.type == "suspend_subscription"
            and a.customer_id == removal.customer_id
        }
        assert suspending == active


@SETTINGS
@given(scenarios())
def test_applying_the_plan_converges_and_a_second_apply_changes_nothing(scenario: tuple) -> None:
    desired, current, records = scenario
    provider, store = MemoryProvider(current), MemoryStore(records)
    reconcile(desired, provider, store)
    world_after_first = provider.observe()
    replanned = plan(desired, world_after_first, store.load())
    assert replanned.actions == ()
    calls_before = len(provider.calls)
    second = reconcile(desired, provider, store)
    assert second.actions == () and len(provider.calls) == calls_before
    # The same tenant, observed later (a world without a clock of its own: the wall clock).
    assert provider.observe().at_no_clock() == world_after_first.at_no_clock()


@SETTINGS
@given(scenarios())
def test_after_every_customer_accepts_the_world_converges(scenario: tuple) -> None:
    desired, current, records = scenario
    provider, store = MemoryProvider(current), MemoryStore(records)
    reconcile(desired, provider, store)
    for request in store.load().pending:
        provider.accept_invitation(request.customer_id, name="Accepted")
    reconcile(desired, provider, store)
    final = plan(desired, provider.observe(), store.load())
    assert final.actions == () and final.blocked == ()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_local_world_file_converges_too(scenario: tuple) -> None:
    """The same property through the real local provider and file store, on disk."""
    desired, current, records = scenario
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory)
        (state / "world.json").write_text(render_world(current))
        provider, store = LocalProvider(state), FileStore(state)
        store.save(records)
        reconcile(desired, provider, store)
        assert plan(desired, provider.observe(), store.load()).actions == ()
        world_file = (state / "world.json").read_bytes()
        assert reconcile(desired, provider, store).actions == ()
        assert (state / "world.json").read_bytes() == world_file
