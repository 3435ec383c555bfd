"""Partner Center's rules: the one place that states them (contract sections 2 and 7).

The planner asks the predicates here what the service will allow; the local world, the in-memory
fake and the emulator change their world only through the functions here, which refuse what the
real service refuses, with its error codes. So a simulator can never disagree with the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from ..current import (
    LATEST,
    CurrentState,
    Customer,
    Subscription,
    SubscriptionStatus,
    iso_utc,
    later,
)
from ..errors import PermanentProviderError
from ..i18n import _

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
            f"Subscription with ID {subscription_id} not found (customer {customer.id})",
            code="20003",  # 404 (learn.microsoft.com/partner-center/developer/error-codes)
        )
    return subscription


# --- the service's rules, as predicates the planner uses too -------------------------------

CANCELLATION_WINDOW = timedelta(hours=168)  # after purchase or renewal (new commerce)
LEGACY_REACTIVATION = timedelta(days=90)  # a suspended legacy subscription can come back
ENDED: frozenset[SubscriptionStatus] = frozenset({"deleted", "expired"})


def refusal(code: str, message: str) -> PermanentProviderError:
    """A refusal as the service gives it: its error code and a one-line description."""
    return PermanentProviderError(message, code=code)


def has_ended(subscription: Subscription) -> bool:
    """Cancelled (``deleted``) or expired: nothing more can happen to it."""
    return subscription.status in ENDED


def in_cancel_window(subscription: Subscription, now: datetime) -> bool:
    """A new-commerce subscription that may still be cancelled (and seats returned)."""
    return subscription.cancel_until is not None and now < subscription.cancel_until


def blocks_removal(subscription: Subscription) -> bool:
    """Whether this subscription alone keeps the relationship from being removed: an active
    legacy one; a new-commerce one until it expires or is cancelled (a suspended one too: it is
    still billed); an active Azure plan, or one with active Azure subscriptions."""
    if subscription.commerce == "nce":
        return not has_ended(subscription)
    if subscription.commerce == "azure_plan":
        return subscription.status == "active" or subscription.azure_subscriptions_active > 0
    return subscription.status == "active"


def removal_refusal(customer: Customer) -> PermanentProviderError | None:
    """Why the relationship cannot be removed now, or None when it can."""
    blocking = [s.id for s in customer.subscriptions if blocks_removal(s)]
    if blocking:
        return refusal(
            "active_subscriptions",
            f"customer {customer.id} still has subscriptions that must end first "
            f"({', '.join(blocking)}): suspend legacy ones, cancel or let new-commerce ones "
            "expire, cancel the Azure subscriptions of an Azure plan",
        )
    if customer.azure_reservations_open:
        return refusal(
            "azure_reservations_open",
            f"customer {customer.id} has {customer.azure_reservations_open} open Azure "
            "reservations or savings plans: cancel them through Azure support first",
        )
    return None


def suspension_refusal(subscription: Subscription) -> PermanentProviderError | None:
    """Why the subscription cannot be suspended, or None."""
    if subscription.status != "active":
        return refusal(
            "subscription_not_active", f"subscription {subscription.id} is {subscription.status}"
        )
    if subscription.commerce == "azure_plan" and subscription.azure_subscriptions_active:
        return refusal(
            "900115",
            "Azure plan can't be moved to suspended state since you have one or more Azure "
            "Subscriptions in the active state",
        )
    return None


def reactivation_refusal(
    subscription: Subscription, now: datetime
) -> PermanentProviderError | None:
    """Why the subscription cannot be reactivated, or None: only a suspended one; never one
    Microsoft suspended; a new-commerce one before its term end, a legacy one within 90 days
    of its suspension (when the suspension's time is known)."""
    if subscription.status != "suspended":
        return refusal(
            "subscription_not_suspended",
            f"subscription {subscription.id} is {subscription.status}, not suspended",
        )
    if subscription.suspended_by == "microsoft":
        return refusal(
            "800096",
            f"subscription {subscription.id} was suspended by Microsoft: only Microsoft "
            "support can lift it",
        )
    if subscription.commerce == "nce":
        if subscription.term_end is not None and now >= subscription.term_end:
            return refusal(
                "800096",
                f"subscription {subscription.id} is past its term end "
                f"{subscription.term_end.date().isoformat()}: it cannot be reactivated",
            )
    elif subscription.suspended_at is not None and now > later(
        subscription.suspended_at, LEGACY_REACTIVATION
    ):
        return refusal(
            "800096",
            f"subscription {subscription.id} was suspended more than 90 days ago "
            f"({subscription.suspended_at.date().isoformat()}): it cannot be reactivated",
        )
    return None


def quantity_refusal(
    subscription: Subscription, quantity: int, now: datetime
) -> PermanentProviderError | None:
    """Why the seat count cannot become ``quantity``, or None: only an active subscription;
    a new-commerce one decreases only inside its window, by at most its refundable seats."""
    if quantity < 1:
        return refusal("bad_quantity", f"quantity must be >= 1, got {quantity}")
    if subscription.status == "suspended":
        return refusal("800091", "Can't update a subscription with suspended status")
    if subscription.status != "active":
        return refusal(
            "subscription_not_active",
            f"subscription {subscription.id} is {subscription.status}, not active",
        )
    decrease = subscription.quantity - quantity
    if subscription.commerce == "nce" and decrease > 0:
        refundable = subscription.refundable_quantity or 0
        if not in_cancel_window(subscription, now) or decrease > refundable:
            return refusal("800090", "Subscription quantity cannot be decreased.")
    return None


def cancellation_refusal(
    subscription: Subscription, now: datetime
) -> PermanentProviderError | None:
    """Why the subscription cannot be cancelled, or None: new commerce only, inside its window."""
    if subscription.commerce != "nce":
        return refusal(
            "900263", f"subscription {subscription.id} is not a new-commerce subscription"
        )
    if has_ended(subscription):
        return refusal(
            "2011",
            f"Subscription with ID {subscription.id} and {subscription.status} status "
            "can't be updated.",
        )
    if not in_cancel_window(subscription, now):
        return refusal(
            "900117",
            "You have passed your 7-day cancellation window. We are unable to cancel your purchase",
        )
    return None


def auto_renew_refusal(subscription: Subscription) -> PermanentProviderError | None:
    """Why auto-renewal cannot be changed, or None: new commerce only, not once ended."""
    if subscription.commerce != "nce":
        return refusal("800093", "The subscription isn't eligible to be auto-renewed")
    if has_ended(subscription):
        return refusal(
            "2011",
            f"Subscription with ID {subscription.id} and {subscription.status} status "
            "can't be updated.",
        )
    return None


def addon_refusal(subscription: Subscription) -> PermanentProviderError | None:
    """An add-on's status and renewal follow its base subscription: never changed alone."""
    if subscription.parent_id is None:
        return None
    return refusal(
        "addon_follows_base",
        f"subscription {subscription.id} is an add-on of {subscription.parent_id}: change its "
        "base subscription instead",
    )


# --- changing a simulated world --------------------------------------------------------------


def _clock(world: CurrentState) -> datetime:
    """The world's time; a provider always gives the world one before changing it."""
    if world.now is None:
        raise ValueError("the world has no clock: the provider must set one")
    return world.now


def _with_subscriptions(
    world: CurrentState, customer: Customer, changed: list[Subscription]
) -> CurrentState:
    by_id = {s.id: s for s in changed}
    subscriptions = tuple(by_id.get(s.id, s) for s in customer.subscriptions)
    return world.replace_customer(customer.evolve(subscriptions=subscriptions))


def _with_addons(
    customer: Customer, base: Subscription, follow: Callable[[Subscription], Subscription | None]
) -> list[Subscription]:
    """The base and its add-ons, each changed by ``follow`` (None: that add-on is unchanged)."""
    changed = [base]
    for addon in customer.subscriptions:
        if addon.parent_id == base.id:
            followed = follow(addon)
            if followed is not None:
                changed.append(followed)
    return changed


def _target(
    world: CurrentState, customer_id: str, subscription_id: str
) -> tuple[Customer, Subscription]:
    """A reseller customer's subscription that may be changed on its own (not an add-on)."""
    customer = related_customer(world, customer_id)
    subscription = find_subscription(customer, subscription_id)
    _raise(addon_refusal(subscription))
    return customer, subscription


def _raise(error: PermanentProviderError | None) -> None:
    if error is not None:
        raise error


def suspend_subscription(
    world: CurrentState, customer_id: str, subscription_id: str
) -> CurrentState:
    """Suspend an active subscription (and its active add-ons), recording who and when. A
    new-commerce one stops renewing: Partner Center turns its auto-renewal off, and leaves it
    off when it is reactivated ("Suspending a new commerce subscription will turn off
    auto-renew", learn.microsoft.com/partner-center/create-a-new-subscription)."""
    customer, subscription = _target(world, customer_id, subscription_id)
    _raise(suspension_refusal(subscription))
    suspension = {"status": "suspended", "suspended_by": "partner", "suspended_at": _clock(world)}

    def suspended(s: Subscription) -> Subscription:
        renewal = {"auto_renew": False} if s.commerce == "nce" else {}
        return s.model_copy(update=suspension | renewal)

    changed = _with_addons(
        customer,
        suspended(subscription),
        lambda a: suspended(a) if a.status == "active" else None,
    )
    return _with_subscriptions(world, customer, changed)


def reactivate_subscription(
    world: CurrentState, customer_id: str, subscription_id: str
) -> CurrentState:
    """Reactivate a suspended subscription where the service allows it (and the add-ons the
    partner suspended with it). A new-commerce one's auto-renewal stays off: the partner turns
    it on again if wanted."""
    customer, subscription = _target(world, customer_id, subscription_id)
    _raise(reactivation_refusal(subscription, _clock(world)))
    active = {"status": "active", "suspended_by": None, "suspended_at": None}
    changed = _with_addons(
        customer,
        subscription.model_copy(update=active),
        lambda a: (
            a.model_copy(update=active)
            if a.status == "suspended" and a.suspended_by != "microsoft"
            else None
        ),
    )
    return _with_subscriptions(world, customer, changed)


def update_quantity(
    world: CurrentState, customer_id: str, subscription_id: str, quantity: int
) -> CurrentState:
    """Change the seat count where the service allows it; returned new-commerce seats are no
    longer refundable."""
    customer = related_customer(world, customer_id)
    subscription = find_subscription(customer, subscription_id)
    _raise(quantity_refusal(subscription, quantity, _clock(world)))
    update: dict[str, object] = {"quantity": quantity}
    if subscription.commerce == "nce":
        refundable = subscription.refundable_quantity or 0
        if quantity < subscription.quantity:
            update["refundable_quantity"] = refundable - (subscription.quantity - quantity)
        elif in_cancel_window(subscription, _clock(world)):
            update["refundable_quantity"] = refundable + (quantity - subscription.quantity)
    return _with_subscriptions(world, customer, [subscription.model_copy(update=update)])


def cancel_subscription(
    world: CurrentState, customer_id: str, subscription_id: str
) -> CurrentState:
    """Cancel a new-commerce subscription (status ``deleted``), and its add-ons with it: only
    inside its cancellation window."""
    customer, subscription = _target(world, customer_id, subscription_id)
    _raise(cancellation_refusal(subscription, _clock(world)))
    cancelled = {"status": "deleted", "auto_renew": False}
    changed = _with_addons(
        customer,
        subscription.model_copy(update=cancelled),
        lambda a: None if has_ended(a) else a.model_copy(update=cancelled),
    )
    return _with_subscriptions(world, customer, changed)


def set_auto_renew(
    world: CurrentState, customer_id: str, subscription_id: str, enabled: bool
) -> CurrentState:
    """Turn auto-renewal of a new-commerce subscription (and of its add-ons) on or off."""
    customer, subscription = _target(world, customer_id, subscription_id)
    _raise(auto_renew_refusal(subscription))
    renewal = {"auto_renew": enabled}
    changed = _with_addons(
        customer,
        subscription.model_copy(update=renewal),
        lambda a: None if has_ended(a) else a.model_copy(update=renewal),
    )
    return _with_subscriptions(world, customer, changed)


def remove_relationship(world: CurrentState, customer_id: str) -> CurrentState:
    """Remove the reseller relationship, once nothing blocks it (see ``blocks_removal``)."""
    customer = related_customer(world, customer_id)
    _raise(removal_refusal(customer))
    return world.replace_customer(customer.evolve(relationship="none"))


# --- the world's clock -----------------------------------------------------------------------


def one_year_after(moment: datetime) -> datetime:
    """The end of a renewed term: renewals are for a year (the world does not keep a term's
    length); 29 February becomes 28 February; a term ending in 9999 renews until LATEST."""
    if moment.year >= LATEST.year:
        return LATEST
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return moment.replace(year=moment.year + 1, day=28)


def _at_term_end(subscription: Subscription, now: datetime) -> Subscription:
    """A new-commerce subscription once ``now`` has come: each term that ended by then
    renews (auto-renewal on, active: a new term, a new 168-hour window, every seat refundable)
    or expires."""
    while (
        subscription.commerce == "nce"
        and not has_ended(subscription)
        and subscription.term_end is not None
        and subscription.term_end <= now
    ):
        if not subscription.auto_renew or subscription.status != "active":
            return subscription.model_copy(update={"status": "expired", "auto_renew": False})
        renewed_at = subscription.term_end
        if renewed_at >= LATEST:  # a term that ends at the end of time renews no more
            break
        subscription = subscription.model_copy(
            update={
                "term_end": one_year_after(renewed_at),
                "cancel_until": later(renewed_at, CANCELLATION_WINDOW),
                "refundable_quantity": subscription.quantity,
            }
        )
    return subscription


def advance(world: CurrentState, by: timedelta) -> CurrentState:
    """The world ``by`` later: new-commerce terms that ended renew or expire; an add-on whose
    base ended ends with it."""
    if by < timedelta(0):
        raise ValueError("the world's clock only moves forward")
    now = later(_clock(world), by)
    if now >= LATEST:
        raise PermanentProviderError(
            _("the world's clock is {}: it cannot move past the year 9999").format(
                iso_utc(_clock(world))
            ),
            code="clock_out_of_range",
        )
    customers = []
    for customer in world.customers:
        moved = {s.id: _at_term_end(s, now) for s in customer.subscriptions}
        for subscription in customer.subscriptions:
            base = moved.get(subscription.parent_id or "")
            own = moved[subscription.id]
            if base is not None and has_ended(base) and not has_ended(own):
                moved[subscription.id] = own.model_copy(
                    update={"status": base.status, "auto_renew": False}
                )
        changed = tuple(moved[s.id] for s in customer.subscriptions)
        customers.append(
            customer
            if changed == customer.subscriptions
            else customer.evolve(subscriptions=changed)
        )
    return CurrentState.model_construct(partner=world.partner, customers=tuple(customers), now=now)


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
