"""Partner Center's preconditions, enforced on a simulated world.

The local world, the in-memory fake and the emulator all change their world through these pure
functions, so that they refuse exactly what the real service refuses, and cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime

from ..current import CurrentState, Customer, Subscription, SubscriptionStatus
from ..errors import PermanentProviderError

INVITATION_URL = (
    "https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship"
    "&partnerId={partner_id}&msppId=0&DAP=false#/BillingAccounts/partner-invitation"
)


def invitation_url(partner_id: str) -> str:
    """The reseller-relationship invitation link, in Partner Center's form."""
    return INVITATION_URL.format(partner_id=partner_id)


def find_customer(world: CurrentState, customer_id: str) -> Customer:
    """The customer, or a refusal as the service gives for an unknown one."""
    customer = world.customers_by_id.get(customer_id.lower())
    if customer is None:
        raise PermanentProviderError(f"customer {customer_id} not found", code="customer_not_found")
    return customer


def related_customer(world: CurrentState, customer_id: str) -> Customer:
    """The customer, if the partner is its reseller: nothing else may be done with it."""
    customer = find_customer(world, customer_id)
    if customer.relationship != "reseller":
        raise PermanentProviderError(
            f"no relationship between the partner and customer {customer_id}", code="20002"
        )
    return customer


def find_subscription(customer: Customer, subscription_id: str) -> Subscription:
    subscription = customer.subscriptions_by_id.get(subscription_id.lower())
    if subscription is None:
        raise PermanentProviderError(
            f"subscription {subscription_id} of customer {customer.id} not found",
            code="subscription_not_found",
        )
    return subscription


def _with_subscription(world: CurrentState, customer: Customer, new: Subscription) -> CurrentState:
    subscriptions = tuple(new if s.id == new.id else s for s in customer.subscriptions)
    return world.replace_customer(customer.evolve(subscriptions=subscriptions))


def _set_status(
    world: CurrentState,
    customer_id: str,
    subscription_id: str,
    *,
    expected: SubscriptionStatus,
    new: SubscriptionStatus,
) -> CurrentState:
    customer = related_customer(world, customer_id)
    subscription = find_subscription(customer, subscription_id)
    if subscription.status != expected:
        raise PermanentProviderError(
            f"subscription {subscription.id} is {subscription.status}, not {expected}",
            code=f"subscription_not_{expected}",
        )
    return _with_subscription(world, customer, subscription.model_copy(update={"status": new}))


def suspend_subscription(
    world: CurrentState, customer_id: str, subscription_id: str
) -> CurrentState:
    """Suspend an active subscription of a reseller customer."""
    return _set_status(world, customer_id, subscription_id, expected="active", new="suspended")


def reactivate_subscription(
    world: CurrentState, customer_id: str, subscription_id: str
) -> CurrentState:
    """Reactivate a suspended subscription of a reseller customer."""
    return _set_status(world, customer_id, subscription_id, expected="suspended", new="active")


def update_quantity(
    world: CurrentState, customer_id: str, subscription_id: str, quantity: int
) -> CurrentState:
    """Change the seat count of an active subscription of a reseller customer."""
    if quantity < 1:
        raise PermanentProviderError(f"quantity must be >= 1, got {quantity}", code="bad_quantity")
    customer = related_customer(world, customer_id)
    subscription = find_subscription(customer, subscription_id)
    if subscription.status != "active":
        raise PermanentProviderError(
            f"subscription {subscription.id} is {subscription.status}, not active",
            code="subscription_not_active",
        )
    new = subscription.model_copy(update={"quantity": quantity})
    return _with_subscription(world, customer, new)


def _clock(world: CurrentState) -> datetime:
    """The world's time; a provider always gives the world one before changing it."""
    if world.now is None:
        raise ValueError("the world has no clock: the provider must set one")
    return world.now


def _nce(customer: Customer, subscription_id: str) -> Subscription:
    subscription = find_subscription(customer, subscription_id)
    if subscription.commerce != "nce":
        raise PermanentProviderError(
            f"subscription {subscription.id} is not a new-commerce subscription",
            code="not_new_commerce",
        )
    return subscription


def cancel_subscription(
    world: CurrentState, customer_id: str, subscription_id: str
) -> CurrentState:
    """Cancel a new-commerce subscription (status ``deleted``): only inside its window."""
    customer = related_customer(world, customer_id)
    subscription = _nce(customer, subscription_id)
    if subscription.status in ("deleted", "expired"):
        raise PermanentProviderError(
            f"subscription {subscription.id} is {subscription.status}", code="800091"
        )
    if subscription.cancel_until is None or _clock(world) >= subscription.cancel_until:
        raise PermanentProviderError(
            f"subscription {subscription.id} is past its cancellation window", code="800091"
        )
    new = subscription.model_copy(update={"status": "deleted", "auto_renew": False})
    return _with_subscription(world, customer, new)


def set_auto_renew(
    world: CurrentState, customer_id: str, subscription_id: str, enabled: bool
) -> CurrentState:
    """Turn auto-renewal of a new-commerce subscription on or off (not once it has ended)."""
    customer = related_customer(world, customer_id)
    subscription = _nce(customer, subscription_id)
    if subscription.status in ("deleted", "expired"):
        raise PermanentProviderError(
            f"subscription {subscription.id} is {subscription.status}",
            code="subscription_not_active",
        )
    new = subscription.model_copy(update={"auto_renew": enabled})
    return _with_subscription(world, customer, new)


def remove_relationship(world: CurrentState, customer_id: str) -> CurrentState:
    """Remove the reseller relationship; refused while any subscription is still active."""
    customer = related_customer(world, customer_id)
    active = [s.id for s in customer.subscriptions if s.status == "active"]
    if active:
        raise PermanentProviderError(
            f"customer {customer.id} still has active subscriptions ({', '.join(active)}): "
            "suspend them before removing the relationship",
            code="active_subscriptions",
        )
    return world.replace_customer(customer.evolve(relationship="none"))


def request_relationship(world: CurrentState, customer_id: str) -> str:
    """Check a request is allowed (no relationship yet) and return the invitation link.

    The world itself does not change: the customer's admin must accept the invitation."""
    customer = world.customers_by_id.get(customer_id.lower())
    if customer is not None and customer.relationship == "reseller":
        raise PermanentProviderError(
            f"customer {customer.id} already has a reseller relationship",
            code="relationship_exists",
        )
    return invitation_url(world.partner.id)


def accept_invitation(world: CurrentState, customer_id: str, name: str | None) -> CurrentState:
    """The customer's admin accepts: the relationship becomes ``reseller``; a customer the world
    does not know yet is added, with no subscriptions."""
    customer = world.customers_by_id.get(customer_id.lower())
    if customer is None:
        if not name:
            raise PermanentProviderError(
                f"customer {customer_id} is not in the world: give its --name",
                code="customer_not_found",
            )
        return world.replace_customer(Customer(id=customer_id, name=name))
    update = {"relationship": "reseller"} | ({"name": name} if name else {})
    return world.replace_customer(customer.evolve(**update))
