"""Partner Center's preconditions, as the local world and the fake enforce them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import DAY, NOW, PARTNER, azure_plan, customer, gid, nce, sub, world

from controller.errors import PermanentProviderError, StateError
from controller.providers import rules

RELATED = world(customer(1, sub(11), sub(12, "suspended"), sub(13, "deleted")))
UNRELATED = world(customer(2, sub(21, "suspended"), relationship="none"))


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: rules.remove_relationship(RELATED, gid(1)), "active_subscriptions"),
        (lambda: rules.suspend_subscription(RELATED, gid(1), gid(12)), "subscription_not_active"),
        (
            lambda: rules.reactivate_subscription(RELATED, gid(1), gid(11)),
            "subscription_not_suspended",
        ),
        (
            lambda: rules.reactivate_subscription(RELATED, gid(1), gid(13)),
            "subscription_not_suspended",
        ),
        (lambda: rules.update_quantity(RELATED, gid(1), gid(12), 3), "subscription_not_active"),
        (lambda: rules.update_quantity(RELATED, gid(1), gid(11), 0), "bad_quantity"),
        (lambda: rules.suspend_subscription(RELATED, gid(1), gid(99)), "subscription_not_found"),
        (lambda: rules.suspend_subscription(RELATED, gid(9), gid(11)), "customer_not_found"),
        (lambda: rules.reactivate_subscription(UNRELATED, gid(2), gid(21)), "20002"),
        (lambda: rules.remove_relationship(UNRELATED, gid(2)), "20002"),
        (lambda: rules.request_relationship(RELATED, gid(1)), "relationship_exists"),
    ],
    ids=[
        "no removal while a subscription is active",
        "suspend needs active",
        "reactivate needs suspended",
        "a deleted subscription cannot be reactivated",
        "quantity needs active",
        "quantity at least 1",
        "unknown subscription",
        "unknown customer",
        "nothing without a relationship",
        "no removal without a relationship",
        "no request while related",
    ],
)
def test_violations_are_refused_with_a_code(call, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PermanentProviderError) as caught:
        call()
    assert caught.value.code == code


def test_removal_after_suspending_everything_active() -> None:
    suspended = rules.suspend_subscription(RELATED, gid(1), gid(11))
    removed = rules.remove_relationship(suspended, gid(1))
    assert removed.customers_by_id[gid(1)].relationship == "none"
    assert RELATED.customers_by_id[gid(1)].relationship == "reseller"  # the input is untouched


def test_request_returns_partner_centers_invitation_link_and_changes_nothing() -> None:
    url = rules.request_relationship(UNRELATED, gid(2))
    assert url == (
        "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
        f"&partnerId={PARTNER}&msppId=0&DAP=false#/BillingAccounts/partner-invitation"
    )
    assert rules.request_relationship(world(), gid(7)) == url  # a stranger can be invited too


def test_acceptance_makes_the_relationship_and_adds_strangers() -> None:
    accepted = rules.accept_invitation(UNRELATED, gid(2), None)
    assert accepted.customers_by_id[gid(2)].relationship == "reseller"
    added = rules.accept_invitation(world(), gid(7), "Adatum")
    assert added.customers_by_id[gid(7)].name == "Adatum"
    assert added.customers_by_id[gid(7)].subscriptions == ()


# --- new commerce (contract section 7) ----------------------------------------------------


def test_a_world_in_the_seed_format_reads_and_writes_back_unchanged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from controller.providers.local import read_world, render_world

    text = (Path(__file__).resolve().parent.parent / "state" / "world.json").read_text()
    legacy = world(customer(1, sub(11, quantity=3), sub(12, "suspended")))
    rendered = render_world(legacy)
    assert "commerce" not in rendered and "azure" not in rendered and "now" not in rendered
    path = tmp_path / "world.json"
    path.write_text(rendered)
    assert render_world(read_world(path)) == rendered
    path.write_text(text)
    assert read_world(path).customers  # the shipped example still reads


def test_new_commerce_fields_round_trip_with_utc_times(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from controller.providers.local import read_world, render_world

    current = world(
        customer(
            1,
            nce(
                11, term_end=NOW + 30 * DAY, cancel_until=NOW + DAY, auto_renew=False, refundable=2
            ),
            azure_plan(12, active=1),
            reservations=2,
        ),
        now=NOW,
    )
    rendered = render_world(current)
    document = json.loads(rendered)
    assert document["now"] == "2026-03-01T12:00:00Z"
    first = document["customers"][0]
    assert first["azure_reservations_open"] == 2
    assert first["subscriptions"][0]["commerce"] == "nce"
    assert first["subscriptions"][0]["auto_renew"] is False  # false is written, not dropped
    assert first["subscriptions"][0]["cancel_until"] == "2026-03-02T12:00:00Z"
    assert first["subscriptions"][1]["azure_subscriptions_active"] == 1
    path = tmp_path / "world.json"
    path.write_text(rendered)
    assert read_world(path) == current
    path.write_text(rendered.replace("2026-03-01T12:00:00Z", "2026-03-01T13:00:00+01:00"))
    assert read_world(path).now == NOW  # any offset, held in UTC
    path.write_text(rendered.replace("2026-03-01T12:00:00Z", "2026-03-01T12:00:00"))
    with pytest.raises(StateError, match="now"):
        read_world(path)  # a time without its offset is ambiguous: refused


def test_a_world_without_a_clock_is_observed_at_the_wall_clock_and_kept_without_one(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    from controller.providers.local import LocalProvider, render_world

    (tmp_path / "world.json").write_text(render_world(world(customer(1, sub(11)))))
    provider = LocalProvider(tmp_path)
    assert provider.observe().now is not None
    provider.suspend_subscription(gid(1), gid(11))
    assert '"now"' not in (tmp_path / "world.json").read_text()


def test_the_fake_cancels_and_sets_auto_renewal_through_the_rules() -> None:
    from controller.providers.memory import MemoryProvider

    fake = MemoryProvider(world(customer(1, nce(11, cancel_until=NOW + DAY), nce(12)), now=NOW))
    fake.cancel_subscription(gid(1), gid(11))
    fake.set_auto_renew(gid(1), gid(12), False)
    after = fake.observe().customers_by_id[gid(1)]
    assert after.subscriptions_by_id[gid(11)].status == "deleted"
    assert after.subscriptions_by_id[gid(12)].auto_renew is False
    with pytest.raises(PermanentProviderError) as caught:
        fake.cancel_subscription(gid(1), gid(12))  # past its window
    assert caught.value.code == "800091"
    assert fake.calls[-1] == ("cancel_subscription", gid(1), gid(12))
