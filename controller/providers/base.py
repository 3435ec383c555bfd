"""The one narrow interface every provider implements: observe, and one method per action."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..current import CurrentState

if TYPE_CHECKING:
    from ..observation import Needs, Observation, Observed, ObservePolicy

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

    def close(self) -> None:
        """Release what the provider holds, once a run is done with it."""
        ...


@runtime_checkable
class CachingProvider(Provider, Protocol):
    """A provider whose observation is costly (Partner Center: a request per customer), so that
    a plan reads only the customers it needs and takes the others from the observation cache."""

    @property
    def tenant_id(self) -> str:
        """The partner's tenant: whose observation cache this provider's readings go to."""
        ...

    def observe_with(
        self, cached: Mapping[str, Observed | None], needs: Needs, policy: ObservePolicy
    ) -> Observation:
        """What ``needs`` and ``policy`` ask for read now, the rest as ``cached`` has it."""
        ...
