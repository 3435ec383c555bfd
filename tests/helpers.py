"""Builders for worlds, specs and records, so that each test says only what matters to it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.current import CurrentState, Customer, Subscription
from controller.records import Records
from controller.spec import CustomerSpec, Desired, PartnerSpec, SubscriptionSpec

PARTNER = "0e1ef465-9299-45ce-a98c-57c49bded0ce"
RECONCILE = str(Path(sys.executable).with_name("reconcile"))


def gid(n: int) -> str:
    """A readable GUID: gid(7) == '00000000-0000-4000-8000-000000000007'."""
    return f"00000000-0000-4000-8000-{n:012d}"


def sub(n: int, status: str = "active", quantity: int = 1, name: str | None = None) -> Subscription:
    return Subscription(id=gid(n), status=status, quantity=quantity, name=name)  # type: ignore[arg-type]


# The clock of the test worlds: observations are made "now", a new-commerce term ends a
# year later, and its cancellation window closes a week after purchase.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def nce(
    n: int,
    status: str = "active",
    *,
    quantity: int = 1,
    term_end: datetime | None = NOW + 300 * DAY,
    cancel_until: datetime | None = None,
    auto_renew: bool | None = True,
    refundable: int | None = None,
    suspended_by: str | None = None,
    parent: int | None = None,
    name: str | None = None,
) -> Subscription:
    """A new-commerce subscription; by default past its window, its term ending in 300 days."""
    return Subscription(
        id=gid(n),
        status=status,  # type: ignore[arg-type]
        quantity=quantity,
        name=name,
        commerce="nce",
        term_end=term_end,
        cancel_until=cancel_until,
        auto_renew=auto_renew,
        refundable_quantity=refundable,
        suspended_by=suspended_by,  # type: ignore[arg-type]
        parent_id=gid(parent) if parent is not None else None,
    )


def azure_plan(n: int, status: str = "active", *, active: int = 0) -> Subscription:
    """An Azure plan with ``active`` Azure subscriptions under it."""
    return Subscription(
        id=gid(n),
        status=status,  # type: ignore[arg-type]
        commerce="azure_plan",
        azure_subscriptions_active=active,
        name="Azure plan",
    )


def customer(
    n: int,
    *subs: Subscription,
    relationship: str = "reseller",
    name: str = "",
    reservations: int = 0,
) -> Customer:
    return Customer(
        id=gid(n),
        name=name or f"Customer {n}",
        relationship=relationship,  # type: ignore[arg-type]
        subscriptions=subs,
        azure_reservations_open=reservations,
    )


def world(*customers: Customer, now: datetime | None = NOW) -> CurrentState:
    return CurrentState(
        partner={"id": PARTNER, "name": "Example Partner"},  # type: ignore[arg-type]
        customers=customers,
        now=now,
    )


def want_sub(n: int, status: str = "active", quantity: int | None = None) -> SubscriptionSpec:
    return SubscriptionSpec(id=gid(n), status=status, quantity=quantity)  # type: ignore[arg-type]


def want_nce(
    n: int,
    status: str = "active",
    *,
    quantity: int | None = None,
    auto_renew: bool | None = None,
    commerce: str = "nce",
) -> SubscriptionSpec:
    return SubscriptionSpec(
        id=gid(n),
        status=status,  # type: ignore[arg-type]
        quantity=quantity,
        auto_renew=auto_renew,
        commerce=commerce,  # type: ignore[arg-type]
    )


def want(
    n: int, *subs: SubscriptionSpec, name: str = "", protected: bool | None = None
) -> CustomerSpec:
    return CustomerSpec(
        id=gid(n), name=name or f"Customer {n}", protected=protected, subscriptions=subs
    )


def desired(
    *customers: CustomerSpec, prune: str = "managed", offboarding: str = "end_at_term"
) -> Desired:
    return Desired(
        partner=PartnerSpec(prune=prune, offboarding=offboarding),  # type: ignore[arg-type]
        customers={c.id: c for c in customers},  # type: ignore[misc]
    )


def records(
    managed: tuple[int, ...] = (), protected: tuple[int, ...] = (), pending: tuple[int, ...] = ()
) -> Records:
    return Records(
        managed=tuple(gid(n) for n in managed),
        protected=tuple(gid(n) for n in protected),
        pending=tuple(
            {
                "customer_id": gid(n),
                "requested_at": "2026-01-01T00:00:00Z",
                "invitation_url": "https://x",
            }
            for n in pending
        ),  # type: ignore[arg-type]
    )


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``reconcile`` command."""
    return subprocess.run(
        [RECONCILE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=120,
        check=False,
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes, to prove nothing changed."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def as_tuples(plan: Any) -> list[tuple[Any, ...]]:
    """Actions as (id, type, customer n, subscription n or None, depends_on), for readable rows."""

    def n(guid: str | None) -> int | None:
        return None if guid is None else int(guid[-12:])

    return [
        (a.id, a.type, n(a.customer_id), n(a.subscription_id), list(a.depends_on))
        for a in plan.actions
    ]


def world_document(path: Path) -> dict[str, Any]:
    """The world of ``path`` (a ``world.json``) as its JSON document, with the changes of its
    log made: what the file alone holds once the log is folded in (the emulator folds it in a
    second after its last change, so a test reading the file at once would read it behind)."""
    from controller.providers.local import read_world, render_world

    document: dict[str, Any] = json.loads(render_world(read_world(path)))
    return document


def write_world_document(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` (a ``world.json``) with ``document``, one made from ``world_document``:
    it holds the changes of the log, which then goes, as a person editing the world deletes it
    (a world.json replaced beside a log holding changes it lacks is refused)."""
    path.write_text(json.dumps(document))
    path.with_name("world.changes.jsonl").unlink(missing_ok=True)
