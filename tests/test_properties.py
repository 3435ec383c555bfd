"""Properties over random desired/current pairs: valid order, suspend-before-remove, convergence
and idempotence, with the plan applied by the real executor to a world that enforces the rules."""

from __future__ import annotations

import tempfile
import uuid
from contextlib import closing
from pathlib import Path

from helpers import DAY, NOW, PARTNER, gid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.apply import Executor
from controller.current import CurrentState, Customer, Subscription
from controller.pgstore import PostgresStore
from controller.plan import Plan, plan
from controller.providers import rules
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
RUNNING = ("active", "active", "suspended", "deleted", "expired")  # new commerce, Azure plans


@st.composite
def subscriptions(draw: st.DrawFn, customer_n: int) -> tuple[Subscription, ...]:
    """A customer's subscriptions, of every kind: legacy, new commerce (inside or past its
    window, term ending soon or later, suspended by the partner or by Microsoft), Azure plans
    (with or without active Azure subscriptions), and add-ons of the first one."""
    made: list[Subscription] = []
    for s in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("legacy", "legacy", "nce", "nce", "azure_plan")))
        base = made[0] if made and draw(st.booleans()) and made[0].commerce == kind else None
        fields: dict[str, object] = {
            "id": gid(customer_n * 100 + s),
            "quantity": draw(st.integers(1, 5)),
            "commerce": kind,
            "status": draw(st.sampled_from(STATUSES if kind == "legacy" else RUNNING)),
            "parent_id": base.id if base is not None and kind != "azure_plan" else None,
        }
        if fields["status"] == "suspended":
            fields["suspended_by"] = draw(st.sampled_from(("partner", "partner", "microsoft")))
            fields["suspended_at"] = NOW - DAY * draw(st.sampled_from((1, 100)))
        if kind == "nce":
            fields["term_end"] = (
                base.term_end if fields["parent_id"] else NOW + DAY * draw(st.integers(-1, 400))
            )
            fields["cancel_until"] = draw(st.sampled_from((None, NOW - DAY, NOW + DAY)))
            fields["auto_renew"] = draw(st.booleans())
            fields["refundable_quantity"] = draw(st.integers(0, 5))
        if kind == "azure_plan":
            fields["azure_subscriptions_active"] = draw(st.sampled_from((0, 0, 1)))
        made.append(Subscription.model_validate(fields))
    return tuple(made)


def subscription_spec(draw: st.DrawFn, subscription_id: str, kind: str | None) -> SubscriptionSpec:
    """What the specs may say of a subscription of this kind (None: one that does not exist)."""
    if kind == "nce":
        return SubscriptionSpec(
            id=subscription_id,
            commerce="nce",
            status=draw(st.sampled_from(("active", "suspended", "cancelled"))),
            quantity=draw(st.one_of(st.none(), st.integers(1, 5))),
            auto_renew=draw(st.sampled_from((None, True, False))),
        )
    return SubscriptionSpec(
        id=subscription_id,
        status=draw(st.sampled_from(("active", "suspended"))),
        quantity=draw(st.one_of(st.none(), st.integers(1, 5))),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Desired, CurrentState, Records]:
    count = draw(st.integers(0, 6))
    customers = []
    for c in range(1, count + 1):
        relationship = draw(
            st.sampled_from(("reseller", "reseller", "reseller", "none", "advisor"))
        )
        customers.append(
            Customer(
                id=gid(c),
                name=f"C{c}",
                relationship=relationship,
                subscriptions=draw(subscriptions(c)),
                azure_reservations_open=draw(st.sampled_from((0, 0, 0, 1))),
            )
        )
    current = CurrentState(partner={"id": PARTNER}, customers=tuple(customers), now=NOW)
    known = [c.id for c in customers]
    unknown = [gid(900 + n) for n in range(draw(st.integers(0, 2)))]
    listed = (
        draw(st.lists(st.sampled_from(known + unknown), unique=True)) if known + unknown else []
    )
    specs = []
    for customer_id in listed:
        existing = current.customers_by_id.get(customer_id)
        kinds = {s.id: s.commerce for s in existing.subscriptions} if existing else {}
        sub_ids = [*kinds, gid(int(customer_id[-12:]) * 100 + 50)]  # and one that does not exist
        chosen = draw(st.lists(st.sampled_from(sub_ids), unique=True))
        specs.append(
            CustomerSpec(
                id=customer_id,
                name=f"C{customer_id[-3:]}",
                protected=draw(st.sampled_from((None, True, False))),
                subscriptions=tuple(subscription_spec(draw, s, kinds.get(s)) for s in chosen),
                offboarding=draw(st.sampled_from((None, "end_at_term", "cancel_in_window"))),
            )
        )
    desired = Desired(
        partner=PartnerSpec(
            prune=draw(st.sampled_from(("managed", "managed", "none"))),
            offboarding=draw(st.sampled_from(("end_at_term", "cancel_in_window"))),
        ),
        customers={s.id: s for s in specs},  # type: ignore[misc]
    )
    subset = st.lists(st.sampled_from(known), unique=True) if known else st.just([])
    pending = [
        PendingRequest(customer_id=i, requested_at="2026-01-01T00:00:00Z", invitation_url="u")
        for i in draw(st.lists(st.sampled_from(listed), unique=True) if listed else st.just([]))
    ]
    managed = tuple(sorted(draw(subset)))
    records = Records(
        managed=managed,
        protected=tuple(sorted(draw(subset))),
        pending=tuple(sorted(pending, key=lambda p: p.customer_id)),
        offboarding={
            c: draw(st.sampled_from(("end_at_term", "cancel_in_window")))
            for c in draw(
                st.lists(st.sampled_from(managed), unique=True) if managed else st.just([])
            )
        },
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
def test_no_removal_before_every_blocker_is_gone(scenario: tuple) -> None:
    """A removal comes only after (depends on) the step that ends each subscription blocking it,
    or its base's, and never while a blocker only time or a person can end remains."""
    desired, current, records = scenario
    made = plan(desired, current, records)
    for removal in (a for a in made.actions if a.type == "remove_relationship"):
        customer = current.customers_by_id[removal.customer_id]
        assert customer.azure_reservations_open == 0
        ending = {
            a.subscription_id: a.type
            for a in made.actions
            if a.id in removal.depends_on and a.customer_id == removal.customer_id
        }
        assert set(ending.values()) <= {"suspend_subscription", "cancel_subscription"}
        for subscription in customer.subscriptions:
            if rules.blocks_removal(subscription):
                ended_by = ending.get(subscription.id) or ending.get(subscription.parent_id)
                assert ended_by is not None, subscription
                if subscription.commerce == "nce":
                    assert ended_by == "cancel_subscription"  # suspending it would not do
        assert not any(
            b.type == "remove_relationship" and b.customer_id == removal.customer_id
            for b in made.blocked
        )


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
    assert final.actions == ()
    assert not [b for b in final.blocked if b.reason == "awaiting_acceptance"]


# What only a person (or Microsoft) can end: no amount of waiting lifts these.
BY_HAND = {
    "azure_subscriptions_active",
    "azure_reservations_open",
    "suspended_by_microsoft",
    "term_ended",
    "reactivation_period_over",
    "addon_follows_base",
}


@SETTINGS
@given(scenarios())
def test_given_time_every_removal_happens(scenario: tuple) -> None:
    """Reconcile, let two years pass (every term ends: renewed or expired), reconcile again:
    every removal that waited for a term end has happened; what is left waits for a person."""
    desired, current, records = scenario
    provider, store = MemoryProvider(current), MemoryStore(records)
    reconcile(desired, provider, store)
    provider.change(lambda world: rules.advance(world, 730 * DAY))
    reconcile(desired, provider, store)
    provider.change(lambda world: rules.advance(world, 730 * DAY))
    reconcile(desired, provider, store)
    final = plan(desired, provider.observe(), store.load())
    assert final.actions == ()
    waiting = {b.reason for b in final.blocked if b.type == "remove_relationship"}
    assert waiting <= BY_HAND, final.blocked


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_local_world_file_converges_too(scenario: tuple) -> None:
    """The same property through the real local provider and file store, on disk."""
    with tempfile.TemporaryDirectory() as directory:
        converges_on_disk(*scenario, Path(directory), FileStore(Path(directory)))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_the_records_in_postgresql_converge_too(pg_url: str, scenario: tuple) -> None:
    """The same property with the records in PostgreSQL: a representative subset (20 examples
    rather than 60, to keep CI short), each a partner of its own in the test's one database."""
    with (
        tempfile.TemporaryDirectory() as directory,
        closing(PostgresStore(pg_url, str(uuid.uuid4()))) as store,
    ):
        converges_on_disk(*scenario, Path(directory), store)


def converges_on_disk(
    desired: Desired, current: CurrentState, records: Records, state: Path, store: RecordStore
) -> None:
    """Reconcile the world file in ``state`` with the records in ``store``: one apply
    converges, and a second one changes nothing, not even the file's bytes."""
    (state / "world.json").write_text(render_world(current))
    provider = LocalProvider(state)
    store.save(records)
    assert store.load() == records
    reconcile(desired, provider, store)
    assert plan(desired, provider.observe(), store.load()).actions == ()
    world_file = (state / "world.json").read_bytes()
    assert reconcile(desired, provider, store).actions == ()
    assert (state / "world.json").read_bytes() == world_file
