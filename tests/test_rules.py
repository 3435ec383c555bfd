"""Partner Center's preconditions, as the local world and the fake enforce them."""

from __future__ import annotations

import pytest
from helpers import PARTNER, customer, gid, sub, world

from controller.errors import PermanentProviderError
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
