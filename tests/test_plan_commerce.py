"""The planner as a table for contract section 7 (new commerce, Azure plan, reservations): one
named row per rule. The observation time is the world's ``now`` (helpers.NOW)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pytest
from helpers import (
    DAY,
    NOW,
    as_tuples,
    azure_plan,
    customer,
    desired,
    gid,
    nce,
    records,
    sub,
    want,
    want_nce,
    want_sub,
    world,
)

from controller.current import CurrentState
from controller.errors import PlanError
from controller.plan import Plan, check_cancellation_limit, plan
from controller.records import Records
from controller.render import explain_blocked
from controller.spec import Desired

KEEP = want(99)
KEPT = customer(99)
IN_WINDOW = NOW + 2 * DAY
TERM_END = NOW + 300 * DAY  # nce()'s default term end
TERM_DAY = TERM_END.date()


@dataclass
class Row:
    desired: Desired
    current: CurrentState
    records: Records = field(default_factory=lambda: records(managed=(1,)))
    actions: list[tuple[object, ...]] = field(default_factory=list)
    # (type, subscription n or None, reason, until)
    blocked: list[tuple[str, int | None, str, date | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def removed(*subscriptions, offboarding: str = "end_at_term", reservations: int = 0) -> dict:  # type: ignore[no-untyped-def]
    """Customer 1, managed, no longer in the specs."""
    return {
        "desired": desired(KEEP, offboarding=offboarding),
        "current": world(KEPT, customer(1, *subscriptions, reservations=reservations)),
    }


ROWS = {
    "removal: legacy active is suspended, then the relationship removed": Row(
        **removed(sub(11), sub(12, "suspended")),
        actions=[
            ("a1", "suspend_subscription", 1, 11, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
        ],
    ),
    "removal: NCE past its window: auto-renewal off, the removal waits for the term end": Row(
        **removed(nce(11), sub(12)),
        actions=[
            ("a1", "set_auto_renew", 1, 11, []),
            ("a2", "suspend_subscription", 1, 12, []),
        ],
        blocked=[("remove_relationship", 11, "awaiting_term_end", TERM_DAY)],
    ),
    "removal: NCE with auto-renewal already off only waits": Row(
        **removed(nce(11, auto_renew=False)),
        blocked=[("remove_relationship", 11, "awaiting_term_end", TERM_DAY)],
    ),
    "removal: a suspended NCE still blocks (it is still billed)": Row(
        **removed(nce(11, "suspended", auto_renew=False)),
        blocked=[("remove_relationship", 11, "awaiting_term_end", TERM_DAY)],
    ),
    "removal: waits until the latest term end": Row(
        **removed(nce(11, term_end=NOW + 10 * DAY), nce(12, term_end=NOW + 40 * DAY)),
        actions=[("a1", "set_auto_renew", 1, 11, []), ("a2", "set_auto_renew", 1, 12, [])],
        blocked=[
            ("remove_relationship", 12, "awaiting_term_end", (NOW + 40 * DAY).date()),
        ],
    ),
    "removal: end_at_term never cancels, even inside the window": Row(
        **removed(nce(11, cancel_until=IN_WINDOW)),
        actions=[("a1", "set_auto_renew", 1, 11, [])],
        blocked=[("remove_relationship", 11, "awaiting_term_end", TERM_DAY)],
    ),
    "removal: cancel_in_window cancels inside the window, then removes": Row(
        **removed(nce(11, cancel_until=IN_WINDOW), offboarding="cancel_in_window"),
        actions=[
            ("a1", "cancel_subscription", 1, 11, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
        ],
    ),
    "removal: cancel_in_window past the window: auto-renewal off, and wait": Row(
        **removed(nce(11, cancel_until=NOW - DAY), offboarding="cancel_in_window"),
        actions=[("a1", "set_auto_renew", 1, 11, [])],
        blocked=[("remove_relationship", 11, "awaiting_term_end", TERM_DAY)],
    ),
    "removal: a customer's own offboarding, remembered, beats the partner's": Row(
        **removed(nce(11, cancel_until=IN_WINDOW)),
        records=Records(managed=(gid(1),), offboarding={gid(1): "cancel_in_window"}),
        actions=[
            ("a1", "cancel_subscription", 1, 11, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
        ],
    ),
    "removal: ended NCE subscriptions do not block": Row(
        **removed(nce(11, "expired"), nce(12, "deleted")),
        actions=[("a1", "remove_relationship", 1, None, [])],
    ),
    "removal: an Azure plan without active Azure subscriptions is suspended": Row(
        **removed(azure_plan(11)),
        actions=[
            ("a1", "suspend_subscription", 1, 11, []),
            ("a2", "remove_relationship", 1, None, ["a1"]),
        ],
    ),
    "removal: an Azure plan with active Azure subscriptions blocks (by hand)": Row(
        **removed(azure_plan(11, active=2), sub(12)),
        actions=[("a1", "suspend_subscription", 1, 12, [])],
        blocked=[("remove_relationship", 11, "azure_subscriptions_active", None)],
    ),
    "removal: open reservations block (Azure support)": Row(
        **removed(sub(11), reservations=1),
        actions=[("a1", "suspend_subscription", 1, 11, [])],
        blocked=[("remove_relationship", None, "azure_reservations_open", None)],
    ),
    "removal: every blocker is listed, each step that can be made now is made": Row(
        **removed(nce(11), azure_plan(12, active=1), reservations=2),
        actions=[("a1", "set_auto_renew", 1, 11, [])],
        blocked=[
            ("remove_relationship", 11, "awaiting_term_end", TERM_DAY),
            ("remove_relationship", 12, "azure_subscriptions_active", None),
            ("remove_relationship", None, "azure_reservations_open", None),
        ],
    ),
    "removal: add-ons are never changed; they end with their base": Row(
        **removed(
            sub(11),
            sub(12).model_copy(update={"parent_id": gid(11)}),
            nce(13, cancel_until=IN_WINDOW),
            nce(14, cancel_until=IN_WINDOW, parent=13),
            offboarding="cancel_in_window",
        ),
        actions=[
            ("a1", "suspend_subscription", 1, 11, []),
            ("a2", "cancel_subscription", 1, 13, []),
            ("a3", "remove_relationship", 1, None, ["a1", "a2"]),
        ],
    ),
    "removal: an NCE add-on of a base left running waits with it": Row(
        **removed(nce(13, auto_renew=False), nce(14, parent=13, term_end=NOW + 301 * DAY)),
        blocked=[("remove_relationship", 14, "awaiting_term_end", (NOW + 301 * DAY).date())],
    ),
    "specs: status cancelled inside the window cancels": Row(
        desired(want(1, want_nce(11, "cancelled"))),
        world(customer(1, nce(11, cancel_until=IN_WINDOW))),
        actions=[("a1", "cancel_subscription", 1, 11, [])],
    ),
    "specs: status cancelled past the window is blocked (turn auto_renew off instead)": Row(
        desired(want(1, want_nce(11, "cancelled"))),
        world(customer(1, nce(11))),
        blocked=[("cancel_subscription", 11, "cancel_window_closed", TERM_DAY)],
    ),
    "specs: status cancelled is met by an expired subscription": Row(
        desired(want(1, want_nce(11, "cancelled"))),
        world(customer(1, nce(11, "expired"))),
    ),
    "specs: auto_renew is reconciled": Row(
        desired(want(1, want_nce(11, auto_renew=False), want_nce(12, auto_renew=True))),
        world(customer(1, nce(11, auto_renew=True), nce(12, auto_renew=True))),
        actions=[("a1", "set_auto_renew", 1, 11, [])],
    ),
    "specs: NCE increases are always allowed": Row(
        desired(want(1, want_nce(11, quantity=12))),
        world(customer(1, nce(11, quantity=10))),
        actions=[("a1", "update_quantity", 1, 11, [])],
    ),
    "specs: NCE decrease inside the window within the refundable seats": Row(
        desired(want(1, want_nce(11, quantity=8))),
        world(customer(1, nce(11, quantity=10, refundable=2, cancel_until=IN_WINDOW))),
        actions=[("a1", "update_quantity", 1, 11, [])],
    ),
    "specs: NCE decrease beyond the refundable seats is blocked": Row(
        desired(want(1, want_nce(11, quantity=7))),
        world(customer(1, nce(11, quantity=10, refundable=2, cancel_until=IN_WINDOW))),
        blocked=[("update_quantity", 11, "quantity_decrease_not_refundable", None)],
    ),
    "specs: NCE decrease past the window is blocked": Row(
        desired(want(1, want_nce(11, quantity=9))),
        world(customer(1, nce(11, quantity=10, refundable=10))),
        blocked=[("update_quantity", 11, "quantity_decrease_not_refundable", None)],
    ),
    "specs: a suspended NCE is reactivated before its term end": Row(
        desired(want(1, want_nce(11))),
        world(customer(1, nce(11, "suspended", suspended_by="partner"))),
        actions=[("a1", "reactivate_subscription", 1, 11, [])],
    ),
    "specs: auto-renewal goes back on after the reactivation (suspending turned it off)": Row(
        desired(want(1, want_nce(11, auto_renew=True))),
        world(customer(1, nce(11, "suspended", suspended_by="partner", auto_renew=False))),
        actions=[
            ("a1", "reactivate_subscription", 1, 11, []),
            ("a2", "set_auto_renew", 1, 11, ["a1"]),
        ],
    ),
    "specs: a reactivation that leaves auto-renewal off says it will expire": Row(
        desired(want(1, want_nce(11))),
        world(customer(1, nce(11, "suspended", suspended_by="partner", auto_renew=False))),
        actions=[("a1", "reactivate_subscription", 1, 11, [])],
        warnings=["reactivated with auto-renewal off"],
    ),
    "specs: auto_renew true on an NCE that stays suspended is not set (warned)": Row(
        desired(want(1, want_nce(11, "suspended", auto_renew=True))),
        world(customer(1, nce(11, "suspended", suspended_by="partner", auto_renew=False))),
        warnings=["is suspended in the specs"],
    ),
    "specs: suspending an NCE turns its auto-renewal off by itself": Row(
        desired(want(1, want_nce(11, "suspended", auto_renew=False))),
        world(customer(1, nce(11, auto_renew=True))),
        actions=[("a1", "suspend_subscription", 1, 11, [])],
    ),
    "specs: a suspended NCE past its term end is not reactivated": Row(
        desired(want(1, want_nce(11))),
        world(customer(1, nce(11, "suspended", term_end=NOW - DAY))),
        blocked=[("reactivate_subscription", 11, "term_ended", None)],
    ),
    "specs: legacy reactivated within 90 days of its suspension": Row(
        desired(want(1, want_sub(11))),
        world(
            customer(1, sub(11, "suspended").model_copy(update={"suspended_at": NOW - 89 * DAY}))
        ),
        actions=[("a1", "reactivate_subscription", 1, 11, [])],
    ),
    "specs: legacy suspended more than 90 days ago is not reactivated": Row(
        desired(want(1, want_sub(11))),
        world(
            customer(1, sub(11, "suspended").model_copy(update={"suspended_at": NOW - 91 * DAY}))
        ),
        blocked=[("reactivate_subscription", 11, "reactivation_period_over", None)],
    ),
    "specs: what Microsoft suspended is never reactivated (reported)": Row(
        desired(want(1, want_sub(11), want_nce(12))),
        world(
            customer(
                1,
                sub(11, "suspended").model_copy(update={"suspended_by": "microsoft"}),
                nce(12, "suspended", suspended_by="microsoft"),
            )
        ),
        blocked=[
            ("reactivate_subscription", 11, "suspended_by_microsoft", None),
            ("reactivate_subscription", 12, "suspended_by_microsoft", None),
        ],
    ),
    "specs: an Azure plan with active Azure subscriptions is not suspended": Row(
        desired(want(1, want_nce(11, "suspended", commerce="azure_plan"))),
        world(customer(1, azure_plan(11, active=1))),
        blocked=[("suspend_subscription", 11, "azure_subscriptions_active", None)],
    ),
    "specs: an add-on's status and renewal are never changed on their own": Row(
        desired(want(1, want_nce(11), want_nce(12, "suspended", auto_renew=False))),
        world(customer(1, nce(11), nce(12, parent=11))),
        warnings=["is an add-on of"],
    ),
    "specs: an add-on's quantity changes before its base is suspended (it ends with it)": Row(
        desired(want(1, want_sub(11, "suspended"), want_sub(12, quantity=2))),
        world(customer(1, sub(11), sub(12).model_copy(update={"parent_id": gid(11)}))),
        actions=[
            ("a1", "update_quantity", 1, 12, []),
            ("a2", "suspend_subscription", 1, 11, ["a1"]),
        ],
    ),
    "specs: a kind that differs from Partner Center's changes nothing": Row(
        desired(want(1, want_nce(11, "cancelled"))),
        world(customer(1, sub(11))),
        warnings=["commerce: nce in the specs but legacy in Partner Center"],
    ),
    "specs: an advisor customer gets no request, and a warning saying what to do": Row(
        desired(want(1), want(2)),
        world(customer(1, relationship="advisor"), customer(2, relationship="syndication")),
        records=Records(),
        warnings=["advisor relationship", "syndication relationship"],
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_section_7_planning_rule(row: Row) -> None:
    result = plan(row.desired, row.current, row.records)
    assert as_tuples(result) == row.actions
    assert [
        (
            b.type,
            int(b.subscription_id[-12:]) if b.subscription_id else None,
            b.reason,
            b.until,
        )
        for b in result.blocked
    ] == row.blocked
    assert len(result.warnings) == len(row.warnings), result.warnings
    for fragment, warning in zip(row.warnings, result.warnings, strict=True):
        assert fragment in warning
    for blocked in result.blocked:  # every blocked item explains itself to a person
        assert blocked.reason not in explain_blocked(blocked, result)


def test_a_later_run_removes_once_the_blockers_are_gone() -> None:
    spec = desired(KEEP)
    before = world(KEPT, customer(1, nce(11, auto_renew=False), reservations=1))
    assert not any(
        a.type == "remove_relationship" for a in plan(spec, before, records((1,))).actions
    )
    after = world(KEPT, customer(1, nce(11, "expired")))
    assert as_tuples(plan(spec, after, records((1,)))) == [
        ("a1", "remove_relationship", 1, None, [])
    ]


def test_the_observation_time_is_an_input_not_the_clock() -> None:
    spec = desired(KEEP, offboarding="cancel_in_window")
    current = world(KEPT, customer(1, nce(11, cancel_until=IN_WINDOW)))
    inside = plan(spec, current, records((1,)))
    outside = plan(spec, current.at(IN_WINDOW + DAY), records((1,)))
    assert [a.type for a in inside.actions] == ["cancel_subscription", "remove_relationship"]
    assert [a.type for a in outside.actions] == ["set_auto_renew"]
    assert inside.fingerprint == outside.fingerprint  # the time is not part of the state


def test_without_an_observation_time_nothing_time_limited_is_planned() -> None:
    spec = desired(KEEP, offboarding="cancel_in_window")
    current = world(KEPT, customer(1, nce(11, cancel_until=IN_WINDOW)), now=None)
    assert [a.type for a in plan(spec, current, records((1,))).actions] == ["set_auto_renew"]


def _cancelling(count: int) -> Plan:
    spec = desired(KEEP, offboarding="cancel_in_window")
    current = world(KEPT, customer(1, *(nce(10 + n, cancel_until=IN_WINDOW) for n in range(count))))
    return plan(spec, current, records((1,)))


def test_cancellations_are_limited_like_removals() -> None:
    check_cancellation_limit(_cancelling(3), max_cancellations=3, allow_mass_removal=False)
    with pytest.raises(PlanError, match="cancels 4 subscriptions, more than --max-cancellations 3"):
        check_cancellation_limit(_cancelling(4), max_cancellations=3, allow_mass_removal=False)
    check_cancellation_limit(_cancelling(4), max_cancellations=3, allow_mass_removal=True)


@pytest.mark.parametrize(
    ("current", "fragments"),
    [
        (
            world(KEPT, customer(1, nce(11, name="Microsoft 365 E3"), name="Contoso")),
            [
                "remove relationship of Contoso",
                "waits for Microsoft 365 E3",
                f"term end {TERM_DAY.isoformat()}",
                "auto-renewal is being turned off",
            ],
        ),
        (
            world(KEPT, customer(1, reservations=1, name="Contoso")),
            ["cancel them through Azure support", "then run again"],
        ),
        (
            world(KEPT, customer(1, azure_plan(11, active=1), name="Contoso")),
            ["active Azure subscriptions under Azure plan", "Azure portal"],
        ),
    ],
    ids=["term end", "reservations", "Azure subscriptions"],
)
def test_blocked_lines_say_what_ends_when_and_what_to_do(current, fragments) -> None:  # type: ignore[no-untyped-def]
    from controller.render import text

    rendered = text.render_plan(plan(desired(KEEP), current, records((1,))))
    for fragment in fragments:
        assert fragment in rendered, rendered


def test_a_customers_own_offboarding_is_remembered_once_its_block_is_deleted() -> None:
    from controller.records import next_records

    current = world(KEPT, customer(1, nce(11, cancel_until=IN_WINDOW)))
    listed = desired(KEEP, want(1).model_copy(update={"offboarding": "cancel_in_window"}))
    remembered = next_records(Records(), listed, current)
    assert remembered.offboarding == {gid(1): "cancel_in_window"}
    result = plan(desired(KEEP), current, remembered)  # its block deleted: removal
    assert [a.type for a in result.actions] == ["cancel_subscription", "remove_relationship"]
    assert next_records(remembered, desired(KEEP, want(1)), current).offboarding == {}
