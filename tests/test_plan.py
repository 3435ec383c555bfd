"""The planner as a table: one named row per planning rule of the contract's section 2."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from helpers import (
    as_tuples,
    customer,
    desired,
    gid,
    records,
    sub,
    want,
    want_sub,
    world,
)

from controller.errors import PlanError
from controller.plan import check_not_empty, check_partner, check_removal_limit, plan
from controller.records import Records
from controller.spec import Desired, PartnerSpec


@dataclass
class Row:
    desired: Desired
    current: object
    records: Records = field(default_factory=Records)
    actions: list[tuple[object, ...]] = field(default_factory=list)
    blocked: list[tuple[str, int, int | None]] = field(default_factory=list)
    unmanaged: list[tuple[int, int | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # a fragment each warning must contain


KEEP = want(99)  # a customer that keeps the specs non-empty
KEPT = customer(99)

ROWS = {
    "removal suspends every active subscription, then removes": Row(
        desired(KEEP),
        world(KEPT, customer(1, sub(11), sub(12), sub(13, "suspended"))),
        records(managed=(1,)),
        actions=[
            ("a1", "suspend_subscription", 1, 11, []),
            ("a2", "suspend_subscription", 1, 12, []),
            ("a3", "remove_relationship", 1, None, ["a1", "a2"]),
        ],
    ),
    "removal suspends only active subscriptions": Row(
        desired(KEEP),
        world(
            KEPT,
            customer(
                1,
                sub(11, "deleted"),
                sub(12, "expired"),
                sub(13, "disabled"),
                sub(14, "pending"),
                sub(15),
            ),
        ),
        records(managed=(1,)),
        actions=[
            ("a1", "suspend_subscription", 1, 15, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
        ],
    ),
    "removal with nothing active is one step": Row(
        desired(KEEP),
        world(KEPT, customer(1, sub(11, "suspended"))),
        records(managed=(1,)),
        actions=[("a1", "remove_relationship", 1, None, [])],
    ),
    "removals of several customers are independent": Row(
        desired(KEEP),
        world(KEPT, customer(1, sub(11)), customer(2, sub(21))),
        records(managed=(1, 2)),
        actions=[
            ("a1", "suspend_subscription", 1, 11, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
            ("a3", "suspend_subscription", 2, 21, []),
            ("a4", "remove_relationship", 2, None, ["a3"]),
        ],
    ),
    "a managed customer already without relationship needs nothing": Row(
        desired(KEEP),
        world(KEPT, customer(1, sub(11, "suspended"), relationship="none")),
        records(managed=(1,)),
    ),
    "unmanaged customer is reported and left alone": Row(
        desired(KEEP),
        world(KEPT, customer(3, sub(31))),
        unmanaged=[(3, None)],
    ),
    "a former customer without relationship is not reported": Row(
        desired(KEEP),
        world(KEPT, customer(3, sub(31, "suspended"), relationship="none")),
    ),
    "unlisted subscription of a listed customer is unmanaged": Row(
        desired(want(1, want_sub(11))),
        world(customer(1, sub(11), sub(12))),
        unmanaged=[(1, 12)],
    ),
    "protected customer is kept after its block is deleted": Row(
        desired(KEEP),
        world(KEPT, customer(1, sub(11))),
        records(managed=(1,), protected=(1,)),
        warnings=["protected"],
    ),
    "protected: false in the specs lifts protection (nothing removed while listed)": Row(
        desired(want(1, want_sub(11), protected=False)),
        world(customer(1, sub(11))),
        records(managed=(1,), protected=(1,)),
    ),
    "prune none keeps a managed customer absent from the specs": Row(
        desired(KEEP, prune="none"),
        world(KEPT, customer(1, sub(11))),
        records(managed=(1,)),
        warnings=["prune: none"],
    ),
    "re-added customer gets a request; its reactivations are blocked": Row(
        desired(want(1, want_sub(11), want_sub(12, quantity=4))),
        world(customer(1, sub(11, "suspended"), sub(12, "suspended", 2), relationship="none")),
        actions=[("a1", "request_relationship", 1, None, [])],
        blocked=[
            ("reactivate_subscription", 1, 11),
            ("reactivate_subscription", 1, 12),
            ("update_quantity", 1, 12),
        ],
    ),
    "customer unknown to the partner gets a request": Row(
        desired(want(5, want_sub(51))),
        world(),
        actions=[("a1", "request_relationship", 5, None, [])],
    ),
    "pending customer is not requested again; its actions stay blocked": Row(
        desired(want(1, want_sub(11))),
        world(customer(1, sub(11, "suspended"), relationship="none")),
        records(pending=(1,)),
        blocked=[("reactivate_subscription", 1, 11)],
    ),
    "quantity update after reactivation": Row(
        desired(want(1, want_sub(11, "active", 7))),
        world(customer(1, sub(11, "suspended", 5))),
        actions=[
            ("a1", "reactivate_subscription", 1, 11, []),
            ("a2", "update_quantity", 1, 11, ["a1"]),
        ],
    ),
    "quantity update before suspension": Row(
        desired(want(1, want_sub(11, "suspended", 7))),
        world(customer(1, sub(11, "active", 5))),
        actions=[
            ("a1", "update_quantity", 1, 11, []),
            ("a2", "suspend_subscription", 1, 11, ["a1"]),
        ],
    ),
    "quantity of a suspended subscription that stays suspended is not changed": Row(
        desired(want(1, want_sub(11, "suspended", 7))),
        world(customer(1, sub(11, "suspended", 5))),
        warnings=["cannot change while suspended"],
    ),
    "quantity change alone": Row(
        desired(want(1, want_sub(11, quantity=30))),
        world(customer(1, sub(11, quantity=25))),
        actions=[("a1", "update_quantity", 1, 11, [])],
    ),
    "quantity not given is not reconciled": Row(
        desired(want(1, want_sub(11))),
        world(customer(1, sub(11, quantity=25))),
    ),
    "explicit suspension": Row(
        desired(want(1, want_sub(11, "suspended"))),
        world(customer(1, sub(11))),
        actions=[("a1", "suspend_subscription", 1, 11, [])],
    ),
    "explicit reactivation": Row(
        desired(want(1, want_sub(11, "active"))),
        world(customer(1, sub(11, "suspended"))),
        actions=[("a1", "reactivate_subscription", 1, 11, [])],
    ),
    "a deleted subscription is never changed": Row(
        desired(want(1, want_sub(11, "active"))),
        world(customer(1, sub(11, "deleted"))),
        warnings=["only active and suspended"],
    ),
    "a listed subscription that does not exist is a warning": Row(
        desired(want(1, want_sub(11))),
        world(customer(1)),
        warnings=["does not exist"],
    ),
    "names differing only in case and spaces are equal": Row(
        desired(want(1, name="Contoso  LTD")),
        world(customer(1, name="contoso ltd")),
    ),
    "a different name is reported, not changed": Row(
        desired(want(1, name="Contoso")),
        world(customer(1, name="Fabrikam")),
        warnings=["name is 'Contoso' in the specs but 'Fabrikam'"],
    ),
    "destructive actions are listed first": Row(
        desired(KEEP, want(2, want_sub(21, quantity=3)), want(3, want_sub(31, "suspended"))),
        world(KEPT, customer(1, sub(11)), customer(2, sub(21)), customer(3, sub(31))),
        records(managed=(1, 2, 3)),
        actions=[
            ("a1", "suspend_subscription", 1, 11, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
            ("a3", "suspend_subscription", 3, 31, []),
            ("a4", "update_quantity", 2, 21, []),
        ],
    ),
    "matching state plans nothing": Row(
        desired(want(1, want_sub(11, quantity=2))),
        world(customer(1, sub(11, quantity=2))),
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_planning_rule(row: Row) -> None:
    result = plan(row.desired, row.current, row.records)  # type: ignore[arg-type]
    assert as_tuples(result) == row.actions
    assert [
        (
            b.type,
            int(b.customer_id[-12:]),
            int(b.subscription_id[-12:]) if b.subscription_id else None,
        )
        for b in result.blocked
    ] == row.blocked
    assert [
        (int(u.customer_id[-12:]), int(u.subscription_id[-12:]) if u.subscription_id else None)
        for u in result.unmanaged
    ] == row.unmanaged
    assert len(result.warnings) == len(row.warnings), result.warnings
    for fragment, warning in zip(row.warnings, result.warnings, strict=True):
        assert fragment in warning
    assert result.has_changes == bool(row.actions)


def test_ids_compare_case_insensitively() -> None:
    upper = world(customer(1, sub(11, quantity=3))).model_dump()
    upper["customers"][0]["id"] = gid(1).upper()
    upper["customers"][0]["subscriptions"][0]["id"] = gid(11).upper()
    current = type(world()).model_validate(upper)
    result = plan(desired(want(1, want_sub(11, quantity=3))), current, records(managed=(1,)))
    assert not result.has_changes and not result.unmanaged


def test_plan_is_deterministic_and_fingerprint_ignores_listing_order() -> None:
    a = world(customer(1, sub(11), sub(12)), customer(2))
    b = world(customer(2), customer(1, sub(12), sub(11)))
    spec = desired(want(1, want_sub(11, "suspended")), want(2))
    assert plan(spec, a, Records()) == plan(spec, b, Records())


def test_fingerprint_changes_with_state_and_records() -> None:
    spec = desired(want(1))
    base = plan(spec, world(customer(1)), Records()).fingerprint
    assert plan(spec, world(customer(1, sub(11))), Records()).fingerprint != base
    assert plan(spec, world(customer(1)), records(managed=(1,))).fingerprint != base


def test_empty_specs_are_refused_unless_mass_removal_is_allowed() -> None:
    with pytest.raises(PlanError, match="no customers"):
        check_not_empty(desired(), allow_mass_removal=False)
    check_not_empty(desired(), allow_mass_removal=True)


def test_removal_limit() -> None:
    current = world(KEPT, customer(1), customer(2))
    result = plan(desired(KEEP), current, records(managed=(1, 2)))
    with pytest.raises(PlanError, match="more than --max-removals 1"):
        check_removal_limit(result, max_removals=1, allow_mass_removal=False)
    check_removal_limit(result, max_removals=2, allow_mass_removal=False)
    check_removal_limit(result, max_removals=0, allow_mass_removal=True)


def test_specs_for_another_partner_are_refused() -> None:
    spec = desired(want(1))
    spec = type(spec)(partner=PartnerSpec(id=gid(777)), customers=spec.customers)
    with pytest.raises(PlanError, match="specs are for partner"):
        check_partner(spec, world(), Records())


def test_records_of_another_partner_are_refused() -> None:
    with pytest.raises(PlanError, match="records are for partner"):
        check_partner(desired(want(1)), world(), Records(partner_id=gid(777)))


def test_targeting_keeps_only_the_chosen_customers_and_says_the_plan_is_partial() -> None:
    from controller.targeting import Targets, target

    current = world(KEPT, customer(1, sub(11)), customer(2, sub(21)), customer(3))
    whole = plan(desired(KEEP), current, records(managed=(1, 2)))
    only = target(whole, Targets(only=frozenset({gid(2)})))
    assert [(a.id, a.customer_id) for a in only.actions] == [("a3", gid(2)), ("a4", gid(2))]
    assert only.actions[1].depends_on == ("a3",)  # ids and dependencies as in the whole plan
    assert only.unmanaged == () and "partial (only" in only.warnings[-1]
    rest = target(whole, Targets(exclude=frozenset({gid(2)})))
    assert {a.customer_id for a in rest.actions} == {gid(1)}
    assert [u.customer_id for u in rest.unmanaged] == [gid(3)]
    assert target(whole, Targets()) is whole


def test_drift_is_told_apart_from_changes_made_in_the_specs() -> None:
    from controller.drift import attribute_drift, spec_snapshot

    at_last_apply = desired(
        want(1, want_sub(11, quantity=5), want_sub(12, quantity=2)), want(2, want_sub(21))
    )
    applied = spec_snapshot(at_last_apply)
    now = desired(
        want(1, want_sub(11, quantity=6), want_sub(12, quantity=2)), want(2, want_sub(21)), want(3)
    )
    current = world(
        customer(1, sub(11, quantity=5), sub(12, quantity=9)),  # 12 changed in the portal
        customer(2, sub(21), relationship="none"),  # ended the relationship from its side
    )
    made = attribute_drift(plan(now, current, records(managed=(1, 2))), now, applied)
    by_target = {(a.customer_id[-2:], (a.subscription_id or "")[-2:]): a for a in made.actions}
    assert not by_target[("01", "11")].drift  # the specs changed: 5 -> 6
    assert by_target[("01", "12")].drift and by_target[("01", "12")].reason.startswith("drift:")
    assert by_target[("02", "")].drift  # a request for a customer the specs did not drop
    assert not by_target[("03", "")].drift  # a new customer in the specs
    assert attribute_drift(made, now, {}) is made  # never applied: nothing to compare with
    assert "drift" not in made.actions[0].model_dump(by_alias=True)  # not a JSON plan field
