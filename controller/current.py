"""Models of the current state, as Partner Center shows it (and as ``state/world.json`` holds it).

A customer's relationship is ``reseller`` or ``none``; a subscription's status is one of Partner
Center's statuses, of which the controller only ever changes ``active`` and ``suspended``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .ids import Guid

Relationship = Literal["reseller", "none"]
SubscriptionStatus = Literal["active", "suspended", "deleted", "expired", "pending", "disabled"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Partner(_Frozen):
    id: Guid
    name: str = ""


class Subscription(_Frozen):
    id: Guid
    offer: str | None = None
    name: str | None = None
    quantity: int = Field(default=1, ge=0)
    status: SubscriptionStatus = "active"


class Customer(_Frozen):
    id: Guid
    name: str = ""
    domain: str | None = None
    relationship: Relationship = "reseller"
    subscriptions: tuple[Subscription, ...] = ()

    @cached_property
    def subscriptions_by_id(self) -> dict[str, Subscription]:
        return {s.id: s for s in self.subscriptions}

    def evolve(self, **changes: Any) -> Customer:
        """A copy with ``changes``; built afresh so that no cached index is carried over."""
        return Customer.model_construct(**{**dict(self), **changes})


class CurrentState(_Frozen):
    """Everything observed of the partner's tenant at one moment."""

    partner: Partner
    customers: tuple[Customer, ...] = ()

    @cached_property
    def customers_by_id(self) -> dict[str, Customer]:
        return {c.id: c for c in self.customers}

    def replace_customer(self, customer: Customer) -> CurrentState:
        """Return a copy with ``customer`` replacing the one with its id, or added at the end."""
        if customer.id in self.customers_by_id:
            customers = tuple(customer if c.id == customer.id else c for c in self.customers)
        else:
            customers = (*self.customers, customer)
        # model_construct, not model_copy: a copy would carry the cached index over.
        return CurrentState.model_construct(partner=self.partner, customers=customers)
