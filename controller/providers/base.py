"""The one narrow interface every provider implements: observe, and one method per action."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

from ..current import CurrentState

# The executor names the logical request it is making (run and action), the same across retries
# of that action, so that a remote provider can send an idempotency key the service de-duplicates.
logical_request: ContextVar[str | None] = ContextVar("logical_request", default=None)


class Provider(Protocol):
    """A Partner Center tenant, real or simulated. Only the executor calls the mutating methods."""

    def observe(self) -> CurrentState:
        """The partner, its customers and their subscriptions, as they are now."""
        ...

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None: ...

    def reactivate_subscription(self, customer_id: str, subscription_id: str) -> None: ...

    def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None: ...

    def cancel_subscription(self, customer_id: str, subscription_id: str) -> None:
        """Cancel a new-commerce subscription (status ``deleted``), inside its window only."""
        ...

    def set_auto_renew(self, customer_id: str, subscription_id: str, enabled: bool) -> None:
        """Turn a new-commerce subscription's auto-renewal on or off."""
        ...

    def remove_relationship(self, customer_id: str) -> None: ...

    def request_relationship(self, customer_id: str) -> str:
        """Ask the customer for a reseller relationship; returns the invitation link."""
        ...
