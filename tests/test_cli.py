"""End-to-end: the real ``reconcile`` command in a temporary directory, for every exit code and
every class of bad input; a refused run leaves ``state/`` byte-for-byte as it was."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import Runner, records_store
from helpers import PARTNER, run, snapshot
from test_example import blocked_reactivations

CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"
CONTOSO_FILE = Path("specs/customers/contoso.yaml")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def assert_clean_failure(result, state_before: dict, example: Path, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr
    assert snapshot(example / "state") == state_before


BAD_INPUTS = {
    "syntax error": (
        lambda p: edit(p, "    name: Contoso Ltd\n", "    name: [Contoso Ltd\n"),
        "specs/customers/contoso.yaml:4: YAML syntax error",
    ),
    "unknown key": (
        lambda p: edit(p, "    domain:", "    colour: red\n    domain:"),
        "specs/customers/contoso.yaml:4: customers[0].colour: unknown key",
    ),
    "bad GUID": (
        lambda p: edit(p, "354ec307-e470-40d2-9563-5fed10cb4044", "354ec307-e470-40d2-9563"),
        "specs/customers/contoso.yaml:6: customers[0].subscriptions[0].id: must be a GUID",
    ),
    "bad status": (
        lambda p: edit(p, "status: suspended ", "status: paused    "),
        "specs/customers/contoso.yaml:13: customers[0].subscriptions[1].status: must be one of",
    ),
    "quantity below 1": (
        lambda p: edit(p, "quantity: 30", "quantity: 0"),
        "specs/customers/contoso.yaml:9: customers[0].subscriptions[0].quantity: "
        "must be >= 1, got 0",
    ),
    "duplicate id across files": (
        lambda p: (p.parent / "copy.yaml").write_text(
            textwrap.dedent(f"""\
                customers:
                  - id: {CONTOSO.upper()}
                    name: Contoso again
            """)
        ),
        "specs/customers/copy.yaml:2: customers[0].id: duplicate customer id "
        f"{CONTOSO}, also in specs/customers/contoso.yaml:2",
    ),
}


@pytest.mark.parametrize(
    "mode", [["--dry-run"], [], ["validate"]], ids=["dry-run", "apply", "validate"]
)
@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_and_changes_nothing(
    example: Path, case: tuple, mode: list[str], reconcile: Runner
) -> None:
    make_bad, message = case
    make_bad(example / CONTOSO_FILE)
    before = snapshot(example / "state")
    result = reconcile(*mode)
    assert_clean_failure(result, before, example, message)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message), (
        result.stderr
    )  # FILE:LINE: first, as the contract says
    assert result.stdout == ""


def test_dry_run_exit_codes(example: Path, reconcile: Runner) -> None:
    before = snapshot(example / "state")
    assert reconcile("--dry-run").returncode == 0
    changes = reconcile("--dry-run", "--detailed-exitcode")
    assert changes.returncode == 2
    assert snapshot(example / "state") == before


def test_blocked_items_alone_are_not_changes(example: Path, reconcile: Runner) -> None:
    assert reconcile().returncode == 0
    result = reconcile("--dry-run", "--detailed-exitcode", "--output", "json")
    assert result.returncode == 0
    plan = json.loads(result.stdout)
    assert (
        plan["has_changes"] is False
        and plan["actions"] == []
        and len(plan["blocked"]) == blocked_reactivations(reconcile)
    )


def test_json_apply_is_one_document_with_results(example: Path, reconcile: Runner) -> None:
    result = reconcile("--output", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["format_version"] == 1
    assert [r["status"] for r in document["results"]] == ["applied"] * 6
    assert [r["id"] for r in document["results"]] == [a["id"] for a in document["actions"]]
    assert all(r["error"] is None for r in document["results"])
    progress = result.stderr.splitlines()
    assert progress[0] == "applying 6 actions"  # not a terminal: one plain line per action
    assert sorted(line.split()[1] for line in progress[1:]) == [f"a{n}" for n in range(1, 7)]


def test_markdown_plan(example: Path, reconcile: Runner) -> None:
    result = reconcile("--dry-run", "--output", "markdown")
    assert result.returncode == 0
    assert result.stdout.startswith("<!-- partner-reconciler plan -->")
    assert "| ⚠️ remove relationship | 1 |" in result.stdout
    assert result.stdout.index("Removals and suspensions") < result.stdout.index("Other changes")
    assert "<details>" in result.stdout


def test_partner_mismatch_is_refused(example: Path, reconcile: Runner) -> None:
    edit(example / "specs/partner.yaml", PARTNER, "11111111-2222-4333-8444-555555555555")
    before = snapshot(example / "state")
    for mode in (["--dry-run"], []):
        assert_clean_failure(reconcile(*mode), before, example, "specs are for partner")


def test_empty_specs_are_refused_unless_mass_removal_is_allowed(
    example: Path, reconcile: Runner
) -> None:
    for path in (example / "specs/customers").iterdir():
        path.unlink()
    before = snapshot(example / "state")
    assert_clean_failure(reconcile("--dry-run"), before, example, "no customers")
    assert_clean_failure(reconcile(), before, example, "no customers")
    allowed = reconcile("--dry-run", "--allow-mass-removal", "--output", "json")
    assert allowed.returncode == 0
    document = json.loads(allowed.stdout)
    removals = document["summary"]["remove_relationship"]
    waiting = [b for b in document["blocked"] if b["type"] == "remove_relationship"]
    # Woodgrove is protected; Litware's removal waits for its new-commerce term to end.
    assert removals + len(waiting) == 3


def test_max_removals_refuses_apply_and_warns_in_dry_run(example: Path, reconcile: Runner) -> None:
    before = snapshot(example / "state")
    assert_clean_failure(
        reconcile("--max-removals", "0"), before, example, "more than --max-removals 0"
    )
    preview = reconcile("--dry-run", "--max-removals", "0", "--output", "json")
    assert any("applying it will be refused" in w for w in json.loads(preview.stdout)["warnings"])
    assert reconcile("--max-removals", "0", "--allow-mass-removal").returncode == 0


def test_saved_plan_is_applied_exactly(example: Path, reconcile: Runner) -> None:
    saved = reconcile("--dry-run", "--plan-out", "plan.json", "--detailed-exitcode")
    assert saved.returncode == 2
    plan = json.loads((example / "plan.json").read_text())
    again = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    # How fresh the observation was (Partner Center) differs between runs; the plan does not.
    assert {**plan, "observation": None} == {**again, "observation": None}
    applied = reconcile("--plan", "plan.json", "--output", "json")
    assert applied.returncode == 0, applied.stderr
    assert [r["id"] for r in json.loads(applied.stdout)["results"]] == [
        a["id"] for a in plan["actions"]
    ]


def test_stale_saved_plan_is_refused(example: Path, reconcile: Runner) -> None:
    assert reconcile("--dry-run", "--plan-out", "plan.json").returncode == 0
    world = example / "state/world.json"
    edit(world, '"quantity": 25', '"quantity": 26')
    before = snapshot(example / "state")
    assert_clean_failure(reconcile("--plan", "plan.json"), before, example, "saved plan is stale")


def test_malformed_saved_plan_is_refused(example: Path, reconcile: Runner) -> None:
    (example / "plan.json").write_text('{"format_version": 1}')
    before = snapshot(example / "state")
    assert_clean_failure(reconcile("--plan", "plan.json"), before, example, "not a saved plan")


def test_a_hand_edited_saved_plan_is_refused_before_acting(
    example: Path, reconcile: Runner
) -> None:
    assert reconcile("--dry-run", "--plan-out", "plan.json").returncode == 0
    plan = json.loads((example / "plan.json").read_text())
    # Its first suspension now names a subscription that does not exist: not a plan made now.
    plan["actions"][0]["subscription_id"] = "99999999-9999-4999-8999-999999999999"
    (example / "plan.json").write_text(json.dumps(plan))
    before = snapshot(example / "state")
    refused = reconcile("--plan", "plan.json", "--output", "json")
    assert_clean_failure(refused, before, example, "action a1 (suspend_subscription for customer")
    assert "is not one a plan made now holds" in refused.stderr


def test_failed_action_exits_1_and_skips_its_dependents(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from controller.cli import main
    from controller.errors import PermanentProviderError
    from controller.providers import rules

    real = rules.suspend_subscription
    failing = "2188ca75-aff8-4811-8b7b-42d473c28c34"  # a1: Fabrikam's first subscription

    def refuse_one(world, customer_id, subscription_id):  # type: ignore[no-untyped-def]
        if subscription_id == failing:
            raise PermanentProviderError("refused for the test", code="test")
        return real(world, customer_id, subscription_id)

    monkeypatch.setattr(rules, "suspend_subscription", refuse_one)
    monkeypatch.chdir(example)
    assert main(["--yes", "--output", "json"]) == 1
    statuses = {r["id"]: r["status"] for r in json.loads(capsys.readouterr().out)["results"]}
    assert statuses["a1"] == "failed" and statuses["a3"] == "skipped"
    assert statuses["a2"] == "applied" and statuses["a6"] == "applied"
    status = run("status", cwd=example)
    assert "failed 1, skipped 1" in status.stdout


def test_usage_errors_exit_1(example: Path, reconcile: Runner) -> None:
    for args in (
        ["--detailed-exitcode"],
        ["--plan-out", "x.json"],
        ["--dry-run", "--plan", "x"],
        ["--parallelism", "0"],
        ["--output", "yaml"],
        ["--no-such-option"],
    ):
        result = reconcile(*args)
        assert result.returncode == 1, args
        assert "Traceback" not in result.stderr


def test_a_second_apply_waits_for_the_lock_then_names_the_holder(
    example: Path, reconcile: Runner
) -> None:
    with records_store(example, reconcile).lock(timeout=0):
        result = reconcile()
        assert result.returncode == 1
        assert f"locked by pid {os.getpid()}" in result.stderr
        assert reconcile("--dry-run").returncode == 0  # a dry run never needs the lock


def test_missing_world_file_is_a_clear_error(example: Path) -> None:
    (example / "state/world.json").unlink()
    result = run("--dry-run", cwd=example)
    assert result.returncode == 1 and "world.json: no such file" in result.stderr


def test_schema_and_validate(example: Path) -> None:
    schema = run("schema", cwd=example)
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"]
    valid = run("validate", cwd=example)
    assert valid.returncode == 0 and "5 files, 4 customers, 8 subscriptions: valid." in valid.stdout


def test_world_accept_of_an_unknown_customer_needs_a_name(example: Path) -> None:
    stranger = "12345678-1234-4234-8234-123456789012"
    assert run("world", "accept", stranger, cwd=example).returncode == 1
    assert run("world", "accept", "not-a-guid", cwd=example).returncode == 1
    assert run("world", "accept", stranger, "--name", "Adatum", cwd=example).returncode == 0
    world = json.loads((example / "state/world.json").read_text())
    assert any(c["id"] == stranger and c["name"] == "Adatum" for c in world["customers"])


def test_world_accept_takes_the_invited_name_from_the_records_wherever_they_are(
    example: Path, reconcile: Runner
) -> None:
    """A customer the world does not know yet: ``world accept`` names it after its pending
    request, read from the store the apply wrote it to (the folder, or PostgreSQL)."""
    stranger = "12345678-1234-4234-8234-123456789012"
    (example / "specs" / "customers" / "adatum.yaml").write_text(
        f"customers:\n  - id: {stranger}\n    name: Adatum Corporation\n"
    )
    assert reconcile("--yes").returncode == 0
    assert stranger in {p.customer_id for p in records_store(example, reconcile).load().pending}
    accepted = reconcile("world", "accept", stranger)
    assert accepted.returncode == 0, accepted.stderr
    world = json.loads((example / "state/world.json").read_text())
    assert {"id": stranger, "name": "Adatum Corporation"}.items() <= next(
        c for c in world["customers"] if c["id"] == stranger
    ).items()


def test_only_and_exclude_target_part_of_the_plan(example: Path, reconcile: Runner) -> None:
    contoso, fabrikam = CONTOSO, "fe1536a5-06d0-4e96-8fa9-720c4ec76466"
    preview = json.loads(reconcile("--dry-run", "--output", "json", "--only", contoso).stdout)
    assert {a["customer_id"] for a in preview["actions"]} == {contoso}
    assert any("this plan is partial" in w for w in preview["warnings"])
    applied = reconcile(
        "--output", "json", "--only", f"{contoso},{fabrikam}", "--exclude", fabrikam
    )
    assert applied.returncode == 0, applied.stderr
    assert {a["customer_id"] for a in json.loads(applied.stdout)["actions"]} == {contoso}
    rest = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    assert {a["customer_id"] for a in rest["actions"]} == {
        fabrikam,
        "3b9c8398-289a-4913-861d-2dafb70bf03c",
    }
    assert reconcile("--dry-run", "--only", "nope").returncode == 1


def test_a_targeted_apply_records_a_baseline_only_for_its_customers(
    example: Path, reconcile: Runner
) -> None:
    fabrikam = "fe1536a5-06d0-4e96-8fa9-720c4ec76466"
    assert reconcile("--only", fabrikam).returncode == 0
    store = records_store(example, reconcile)
    records = store.load()
    assert CONTOSO not in store.load_applied()
    assert CONTOSO in records.managed  # managed before, by the example's records
    assert "3b9c8398-289a-4913-861d-2dafb70bf03c" not in records.managed  # Northwind: untouched
    # Contoso's spec changes, never applied, are still spec changes, not portal drift.
    plan = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    contoso = [a for a in plan["actions"] if a["customer_id"] == CONTOSO]
    assert len(contoso) == 2
    assert not any(a["reason"].startswith("drift:") for a in contoso)


def test_drift_is_reported_apart_from_spec_changes(example: Path, reconcile: Runner) -> None:
    assert reconcile().returncode == 0
    edit(
        example / "state/world.json", '"quantity": 5,', '"quantity": 7,'
    )  # Teams Phone, in the portal
    edit(example / CONTOSO_FILE, "quantity: 30 ", "quantity: 31 ")  # Business Basic, in the specs
    text = reconcile("--dry-run").stdout
    drift_at = text.index("Drift: changed outside the specs")
    assert text.index("30 -> 31") < drift_at
    assert text.index("7 -> 5") > drift_at
    markdown = reconcile("--dry-run", "--output", "markdown").stdout
    assert "🔀 Drift: changed outside the specs, to be undone (1)" in markdown
    reasons = [
        a["reason"]
        for a in json.loads(reconcile("--dry-run", "--output", "json").stdout)["actions"]
    ]
    assert sorted(r.startswith("drift:") for r in reasons) == [False, True]


def test_options_before_a_subcommand_reach_it_or_are_refused(example: Path) -> None:
    northwind = "3b9c8398-289a-4913-861d-2dafb70bf03c"
    assert run("--yes", cwd=example).returncode == 0
    (example / "ops").mkdir()
    (example / "state").rename(example / "ops/state")
    (example / "specs").rename(example / "ops/specs")
    status = run("--state", "ops/state", "status", cwd=example)
    assert status.returncode == 0, status.stderr
    assert "Northwind Traders" in status.stdout
    assert run("--specs", "ops/specs", "validate", cwd=example).returncode == 0
    accepted = run("--state", "ops/state", "world", "accept", northwind, cwd=example)
    assert accepted.returncode == 0, accepted.stderr
    world = json.loads((example / "ops/state/world.json").read_text())
    assert any(c["id"] == northwind and c["relationship"] == "reseller" for c in world["customers"])
    refused = run("--dry-run", "status", "--state", "ops/state", cwd=example)
    assert refused.returncode == 1
    assert "--dry-run does not go with `reconcile status`" in refused.stderr


def test_status_of_a_folder_without_state_is_an_error(example: Path) -> None:
    for args in (["--state", "elsewhere", "status"], ["status", "--state", "elsewhere"]):
        result = run(*args, cwd=example)
        assert result.returncode == 1
        assert "elsewhere: no controller state here" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dry-run", "--interval", "5"], "--interval goes with --watch"),
        (["--dry-run", "--health-file", "alive"], "--health-file goes with --watch"),
        (["--plan-out", "plan.json"], "--plan-out goes with --dry-run"),
        (["--detailed-exitcode"], "--detailed-exitcode goes with --dry-run"),
    ],
    ids=["interval", "health-file", "plan-out", "detailed-exitcode"],
)
def test_options_that_need_another_are_usage_errors(
    example: Path, args: list[str], message: str
) -> None:
    before = snapshot(example / "state")
    result = run(*args, cwd=example)
    assert result.returncode == 1
    assert message in result.stderr
    assert snapshot(example / "state") == before


def test_world_init_and_additions_make_a_world_to_try_things_out(tmp_path: Path) -> None:
    contoso, basic = CONTOSO, "354ec307-e470-40d2-9563-5fed10cb4044"
    init = run("world", "init", "--partner-id", PARTNER, "--name", "Adatum Partner", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    world_file = tmp_path / "state/world.json"
    assert json.loads(world_file.read_text()) == {
        "partner": {"id": PARTNER, "name": "Adatum Partner"},
        "customers": [],
    }
    before = world_file.read_bytes()
    again = run("world", "init", cwd=tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr
    assert world_file.read_bytes() == before
    assert (
        run("world", "add-customer", contoso, "--name", "Contoso Ltd", cwd=tmp_path).returncode == 0
    )
    added = run(
        "world", "add-subscription", contoso, "--id", basic, "--quantity", "25", cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    assert run("world", "add-subscription", contoso, "--id", basic, cwd=tmp_path).returncode == 1
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/contoso.yaml").write_text(
        f"customers:\n  - id: {contoso}\n    name: Contoso Ltd\n    subscriptions:\n"
        f"      - id: {basic}\n        quantity: 30\n"
    )
    plan = json.loads(run("--dry-run", "--output", "json", cwd=tmp_path).stdout)
    assert [(a["type"], a["from"], a["to"]) for a in plan["actions"]] == [
        ("update_quantity", 25, 30)
    ]
    replaced = run("world", "init", "--force", cwd=tmp_path)
    assert replaced.returncode == 0
    assert json.loads(world_file.read_text())["customers"] == []


def test_progress_lines_name_the_customer_and_counts_are_plural_only_when_plural(
    example: Path, reconcile: Runner
) -> None:
    applied = reconcile("--only", CONTOSO)
    assert applied.returncode == 0, applied.stderr
    assert (
        "applied a4 suspend subscription Power BI Pro (2d06ca2d-63ba-4910-8259-c1b22941651d) "
        f"of Contoso Ltd ({CONTOSO})" in applied.stderr
    )
    assert "applying 2 actions" in applied.stderr
    one = example / "one"
    one.mkdir()
    (one / "contoso.yaml").write_text(
        f"customers:\n  - id: {CONTOSO}\n    name: Contoso Ltd\n    subscriptions:\n"
        "      - id: 354ec307-e470-40d2-9563-5fed10cb4044\n"
    )
    valid = run("validate", "--specs", "one", cwd=example)
    assert valid.stdout == "1 file, 1 customer, 1 subscription: valid.\n"
    edit(example / CONTOSO_FILE, "quantity: 30 ", "quantity: 31 ")
    single = reconcile("--only", CONTOSO)
    assert "applying 1 action\n" in single.stderr


def test_no_changes_says_only_what_is_true(example: Path, reconcile: Runner) -> None:
    northwind = "3b9c8398-289a-4913-861d-2dafb70bf03c"
    local = getattr(reconcile, "provider", "local") == "local"
    assert reconcile().returncode == 0
    waiting = reconcile("--dry-run").stdout
    if local:  # Northwind's reactivations wait for it to accept
        assert "No changes; 2 blocked." in waiting
        assert "matches" not in waiting
    assert reconcile("world", "accept", northwind).returncode == 0
    assert reconcile().returncode == 0
    matching = reconcile("--dry-run").stdout
    if local:
        assert "No changes. The local world matches the specs." in matching
    else:
        assert "No changes. Partner Center matches the specs." in matching
    markdown = reconcile("--dry-run", "--output", "markdown").stdout
    assert "matches the specs.**" in markdown
    edit(
        example / CONTOSO_FILE,
        "354ec307-e470-40d2-9563-5fed10cb4044",
        "354ec307-e470-40d2-9563-5fed10cb4045",  # a typo: a subscription that does not exist
    )
    typo = reconcile("--dry-run").stdout
    assert "No changes; 1 warning." in typo
    assert "matches" not in typo
    assert "**No changes; 1 warning.**" in reconcile("--dry-run", "--output", "markdown").stdout
