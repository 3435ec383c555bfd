"""Contract section 7 end to end: each rule through the real command line, with the local world,
with the Partner Center provider talking HTTP to the emulator, and with the records in
PostgreSQL (the ``reconcile`` fixture). Small worlds at helpers.NOW, written as ``world.json``;
each scenario groups the assertions of several rules, to keep the runs few."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Runner
from helpers import (
    DAY,
    NOW,
    azure_plan,
    customer,
    gid,
    nce,
    snapshot,
    sub,
    world,
    world_document,
    write_world_document,
)
from test_cli import assert_clean_failure

from controller.current import Customer, Subscription
from controller.errors import PermanentProviderError
from controller.providers.local import LocalProvider, render_world

TERM_END = NOW + 300 * DAY  # nce()'s default term end


def on_pc(reconcile: Runner) -> bool:
    return getattr(reconcile, "provider", "local") == "partner-center"


def given(example: Path, *customers: Customer, specs: list[dict[str, Any]]) -> None:
    """The example's partner with only ``customers`` in its world, and only ``specs`` (customer
    entries) in its specs."""
    (example / "state" / "world.json").write_text(render_world(world(*customers)))
    folder = example / "specs" / "customers"
    for old in folder.glob("*.yaml"):
        old.unlink()
    write_specs(example, specs)


def write_specs(example: Path, specs: list[dict[str, Any]]) -> None:
    path = example / "specs" / "customers" / "today.yaml"
    if specs:
        path.write_text(yaml.safe_dump({"customers": specs}, sort_keys=False))
    else:
        path.unlink(missing_ok=True)


def listed(n: int, *subscriptions: dict[str, Any]) -> dict[str, Any]:
    return {"id": gid(n), "name": f"Customer {n}", "subscriptions": list(subscriptions)}


def spec(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": gid(n), **fields}


def dry_json(reconcile: Runner, *args: str) -> dict[str, Any]:
    result = reconcile("--dry-run", "--output", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dry(reconcile: Runner, example: Path) -> tuple[str, dict[str, Any]]:
    """A dry run's text, and its plan as JSON (saved with --plan-out): one run for both."""
    result = reconcile("--dry-run", "--plan-out", "plan.json")
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads((example / "plan.json").read_text())


# Rules about subscriptions: through both providers. The records' store (PostgreSQL) matters to
# removals only (the managed customers), which run all three ways.
BOTH_PROVIDERS = pytest.mark.parametrize("reconcile", ["local", "partner-center"], indirect=True)


def steps(document: dict[str, Any]) -> list[tuple[str, int | None]]:
    """(type, subscription n) of each action of a plan, in order."""
    return [(a["type"], _n(a["subscription_id"])) for a in document["actions"]]


def blocks(document: dict[str, Any]) -> list[tuple[str, int | None, str, str | None]]:
    """(type, subscription n, reason, until) of each blocked item."""
    return [
        (b["type"], _n(b["subscription_id"]), b["reason"], b.get("until"))
        for b in document["blocked"]
    ]


def _n(guid: str | None) -> int | None:
    return None if guid is None else int(guid[-12:])


def in_world(example: Path, customer_n: int, n: int | None = None) -> dict[str, Any]:
    """A customer of the world file (or one of its subscriptions), as stored."""
    document = world_document(example / "state" / "world.json")
    found = next(c for c in document["customers"] if c["id"] == gid(customer_n))
    if n is None:
        return found
    return next(s for s in found["subscriptions"] if s["id"] == gid(n))


def results(applied: Any, plan: dict[str, Any]) -> dict[int | None, dict[str, Any]]:
    """The result of each action of ``plan``, by subscription n."""
    by_id = {r["id"]: r for r in json.loads(applied.stdout)["results"]}
    return {_n(a["subscription_id"]): by_id[a["id"]] for a in plan["actions"]}


@BOTH_PROVIDERS
def test_new_commerce_seats_decrease_only_inside_the_window_within_the_refundable_ones(
    example: Path, reconcile: Runner
) -> None:
    given(
        example,
        customer(
            1,
            nce(11, quantity=10, refundable=2, cancel_until=NOW + 2 * DAY),  # window: 2 days
            nce(12, quantity=10, refundable=10),  # window closed
            nce(13, quantity=10, refundable=2, cancel_until=NOW + 2 * DAY),
            nce(14, quantity=5),  # window closed: increases only
            nce(15, quantity=6, refundable=6, cancel_until=NOW + 10 * DAY),  # window: 10 days
        ),
        specs=[
            listed(
                1,
                *(
                    spec(n, commerce="nce", quantity=q)
                    for n, q in ((11, 8), (12, 9), (13, 7), (14, 8), (15, 4))
                ),
            )
        ],
    )
    text, saved = dry(reconcile, example)
    assert steps(saved) == [
        ("update_quantity", 11),
        ("update_quantity", 14),
        ("update_quantity", 15),
    ]
    refused = ("update_quantity", "quantity_decrease_not_refundable", None)
    assert blocks(saved) == [(refused[0], 12, *refused[1:]), (refused[0], 13, *refused[1:])]
    assert text.count("new-commerce seats can be returned only within 168 hours") == 2

    # Three days later the first window has closed. The saved plan (same tenant, so the same
    # fingerprint) is refused whole, as a plan made now blocks that decrease: nothing applied.
    assert reconcile("world", "advance", "3d").returncode == 0
    refused = reconcile("--plan", "plan.json", "--output", "json")
    assert refused.returncode == 1 and not refused.stdout
    assert "is blocked now (quantity_decrease_not_refundable): make a new plan" in refused.stderr
    assert [in_world(example, 1, n)["quantity"] for n in (11, 12, 13, 14, 15)] == [10, 10, 10, 5, 6]
    # Tried anyway, the world refuses it as the service does, with its code and sentence.
    with pytest.raises(PermanentProviderError) as caught:
        LocalProvider(example / "state").update_quantity(gid(1), gid(11), 8)
    error = str(caught.value)
    assert "800090" in error and "within 7 days (168 hours) of purchase or renewal" in error
    applied = reconcile("--output", "json")  # a plan made now
    assert applied.returncode == 0, applied.stderr
    assert [in_world(example, 1, n)["quantity"] for n in (11, 12, 13, 14, 15)] == [10, 10, 10, 8, 4]
    assert in_world(example, 1, 15)["refundable_quantity"] == 4  # two of six returned

    again = dry_json(reconcile)
    assert steps(again) == []
    assert [b[1] for b in blocks(again)] == [11, 12, 13]  # the closed window now blocks 11 too


@BOTH_PROVIDERS
def test_reactivation_only_where_the_service_allows_it_and_never_what_microsoft_suspended(
    example: Path, reconcile: Runner
) -> None:
    def suspended(item: Subscription, by: str, days_ago: int | None = None) -> Subscription:
        at = NOW - days_ago * DAY if days_ago is not None else None
        update = {"status": "suspended", "suspended_by": by, "suspended_at": at}
        return item.model_copy(update=update)

    given(
        example,
        customer(
            1,
            suspended(sub(21), "partner", days_ago=10),
            suspended(sub(22), "partner", days_ago=100),  # past the 90 days
            nce(23, "suspended", suspended_by="partner"),  # before its term end
            suspended(sub(24), "microsoft"),
            nce(25, "suspended", suspended_by="microsoft"),
            nce(26, "suspended", suspended_by="partner", term_end=NOW - DAY),  # term ended
            azure_plan(27, active=1),
        ),
        customer(2, relationship="advisor"),
        customer(3, relationship="syndication"),
        specs=[
            listed(
                1,
                *(spec(n) for n in (21, 22, 24)),
                *(spec(n, commerce="nce") for n in (23, 25, 26)),
                spec(27, commerce="azure_plan", status="suspended"),
            ),
            listed(2),
            listed(3),
        ],
    )
    text, planned = dry(reconcile, example)
    # Partner Center does not say when a legacy subscription was suspended: through it, the
    # service decides (and refuses, 800096); the local world knows the date and blocks it.
    late = [("reactivate_subscription", 22)] if on_pc(reconcile) else []
    assert sorted(steps(planned)) == sorted(
        [("reactivate_subscription", 21), ("reactivate_subscription", 23), *late]
    )
    over = (
        []
        if on_pc(reconcile)
        else [("reactivate_subscription", 22, "reactivation_period_over", None)]
    )
    assert blocks(planned) == [
        *over,
        ("reactivate_subscription", 24, "suspended_by_microsoft", None),
        ("reactivate_subscription", 25, "suspended_by_microsoft", None),
        ("reactivate_subscription", 26, "term_ended", None),
        ("suspend_subscription", 27, "azure_subscriptions_active", None),  # 900115 otherwise
    ]
    # Advisor and syndication customers: reported, never sent a reseller request.
    assert not [a for a in planned["actions"] if a["type"] == "request_relationship"]
    warnings = " ".join(planned["warnings"])
    assert "advisor relationship" in warnings and "syndication relationship" in warnings
    assert "the controller sends it no request" in warnings
    assert text.count("resolve it with Microsoft support") == 2
    assert "its term has ended, so it can no longer be reactivated" in text
    assert "waits for the active Azure subscriptions under" in text

    applied = reconcile("--output", "json")
    assert applied.returncode == (1 if on_pc(reconcile) else 0), applied.stderr
    if on_pc(reconcile):
        error = results(applied, planned)[22]["error"]
        assert "800096" in error and "90 days" in error
    statuses = [in_world(example, 1, n)["status"] for n in range(21, 28)]
    assert statuses == [
        "active",
        "suspended",
        "active",
        "suspended",
        "suspended",
        "suspended",
        "active",
    ]
    assert [in_world(example, n)["relationship"] for n in (2, 3)] == ["advisor", "syndication"]


def test_removal_waits_for_every_blocker_and_a_later_run_removes_the_relationship(
    example: Path, reconcile: Runner
) -> None:
    given(
        example,
        customer(
            1,
            azure_plan(31, active=1),
            nce(32, "suspended", auto_renew=False, suspended_by="partner", term_end=NOW + 5 * DAY),
            sub(33),
            reservations=1,
        ),
        customer(9),
        specs=[listed(1), listed(9)],
    )
    assert reconcile().returncode == 0  # listed: now a managed customer
    write_specs(example, [listed(9)])  # customer 1 leaves
    text, planned = dry(reconcile, example)
    assert steps(planned) == [("suspend_subscription", 33)]
    until = (NOW + 5 * DAY).date().isoformat()
    assert blocks(planned) == [
        ("remove_relationship", 32, "awaiting_term_end", until),
        ("remove_relationship", 31, "azure_subscriptions_active", None),
        ("remove_relationship", None, "azure_reservations_open", None),
    ]
    assert f"to end at its term end {until}; auto-renewal is off" in text
    assert "cancel them in the Azure portal" in text
    assert "cancel them through Azure support" in text
    assert reconcile().returncode == 0
    assert in_world(example, 1)["relationship"] == "reseller"
    assert in_world(example, 1, 33)["status"] == "suspended"
    assert in_world(example, 1, 32)["status"] == "suspended"  # still billed, still blocks

    # A person cancels the Azure subscriptions and the reservation; the NCE term ends.
    path = example / "state" / "world.json"
    document = world_document(path)  # with the emulator's changes not yet folded in
    del document["customers"][0]["azure_reservations_open"]
    del document["customers"][0]["subscriptions"][0]["azure_subscriptions_active"]
    write_world_document(path, document)
    advanced = reconcile("world", "advance", "6d")
    assert "suspended -> expired" in advanced.stdout
    last = reconcile("--output", "json")
    assert last.returncode == 0, last.stderr
    applied = json.loads(last.stdout)
    assert steps(applied) == [("suspend_subscription", 31), ("remove_relationship", None)]
    assert applied["actions"][1]["depends_on"] == [applied["actions"][0]["id"]]
    assert blocks(applied) == []
    assert {r["status"] for r in applied["results"]} == {"applied"}
    assert in_world(example, 1)["relationship"] == "none"


@BOTH_PROVIDERS
def test_terms_renew_or_expire_and_a_renewal_opens_a_new_cancellation_window(
    example: Path, reconcile: Runner
) -> None:
    given(
        example,
        customer(
            1,
            nce(41, quantity=3, term_end=NOW + 2 * DAY),  # auto-renewal on
            nce(42, term_end=NOW + 2 * DAY, auto_renew=False),
            nce(43),  # auto-renewal on, turned off by the specs
            nce(44, parent=41, term_end=NOW + 2 * DAY),  # an add-on of 41
        ),
        specs=[
            listed(
                1,
                spec(41, commerce="nce", status="cancelled"),
                spec(42, commerce="nce"),
                spec(43, commerce="nce", auto_renew=False),
            )
        ],
    )
    text, before = dry(reconcile, example)
    assert steps(before) == [("set_auto_renew", 43)]
    term_end = (NOW + 2 * DAY).date().isoformat()
    assert blocks(before) == [("cancel_subscription", 41, "cancel_window_closed", term_end)]
    assert "set auto_renew: false in the specs instead" in text

    advanced = reconcile("world", "advance", "3d")
    assert advanced.returncode == 0, advanced.stderr
    renewed_until = (NOW + 2 * DAY).replace(year=NOW.year + 1).date().isoformat()
    assert f"renewed until {renewed_until}" in advanced.stdout
    assert in_world(example, 1, 42)["status"] == "expired"
    renewed = in_world(example, 1, 41)
    assert renewed["cancel_until"] == "2026-03-10T12:00:00Z"  # 168 hours after the renewal
    assert renewed["refundable_quantity"] == 3

    after = dry_json(reconcile)
    assert steps(after) == [("cancel_subscription", 41), ("set_auto_renew", 43)]
    assert blocks(after) == []
    state = snapshot(example / "state")
    guarded = reconcile("--max-cancellations", "0")
    assert_clean_failure(guarded, state, example, "more than --max-cancellations 0")
    applied = reconcile("--max-cancellations", "1")
    assert applied.returncode == 0, applied.stderr
    assert "Converged: a fresh plan has no changes." in applied.stdout
    assert [in_world(example, 1, n)["status"] for n in (41, 44)] == ["deleted", "deleted"]
    assert in_world(example, 1, 43)["auto_renew"] is False


CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"
FABRIKAM = "fe1536a5-06d0-4e96-8fa9-720c4ec76466"


def test_a_customer_that_could_not_be_observed_fails_the_run_unless_left_out(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Partner Center, one customer's unexpected error leaves it out of the plan; the
    plan of the others is shown (and applied), and the run exits 1, as Terraform fails a plan
    whose refresh failed; --exclude leaves the customer out knowingly."""
    from conftest import TOKEN, start_emulator
    from helpers import run

    from controller.emulator import Emulator, Knobs

    served = Emulator._list_subscriptions

    def failing(self: Emulator, customer_id: str, *args: Any) -> Any:
        if customer_id == CONTOSO:
            return 400, {"code": 800003, "description": "Unexpected error"}, {}
        return served(self, customer_id, *args)

    monkeypatch.setattr(Emulator, "_list_subscriptions", failing)
    stop, env = start_emulator(example / "state", Knobs(token=TOKEN))

    def reconcile(*args: str) -> Any:
        return run("--provider", "partner-center", *args, cwd=example, env=env)

    try:
        planned = reconcile("--dry-run", "--detailed-exitcode")
        partial = reconcile("--dry-run", "--detailed-exitcode", "--exclude", CONTOSO)
        before = world_document(example / "state" / "world.json")
        applied = reconcile("--yes")
    finally:
        stop()
    assert planned.returncode == 1, planned.stderr
    assert "remove relationship Fabrikam Inc" in planned.stdout  # the others' plan
    assert f"customer {CONTOSO} could not be observed, so nothing is planned" in planned.stdout
    errors = planned.stderr.splitlines()
    assert errors[0].startswith(f"error: customer {CONTOSO} could not be observed: ")
    assert "800003" in errors[0] and "Traceback" not in planned.stderr
    assert "leaves out 1 customer that could not be observed" in errors[1]
    assert partial.returncode == 2, partial.stderr  # changes, nothing left unobserved
    assert "could not be observed" not in partial.stdout + partial.stderr

    assert applied.returncode == 1, applied.stderr
    assert f"error: customer {CONTOSO} could not be observed" in applied.stderr
    assert "Not converged: 1 customer could not be observed" in applied.stdout
    assert "Converged" not in applied.stdout.replace("Not converged", "")
    world_after = {
        c["id"]: c for c in world_document(example / "state" / "world.json")["customers"]
    }
    assert world_after[FABRIKAM]["relationship"] == "none"  # the others were applied
    contoso_before = next(c for c in before["customers"] if c["id"] == CONTOSO)
    assert world_after[CONTOSO] == contoso_before  # nothing done for Contoso


def test_a_customers_own_offboarding_is_remembered_in_the_records_until_it_leaves(
    example: Path, reconcile: Runner
) -> None:
    """``offboarding: cancel_in_window`` on a customer is remembered in the records (the file
    or PostgreSQL), so that deleting its block, which is what removes it, still cancels its
    new-commerce subscription inside the window rather than waiting for the term end."""
    given(
        example,
        customer(1, nce(51, cancel_until=NOW + 2 * DAY), nce(52, parent=51)),
        customer(9),
        specs=[{**listed(1), "offboarding": "cancel_in_window"}, listed(9)],
    )
    assert reconcile().returncode == 0  # listed, managed, its offboarding remembered
    write_specs(example, [listed(9)])  # customer 1 leaves
    applied = reconcile("--output", "json")
    assert applied.returncode == 0, applied.stderr
    document = json.loads(applied.stdout)
    assert steps(document) == [("cancel_subscription", 51), ("remove_relationship", None)]
    assert [in_world(example, 1, n)["status"] for n in (51, 52)] == ["deleted", "deleted"]
    assert in_world(example, 1)["relationship"] == "none"


@BOTH_PROVIDERS
def test_a_legacy_add_on_ends_with_its_base_or_holds_the_removal_until_it_has_ended(
    example: Path, reconcile: Runner
) -> None:
    def addon(n: int, parent: int, status: str = "active") -> Subscription:
        return sub(n, status).model_copy(update={"parent_id": gid(parent)})

    given(
        example,
        customer(
            1,
            sub(11),
            addon(12, parent=11),  # ends with 11, suspended by this plan
            sub(13, "suspended").model_copy(update={"suspended_by": "microsoft"}),
            addon(14, parent=13),  # its base already suspended: nothing here can end it
        ),
        customer(9),
        specs=[listed(1), listed(9)],
    )
    assert reconcile().returncode == 0  # listed: now a managed customer
    write_specs(example, [listed(9)])  # customer 1 leaves
    text, planned = dry(reconcile, example)
    assert steps(planned) == [("suspend_subscription", 11)]  # never an add-on on its own
    assert blocks(planned) == [("remove_relationship", 14, "addon_follows_base", None)]
    assert "which ends only with its base subscription" in text
    assert reconcile().returncode == 0
    assert [in_world(example, 1, n)["status"] for n in (11, 12)] == ["suspended", "suspended"]
    assert in_world(example, 1)["relationship"] == "reseller"  # held by the add-on 14

    # Someone ends the add-on in the portal: the next run removes the relationship.
    path = example / "state" / "world.json"
    document = world_document(path)  # with the emulator's changes not yet folded in
    document["customers"][0]["subscriptions"][3]["status"] = "suspended"
    write_world_document(path, document)
    last = reconcile("--output", "json")
    assert last.returncode == 0, last.stderr
    assert steps(json.loads(last.stdout)) == [("remove_relationship", None)]
    assert in_world(example, 1)["relationship"] == "none"
