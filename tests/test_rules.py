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
        (lambda: rules.update_quantity(RELATED, gid(1), gid(12), 3), "800091"),
        (lambda: rules.update_quantity(RELATED, gid(1), gid(11), 0), "bad_quantity"),
        (lambda: rules.suspend_subscription(RELATED, gid(1), gid(99)), "20003"),
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
    legacy = world(customer(1, sub(11, quantity=3), sub(12, "suspended")), now=None)
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

    (tmp_path / "world.json").write_text(render_world(world(customer(1, sub(11)), now=None)))
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
    assert caught.value.code == "900117"
    assert fake.calls[-1] == ("cancel_subscription", gid(1), gid(12))


# --- contract section 7: the service's rules, with its error codes ------------------------

HOUR = DAY / 24
IN_WINDOW = NOW + 2 * DAY  # a cancellation window that ends in two days

NCE_WORLD = world(
    customer(
        1,
        nce(11, cancel_until=IN_WINDOW, quantity=10, refundable=3),  # inside its window
        nce(12, quantity=10, refundable=3),  # past its window
        nce(13, "suspended", term_end=NOW - DAY),  # suspended, term ended yesterday
        nce(14, "suspended", term_end=NOW + DAY, suspended_by="partner"),
        nce(15, "suspended", suspended_by="microsoft"),
        nce(16, "deleted"),
        nce(17, parent=12, name="an add-on"),
        azure_plan(18, active=2),
    ),
)
LEGACY_WORLD = world(
    customer(
        2,
        sub(21).model_copy(update={"status": "suspended", "suspended_at": NOW - 91 * DAY}),
        sub(22).model_copy(update={"status": "suspended", "suspended_at": NOW - 89 * DAY}),
        sub(23, quantity=5),
    )
)


def _nce_call(name: str, n: int, *args: object):  # type: ignore[no-untyped-def]
    return lambda: getattr(rules, name)(NCE_WORLD, gid(1), gid(n), *args)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (_nce_call("cancel_subscription", 12), "900117"),
        (lambda: rules.cancel_subscription(LEGACY_WORLD, gid(2), gid(23)), "900263"),
        (_nce_call("cancel_subscription", 16), "2011"),
        (_nce_call("update_quantity", 12, 9), "800090"),
        (_nce_call("update_quantity", 11, 6), "800090"),
        (_nce_call("update_quantity", 14, 12), "800091"),
        (_nce_call("reactivate_subscription", 13), "800096"),
        (_nce_call("reactivate_subscription", 15), "800096"),
        (lambda: rules.reactivate_subscription(LEGACY_WORLD, gid(2), gid(21)), "800096"),
        (_nce_call("suspend_subscription", 18), "900115"),
        (_nce_call("set_auto_renew", 17, False), "addon_follows_base"),
        (_nce_call("suspend_subscription", 17), "addon_follows_base"),
        (_nce_call("cancel_subscription", 17), "addon_follows_base"),
        (lambda: rules.set_auto_renew(LEGACY_WORLD, gid(2), gid(23), False), "800093"),
        (lambda: rules.remove_relationship(NCE_WORLD, gid(1)), "active_subscriptions"),
    ],
    ids=[
        "NCE cancel only inside the window (900117)",
        "only NCE can be cancelled",
        "a cancelled subscription cannot be changed (2011)",
        "NCE decrease only inside the window (800090)",
        "NCE decrease within the refundable seats only (800090)",
        "no quantity change while suspended (800091)",
        "suspended NCE reactivated only before its term end",
        "never reactivate what Microsoft suspended",
        "legacy reactivated only within 90 days",
        "Azure plan not suspended while Azure subscriptions are active (900115)",
        "add-on renewal follows its base",
        "add-on suspension follows its base",
        "add-on cancellation follows its base",
        "legacy has no auto-renewal (800093)",
        "relationship stays while NCE subscriptions run",
    ],
)
def test_section_7_refusals_carry_the_service_codes(call, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PermanentProviderError) as caught:
        call()
    assert caught.value.code == code


def _sub(current, customer_n: int, n: int):  # type: ignore[no-untyped-def]
    return current.customers_by_id[gid(customer_n)].subscriptions_by_id[gid(n)]


def test_what_the_service_allows_in_new_commerce() -> None:
    changed = rules.cancel_subscription(NCE_WORLD, gid(1), gid(11))
    assert _sub(changed, 1, 11).status == "deleted"
    changed = rules.update_quantity(NCE_WORLD, gid(1), gid(11), 7)  # 3 refundable seats back
    assert (_sub(changed, 1, 11).quantity, _sub(changed, 1, 11).refundable_quantity) == (7, 0)
    changed = rules.update_quantity(NCE_WORLD, gid(1), gid(12), 40)  # increases: always
    assert _sub(changed, 1, 12).quantity == 40
    changed = rules.reactivate_subscription(NCE_WORLD, gid(1), gid(14))  # before its term end
    assert _sub(changed, 1, 14).status == "active"
    changed = rules.reactivate_subscription(LEGACY_WORLD, gid(2), gid(22))  # within 90 days
    assert _sub(changed, 2, 22).status == "active"


def test_add_ons_follow_their_base() -> None:
    off = rules.set_auto_renew(NCE_WORLD, gid(1), gid(12), False)
    assert _sub(off, 1, 17).auto_renew is False
    suspended = rules.suspend_subscription(NCE_WORLD, gid(1), gid(12))
    assert _sub(suspended, 1, 17).status == "suspended"
    assert _sub(suspended, 1, 12).suspended_by == "partner"
    assert _sub(suspended, 1, 12).suspended_at == NOW
    back = rules.reactivate_subscription(suspended, gid(1), gid(12))
    assert _sub(back, 1, 17).status == "active"
    in_window = world(customer(1, nce(11, cancel_until=IN_WINDOW), nce(17, parent=11)))
    cancelled = rules.cancel_subscription(in_window, gid(1), gid(11))
    assert _sub(cancelled, 1, 17).status == "deleted"


def test_a_suspended_new_commerce_subscription_stops_renewing() -> None:
    """Suspending turns auto-renewal off (its add-ons' too) and reactivating leaves it off, so
    the subscription expires at its term end (learn.microsoft.com/partner-center/
    create-a-new-subscription, "Suspend a subscription"); legacy ones have no auto-renewal."""
    current = world(customer(1, nce(11), nce(12, parent=11), sub(13)))
    suspended = rules.suspend_subscription(current, gid(1), gid(11))
    assert (_sub(suspended, 1, 11).auto_renew, _sub(suspended, 1, 12).auto_renew) == (False, False)
    back = rules.reactivate_subscription(suspended, gid(1), gid(11))
    assert (_sub(back, 1, 11).status, _sub(back, 1, 11).auto_renew) == ("active", False)
    assert _sub(rules.advance(back, 301 * DAY), 1, 11).status == "expired"
    assert _sub(rules.suspend_subscription(current, gid(1), gid(13)), 1, 13).auto_renew is None


@pytest.mark.parametrize(
    ("subscriptions", "reservations", "code"),
    [
        ((sub(1),), 0, "active_subscriptions"),
        ((nce(1),), 0, "active_subscriptions"),
        ((nce(1, "suspended"),), 0, "active_subscriptions"),
        ((azure_plan(1),), 0, "active_subscriptions"),
        ((azure_plan(1, "suspended", active=1),), 0, "active_subscriptions"),
        ((), 1, "azure_reservations_open"),
        (
            (sub(1, "suspended"), nce(2, "expired"), nce(3, "deleted"), azure_plan(4, "suspended")),
            0,
            None,
        ),
    ],
    ids=[
        "an active legacy subscription",
        "an active NCE subscription",
        "a suspended NCE subscription (still billed)",
        "an active Azure plan",
        "an Azure plan with active Azure subscriptions",
        "open reservations",
        "nothing left: removed",
    ],
)
def test_what_blocks_removing_the_relationship(subscriptions, reservations, code) -> None:  # type: ignore[no-untyped-def]
    current = world(customer(1, *subscriptions, reservations=reservations))
    if code is None:
        assert rules.remove_relationship(current, gid(1)).customers[0].relationship == "none"
        return
    with pytest.raises(PermanentProviderError) as caught:
        rules.remove_relationship(current, gid(1))
    assert caught.value.code == code


def test_advancing_the_clock_expires_or_renews_terms() -> None:
    current = world(
        customer(
            1,
            nce(11, term_end=NOW + 5 * DAY, auto_renew=False),
            nce(12, term_end=NOW + 5 * DAY, auto_renew=True, quantity=4),
            nce(13, term_end=NOW + 30 * DAY, auto_renew=False),
            nce(14, "suspended", term_end=NOW + 5 * DAY, auto_renew=True),
            nce(15, term_end=NOW + 5 * DAY, auto_renew=True, parent=11),
            sub(16),
        )
    )
    later = rules.advance(current, 8 * DAY)
    assert later.now == NOW + 8 * DAY
    assert _sub(later, 1, 11).status == "expired"
    renewed = _sub(later, 1, 12)
    assert renewed.status == "active" and renewed.term_end == NOW + 5 * DAY + 365 * DAY
    assert renewed.cancel_until == NOW + 5 * DAY + 168 * HOUR
    assert renewed.refundable_quantity == 4
    assert _sub(later, 1, 13).status == "active"  # its term has not ended yet
    assert _sub(later, 1, 14).status == "expired"  # a suspended one does not renew
    assert _sub(later, 1, 15).status == "expired"  # an add-on ends with its base
    assert _sub(later, 1, 16) == sub(16)
    again = rules.advance(later, 8 * DAY)  # past the renewed window: no longer cancellable
    assert not rules.in_cancel_window(_sub(again, 1, 12), again.now)  # type: ignore[arg-type]
    assert rules.in_cancel_window(renewed, later.now)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forward"):
        rules.advance(current, -DAY)
