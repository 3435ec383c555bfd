"""GitOps integration: the example CI workflows and pre-commit hook are valid and do what the
README says; the pull-request markdown matches a reviewed snapshot."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import ROOT
from helpers import run


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def commands(steps: list[dict]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps)


def test_github_workflow_plans_pull_requests_and_applies_the_reviewed_plan() -> None:
    workflow = load(ROOT / "examples" / "github" / "reconcile.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push"}
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    assert "pull_request" in plan["if"] and "push" in apply["if"]
    planned = commands(plan["steps"])
    assert "reconcile validate" in planned
    assert "--dry-run --detailed-exitcode" in planned and "--plan-out plan.json" in planned
    assert "--output markdown" in planned
    uses = [step.get("uses", "") for step in plan["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    comment = next(s for s in plan["steps"] if "comment" in s.get("name", "").lower())
    assert "<!-- partner-reconciler plan -->" in comment["with"]["script"]  # one comment, updated
    applied = commands(apply["steps"])
    assert "--plan plan.json" in applied and "--dry-run" not in applied
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in apply["steps"])
    assert "PARTNER_CENTER_CLIENT_SECRET" in workflow["env"]  # from secrets, never from specs
    assert "${{ secrets." in workflow["env"]["PARTNER_CENTER_CLIENT_SECRET"]


def test_gitlab_pipeline_plans_then_applies_the_plan_after_approval() -> None:
    pipeline = load(ROOT / "examples" / "gitlab" / ".gitlab-ci.yml")
    assert pipeline["stages"] == ["validate", "plan", "apply"]
    assert "reconcile validate" in pipeline["validate"]["script"]
    plan_script = "\n".join(pipeline["plan"]["script"])
    assert "--dry-run --detailed-exitcode --plan-out plan.json" in plan_script
    assert "plan.json" in pipeline["plan"]["artifacts"]["paths"]
    apply = pipeline["apply"]
    assert apply["needs"] == ["plan"] and apply["rules"][0]["when"] == "manual"
    assert any("--plan plan.json" in line for line in apply["script"])


def test_pre_commit_hook_runs_validate() -> None:
    [hook] = load(ROOT / ".pre-commit-hooks.yaml")
    assert hook["id"] == "reconcile-validate" and hook["entry"] == "reconcile validate"
    assert hook["language"] == "python" and hook["pass_filenames"] is False


def test_markdown_plan_matches_the_reviewed_snapshot(example: Path) -> None:
    result = run("--dry-run", "--output", "markdown", cwd=example)
    assert result.returncode == 0
    snapshot = (ROOT / "tests" / "snapshots" / "example-plan.md").read_text()
    assert result.stdout == snapshot
    assert run("--dry-run", "--output", "markdown", cwd=example).stdout == snapshot  # stable
