"""The shipped example plans what the README says it plans, and the README's walkthrough works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Runner
from helpers import world_document

CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"
FABRIKAM = "fe1536a5-06d0-4e96-8fa9-720c4ec76466"
NORTHWIND = "3b9c8398-289a-4913-861d-2dafb70bf03c"
TAILSPIN = "8ca21255-597d-46ee-8895-0c95529977fd"
LITWARE = "e63a6417-ee7e-4d3a-92d3-a24a3c6a1186"
LITWARE_E3 = "93909124-e58f-4c11-8226-2c98f6f26972"
LITWARE_AZURE = "889fb02a-7741-4e78-81f7-9c0a6e78289f"


def blocked_reactivations(reconcile: Runner) -> int:
    """Partner Center shows no subscriptions of a customer without a relationship (its calls
    answer 403), so only the local world can list Northwind's reactivations as blocked."""
    return 0 if getattr(reconcile, "provider", "local") == "partner-center" else 2


def test_example_plans_every_kind_of_action(reconcile: Runner) -> None:
    result = reconcile("--dry-run", "--output", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    steps = [(a["id"], a["type"], a["customer_id"], a["depends_on"]) for a in plan["actions"]]
    assert steps == [
        ("a1", "suspend_subscription", FABRIKAM, []),
        ("a2", "suspend_subscription", FABRIKAM, []),
        ("a3", "remove_relationship", FABRIKAM, ["a1", "a2"]),
        ("a4", "suspend_subscription", CONTOSO, []),
        ("a5", "update_quantity", CONTOSO, []),
        ("a6", "request_relationship", NORTHWIND, []),
    ]
    assert (plan["actions"][4]["from"], plan["actions"][4]["to"]) == (25, 30)
    assert [(b["type"], b["customer_id"], b["reason"]) for b in plan["blocked"]] == [
        ("reactivate_subscription", NORTHWIND, "awaiting_acceptance")
    ] * blocked_reactivations(reconcile)
    assert plan["unmanaged"] == [{"customer_id": TAILSPIN, "subscription_id": None}]
    assert plan["warnings"] == []
    assert plan["summary"] == {
        "suspend_subscription": 3,
        "reactivate_subscription": 0,
        "update_quantity": 1,
        "cancel_subscription": 0,
        "set_auto_renew": 0,
        "remove_relationship": 1,
        "request_relationship": 1,
    }


# What the walkthrough shows, in each language of the catalogues.
SAYS = {
    "en": {
        "plan": "Plan: 1 to remove, 3 to suspend, 1 to update, 0 to reactivate, 1 to request",
        "applied": "applied 6 of 6",
        "pending": "Pending relationship requests",
        "drift": "Drift",
        "converged": "Converged: a fresh plan has no changes.",
    },
    "zh_TW": {
        "plan": "計畫：移除 1 個, 暫停 3 個, 更新 1 個, 重新啟用 0 個, 要求建立關係 1 個",
        "applied": "已套用 6 個，共 6 個",
        "pending": "待接受的關係要求",
        "drift": "漂移",
        "converged": "已收斂：重新產生的計畫沒有變更。",
    },
}


@pytest.mark.parametrize("language", SAYS, ids=["en", "zh-TW"])
def test_readme_walkthrough(
    example: Path, reconcile: Runner, language: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGUAGE", language)
    says = SAYS[language]
    text = reconcile("--dry-run")
    assert text.returncode == 0
    assert says["plan"] in text.stdout

    applied = reconcile()
    assert applied.returncode == 0, applied.stderr
    assert says["applied"] in applied.stdout
    assert says["converged"] in applied.stdout

    assert reconcile("--dry-run", "--detailed-exitcode").returncode == 0

    status = reconcile("status")
    assert says["pending"] in status.stdout
    assert "Northwind Traders" in status.stdout
    assert "partnerId=0e1ef465-9299-45ce-a98c-57c49bded0ce&msppId=0&DAP=false" in status.stdout

    assert reconcile("world", "accept", NORTHWIND).returncode == 0
    after = reconcile("--dry-run", "--output", "json")
    actions = json.loads(after.stdout)["actions"]
    assert [a["type"] for a in actions] == ["reactivate_subscription"] * 2
    # The second half of the re-add, not drift: nothing changed outside the specs.
    assert not any(a["reason"].startswith("drift:") for a in actions)
    assert says["drift"] not in reconcile("--dry-run").stdout
    assert reconcile().returncode == 0
    assert reconcile("--dry-run", "--detailed-exitcode").returncode == 0

    world = world_document(example / "state" / "world.json")
    northwind = next(c for c in world["customers"] if c["id"] == NORTHWIND)
    assert northwind["relationship"] == "reseller"
    assert {s["status"] for s in northwind["subscriptions"]} == {"active"}
    fabrikam = next(c for c in world["customers"] if c["id"] == FABRIKAM)
    assert fabrikam["relationship"] == "none"
    assert {s["status"] for s in fabrikam["subscriptions"]} == {"suspended"}


def test_readme_offboarding_walkthrough(example: Path, reconcile: Runner) -> None:
    """README, "Offboarding a customer today": Litware (new commerce and an Azure plan) leaves,
    through the local world and through the Partner Center client talking to the emulator."""
    (example / "specs" / "customers" / "litware.yaml").unlink()
    planned = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    litware = [
        (a["type"], a["subscription_id"], a["from"], a["to"])
        for a in planned["actions"]
        if a["customer_id"] == LITWARE
    ]
    assert litware == [
        ("suspend_subscription", LITWARE_AZURE, "active", "suspended"),
        ("set_auto_renew", LITWARE_E3, True, False),
    ]
    assert {
        "type": "remove_relationship",
        "customer_id": LITWARE,
        "subscription_id": LITWARE_E3,
        "reason": "awaiting_term_end",
        "until": "2027-03-01",
    } in planned["blocked"]
    text = reconcile("--dry-run").stdout
    assert (
        "remove relationship of Litware Inc (e63a6417-ee7e-4d3a-92d3-a24a3c6a1186): waits for "
        "Microsoft 365 E3 (93909124-e58f-4c11-8226-2c98f6f26972) (new commerce) to end at its "
        "term end 2027-03-01; auto-renewal is being turned off"
    ) in text
    assert (
        "set auto-renewal Microsoft 365 E3 (93909124-e58f-4c11-8226-2c98f6f26972): on -> off"
        in text
    )

    assert reconcile().returncode == 0
    again = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    assert not [a for a in again["actions"] if a["customer_id"] == LITWARE]
    assert [b["reason"] for b in again["blocked"] if b["customer_id"] == LITWARE] == [
        "awaiting_term_end"
    ]
    assert "auto-renewal is off" in reconcile("--dry-run").stdout

    advanced = reconcile("world", "advance", "90d")
    assert advanced.returncode == 0, advanced.stderr
    assert "2027-03-01T09:00:00Z" in advanced.stdout
    assert "Microsoft 365 E3 (Litware Inc): active -> expired" in advanced.stdout
    last = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    assert [(a["type"], a["customer_id"]) for a in last["actions"]] == [
        ("remove_relationship", LITWARE)
    ]
    assert reconcile().returncode == 0
    world = world_document(example / "state" / "world.json")
    litware_after = next(c for c in world["customers"] if c["id"] == LITWARE)
    assert litware_after["relationship"] == "none"
    assert world["now"] == "2027-03-01T09:00:00Z"
