"""Renderers: the JSON document's exact shape, text like Terraform's, markdown for PRs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from helpers import customer, desired, gid, records, sub, want, want_sub, world

from controller.document import ActionResult
from controller.plan import plan
from controller.render import Outcome, markdown, text
from controller.render import json as json_render

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

CURRENT = world(
    customer(1, sub(11), sub(12), name="Fabrikam"),
    customer(2, sub(21, quantity=2), name="Contoso"),
    customer(3, sub(31, "suspended"), relationship="none", name="Northwind"),
    customer(4, name="Tailspin"),
)
SPEC = desired(
    want(2, want_sub(21, quantity=5), name="Contoso"), want(3, want_sub(31), name="Northwind")
)
PLAN = plan(SPEC, CURRENT, records(managed=(1, 2)))


def test_json_document_has_exactly_the_contract_fields() -> None:
    document = json.loads(json_render.render_plan(PLAN))
    assert list(document) == [
        "format_version",
        "has_changes",
        "fingerprint",
        "summary",
        "actions",
        "blocked",
        "unmanaged",
        "warnings",
    ]
    assert list(document["actions"][0]) == [
        "id",
        "type",
        "customer_id",
        "subscription_id",
        "depends_on",
        "from",
        "to",
        "reason",
    ]
    assert list(document["blocked"][0]) == ["type", "customer_id", "subscription_id", "reason"]
    assert len(document["fingerprint"]) == 64


def test_json_outcome_adds_results_and_reports_leftovers_as_warnings() -> None:
    results = tuple(ActionResult(id=a.id, status="applied") for a in PLAN.actions)
    document = json.loads(json_render.render_outcome(Outcome(PLAN, results, PLAN)))
    assert [r["id"] for r in document["results"]] == [a.id for a in PLAN.actions]
    assert sum(w.startswith("left after apply") for w in document["warnings"]) == len(PLAN.actions)


def test_text_lists_destructive_actions_first_and_ends_with_a_summary() -> None:
    rendered = text.render_plan(PLAN)
    assert rendered.index("remove relationship") < rendered.index("update quantity")
    assert rendered.index("update quantity") < rendered.index("request relationship")
    assert rendered.rstrip().splitlines()[-1] == (
        "Plan: 1 to remove, 2 to suspend, 1 to update, 0 to reactivate, 1 to request; "
        "1 blocked, 1 unmanaged."
    )
    assert "Fabrikam" in rendered and "\x1b[" not in rendered


def test_text_is_coloured_only_when_asked() -> None:
    assert "\x1b[" in text.render_plan(PLAN, colour=True)


def test_empty_plan_says_no_changes() -> None:
    quiet = plan(desired(want(4, name="Tailspin")), CURRENT, records(managed=(4,)))
    assert text.render_plan(quiet).startswith("No changes.")
    assert "**No changes. Partner Center matches the specs.**" in markdown.render_plan(quiet)


def test_markdown_puts_removals_first_and_collapses_long_lists() -> None:
    rendered = markdown.render_plan(PLAN)
    assert rendered.index("Removals and suspensions (3)") < rendered.index("Other changes (2)")
    assert "| ⚠️ remove relationship | 1 |" in rendered
    assert "<summary>Blocked (1)</summary>" in rendered
    assert "waits for the customer to accept the relationship invitation" in rendered
    assert markdown.render_plan(PLAN) == rendered  # stable, so a bot can update one comment
    many = world(customer(99), *(customer(c, sub(c * 100)) for c in range(1, 8)))
    long_plan = plan(desired(want(99)), many, records(managed=tuple(range(1, 8))))
    assert "<summary>⚠️ Removals and suspensions (14)</summary>" in markdown.render_plan(long_plan)


def test_rendering_a_40000_action_plan_is_linear_and_fast() -> None:
    """Per-customer filtering made text rendering quadratic (40,000 actions took 254 s), and
    progress lines copied every name per action. The plan, outcome and progress renderers of
    bench/render_scale.py, all at once."""
    from render_scale import removal_plan, renderers

    big = removal_plan(40_000)
    started = time.perf_counter()
    for render in renderers(big).values():
        render()
    # Linear rendering takes about 2 s on the project's 2-core machine (bench/render_scale.py);
    # the quadratic one took minutes. Very generous, so a busy CI machine cannot fail it.
    assert time.perf_counter() - started < 20
    assert text.render_plan(big).count("\nCustomer ") == 20_000


def test_a_saved_plan_with_the_new_commerce_fields_reads_back_the_same(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from controller.document import read_plan_file
    from controller.plan import Action, Blocked, Plan

    saved = Plan(
        fingerprint="f" * 64,
        actions=(
            Action(
                id="a1",
                type="set_auto_renew",
                customer_id=gid(1),
                subscription_id=gid(11),
                from_=True,
                to=False,
                reason="customer removed from specs",
            ),
        ),
        blocked=(
            Blocked(
                type="remove_relationship",
                customer_id=gid(1),
                subscription_id=gid(11),
                reason="awaiting_term_end",
                until=date(2027, 3, 1),
            ),
        ),
    )
    path = tmp_path / "plan.json"
    path.write_text(json_render.render_plan(saved))
    document = json.loads(path.read_text())
    assert document["blocked"][0]["until"] == "2027-03-01"
    assert (document["actions"][0]["from"], document["actions"][0]["to"]) == (True, False)
    assert document["summary"]["set_auto_renew"] == 1
    again = read_plan_file(path)
    assert again.actions == saved.actions and again.blocked == saved.blocked
    assert again.actions[0].to is False  # a boolean, not 0
