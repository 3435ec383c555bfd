"""The local provider: a simulated Partner Center tenant in ``state/world.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..current import CurrentState, Customer, Partner, Subscription
from ..errors import PermanentProviderError, StateError, validation_problem
from ..fsutil import atomic_write, readable_json
from ..i18n import _
from ..ratelimit import RateLimiter
from .world import WorldProvider


def world_path(state_dir: Path) -> Path:
    return state_dir / "world.json"


def read_world(path: Path) -> CurrentState:
    """Read and validate a world file; a problem is one line naming the file and the field."""
    try:
        return CurrentState.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        message = _("{}: no such file; the local provider needs a world file").format(path)
        raise StateError(message) from exc
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise StateError(f"{path}: {validation_problem(exc)}") from exc


# Fields written only when they differ from their default, so that a world of legacy
# subscriptions (the seed's format) reads and writes back unchanged.
_OMITTED_AT_DEFAULT: dict[str, object] = {
    "commerce": "legacy",
    "azure_subscriptions_active": 0,
    "azure_reservations_open": 0,
}


def _without_defaults(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in item.items() if k not in _OMITTED_AT_DEFAULT or _OMITTED_AT_DEFAULT[k] != v
    }


def render_world(world: CurrentState) -> str:
    """The world as human-readable JSON (unset optional fields left out)."""
    document = world.model_dump(mode="json", exclude_none=True)
    for customer in document["customers"]:
        customer["subscriptions"] = [_without_defaults(s) for s in customer["subscriptions"]]
    document["customers"] = [_without_defaults(c) for c in document["customers"]]
    return readable_json(document, indent=2) + "\n"


class LocalProvider(WorldProvider):
    """Reads ``world.json`` on every observation and rewrites it atomically after every action."""

    def __init__(self, state_dir: Path, *, rate_limiter: RateLimiter | None = None) -> None:
        super().__init__(rate_limiter=rate_limiter)
        self.path = world_path(state_dir)

    def load_world(self) -> CurrentState:
        return read_world(self.path)

    def store_world(self, world: CurrentState) -> None:
        try:
            atomic_write(self.path, render_world(world))
        except OSError as exc:
            message = _("{}: cannot write: {}").format(self.path, exc.strerror)
            raise PermanentProviderError(message, code="io_error") from exc


def init_world(state_dir: Path, partner: Partner, *, force: bool) -> Path:
    """Write an empty world for ``partner``; an existing one is kept unless ``force``."""
    path = world_path(state_dir)
    if path.exists() and not force:
        raise StateError(_("{}: a world exists already; --force replaces it").format(path))
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, render_world(CurrentState(partner=partner)))
    except OSError as exc:
        raise StateError(_("{}: cannot write: {}").format(path, exc.strerror)) from exc
    return path


def add_customer(world: CurrentState, customer: Customer) -> CurrentState:
    """The world with one more customer (for trying things out). Pure."""
    if customer.id in world.customers_by_id:
        raise StateError(_("customer {} is in the world already").format(customer.id))
    return world.replace_customer(customer)


def add_subscription(
    world: CurrentState, customer_id: str, subscription: Subscription
) -> CurrentState:
    """The world with one more subscription for a customer it knows. Pure."""
    customer = world.customers_by_id.get(customer_id)
    if customer is None:
        message = _(
            "customer {} is not in the world: add it first (`reconcile world add-customer`)"
        )
        raise StateError(message.format(customer_id))
    if subscription.id in customer.subscriptions_by_id:
        raise StateError(
            _("customer {} has a subscription {} already").format(customer_id, subscription.id)
        )
    return world.replace_customer(
        customer.evolve(subscriptions=(*customer.subscriptions, subscription))
    )
