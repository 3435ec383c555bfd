"""GitOps integration: the example CI workflows and pre-commit hook are valid and do what the
README says (each workflow's steps run in order, as scripts, against the emulator and a
PostgreSQL database); the pull-request markdown matches a reviewed snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, TOKEN, start_emulator
from helpers import RECONCILE, run

from controller.emulator import Knobs

GITHUB = ROOT / "examples" / "github" / "reconcile.yml"
GITLAB = ROOT / "examples" / "gitlab" / ".gitlab-ci.yml"
CONTOSO_BASIC = "354ec307-e470-40d2-9563-5fed10cb4044"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def commands(steps: list[dict]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps)


def secrets_in(value: object) -> bool:
    return "${{ secrets." in json.dumps(value) or "GITLAB_API_TOKEN" in json.dumps(value)


def test_github_workflow_shape() -> None:
    workflow = load(GITHUB)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push", "workflow_dispatch", "schedule"}
    jobs = workflow["jobs"]
    assert set(jobs) == {"validate", "plan", "apply", "resync"}
    # Nightly: the whole tenant read into the observation cache; no change, no apply secrets.
    assert jobs["resync"]["if"] == "github.event_name == 'schedule'"
    assert "--refresh full --dry-run" in commands(jobs["resync"]["steps"])
    assert jobs["resync"]["environment"] == "partner-center-plan"
    assert all("schedule" not in jobs[j]["if"] for j in ("validate", "plan", "apply"))
    assert workflow["permissions"]["contents"] == "read"  # nothing is pushed back
    assert "git+https://" in workflow["env"]["RECONCILER"]  # installed from the repository
    assert not secrets_in(workflow["env"]) and not secrets_in(jobs["validate"])
    # Pull requests from forks: validate only.
    assert "head.repo.full_name == github.repository" in jobs["plan"]["if"]
    assert jobs["plan"]["environment"] == "partner-center-plan"
    assert jobs["apply"]["environment"] == "partner-center"
    assert secrets_in(jobs["apply"]["env"])
    everything = json.dumps(workflow)
    assert "git push" not in everything and "git commit" not in everything
    assert "RECONCILE_STATE_URL" in jobs["apply"]["env"]
    applied = commands(jobs["apply"]["steps"])
    assert "--plan plan.json --yes" in applied and "APPROVED_DIGEST" in applied
    uses = [s.get("uses", "") for s in jobs["plan"]["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in uses)


def test_gitlab_pipeline_shape() -> None:
    pipeline = load(GITLAB)
    assert pipeline["stages"] == ["validate", "plan", "apply"]
    assert "git+https://" in pipeline["variables"]["RECONCILER"]
    assert "reconcile validate" in pipeline["validate"]["script"]
    plan_rule = pipeline["plan"]["rules"][0]["if"]
    assert "$CI_MERGE_REQUEST_SOURCE_PROJECT_ID == $CI_PROJECT_ID" in plan_rule  # not forks
    assert pipeline["plan"]["environment"]["name"] == "partner-center-plan"
    assert pipeline["apply"]["environment"]["name"] == "partner-center"
    assert pipeline["apply"]["resource_group"] == "partner-center"
    everything = json.dumps(pipeline)
    assert "git push" not in everything and "after_script" not in everything
    assert "plan.json" in pipeline["plan"]["artifacts"]["paths"]
    assert pipeline["resync"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert "--refresh full --dry-run" in " ".join(pipeline["resync"]["script"])
    assert pipeline["apply"]["rules"][0] == {
        "if": '$CI_PIPELINE_SOURCE == "schedule"',
        "when": "never",
    }


def test_pre_commit_hook_runs_validate() -> None:
    [hook] = load(ROOT / ".pre-commit-hooks.yaml")
    assert hook["id"] == "reconcile-validate" and hook["entry"] == "reconcile validate"
    assert hook["language"] == "python" and hook["pass_filenames"] is False


@pytest.mark.parametrize(
    ("language", "snapshot_file"),
    [("en", "example-plan.md"), ("zh-TW", "example-plan.zh-TW.md")],
    ids=["en", "zh-TW"],
)
def test_markdown_plan_matches_the_reviewed_snapshot(
    example: Path, language: str, snapshot_file: str
) -> None:
    args = ("--lang", language, "--dry-run", "--output", "markdown")
    result = run(*args, cwd=example)
    assert result.returncode == 0
    snapshot = (ROOT / "tests" / "snapshots" / snapshot_file).read_text()
    assert result.stdout == snapshot
    assert run(*args, cwd=example).stdout == snapshot  # stable


# --- the team workflows, run step by step against the emulator and PostgreSQL -----------------


@dataclass
class Pipeline:
    """What a CI runner would give the steps: a checkout of the specs (no state), the emulator
    as Partner Center, a PostgreSQL database, and ``pip`` that installs nothing (the package
    under test is already installed in this virtual environment)."""

    root: Path
    env: dict[str, str]
    world: Path

    def checkout(self, name: str, source: Path = ROOT / "specs") -> Path:
        work = self.root / name
        shutil.copytree(source, work / "specs")
        return work

    def plan_is_empty(self) -> bool:
        args = ("--provider", "partner-center", "--dry-run", "--detailed-exitcode")
        return run(*args, cwd=self.root / "main", env=self.env).returncode == 0


@pytest.fixture
def pipeline(tmp_path: Path, pg_url: str) -> Iterator[Pipeline]:
    world = tmp_path / "partner-center"
    shutil.copytree(ROOT / "state", world)
    stop, env = start_emulator(world, Knobs(token=TOKEN))
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "pip").write_text("#!/bin/sh\necho 'pip (stub):' \"$@\"\n")
    (stub / "pip").chmod(0o755)
    env = {
        **env,
        "PATH": f"{stub}:{Path(RECONCILE).parent}:{os.environ['PATH']}",
        "RECONCILE_STATE_URL": pg_url,
    }
    # Set up once by the team: the records move into the database.
    moved = run("state", "import", str(world), cwd=tmp_path, env=env)
    assert moved.returncode == 0, moved.stderr
    pipe = Pipeline(tmp_path, env, world)
    pipe.checkout("main")
    try:
        yield pipe
    finally:
        stop()


def run_steps(commands: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Each command as its own bash script (GitHub's `bash -eo pipefail {0}`), stopping at the
    first failure, in ``cwd``; returns the last one's result."""
    result = subprocess.CompletedProcess([], 0, "", "")
    for command in commands:
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            break
    return result


def github_job(job: str, work: Path, pipe: Pipeline, **extra: str) -> subprocess.CompletedProcess:
    workflow = load(GITHUB)
    env = {**pipe.env, **{k: str(v) for k, v in workflow["env"].items()}}
    env.update({k: v for k, v in workflow["jobs"][job].get("env", {}).items() if "${{" not in v})
    env |= {
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "team/specs",
        "GITHUB_RUN_ID": "42",
        "GITHUB_OUTPUT": str(work / "github-output"),
        "APPROVED_DIGEST": "",
        **extra,
    }
    steps = [s["run"] for s in workflow["jobs"][job]["steps"] if "run" in s]
    return run_steps(steps, work, env)


def digest(plan_file: Path) -> str:
    code = load(GITHUB)["env"]["PLAN_DIGEST"]
    return subprocess.check_output([sys.executable, "-c", code, str(plan_file)], text=True).strip()


def no_state_in(work: Path) -> bool:
    """Nothing to commit back: no records, journal or snapshot next to the specs."""
    kept = ("records.json", "journal.jsonl", "applied.json", "world.json")
    return not any(p.name in kept for p in work.rglob("*"))


def test_github_team_flow_applies_the_reviewed_plan_and_stops_on_a_changed_one(
    pipeline: Pipeline,
) -> None:
    first, second = pipeline.checkout("pr-1"), pipeline.checkout("pr-2")
    edit(second / "specs/customers/contoso.yaml", "quantity: 30", "quantity: 31")
    for work in (first, second):  # both pull requests are planned before either is merged
        assert github_job("validate", work, pipeline).returncode == 0
        planned = github_job("plan", work, pipeline)
        assert planned.returncode == 0, planned.stderr
        comment = (work / "comment.md").read_text()
        assert comment.startswith("<!-- partner-reconciler plan -->")
        assert f"Plan `{digest(work / 'plan.json')}`" in comment
        shutil.copytree(work, work.with_name(work.name + "-merged"))  # main after the merge
        (work.with_name(work.name + "-merged") / "reviewed").mkdir()
        shutil.copy(work / "plan.json", work.with_name(work.name + "-merged") / "reviewed")
    merged_first = pipeline.root / "pr-1-merged"
    applied = github_job("apply", merged_first, pipeline)
    assert applied.returncode == 0, applied.stderr
    assert pipeline.plan_is_empty()  # the reviewed plan was applied in full
    # The second pull request's reviewed plan was made before the first was applied.
    merged_second = pipeline.root / "pr-2-merged"
    refused = github_job("apply", merged_second, pipeline)
    assert refused.returncode == 1 and "changed after review" in refused.stdout + refused.stderr
    note = (merged_second / "comment.md").read_text()
    fresh = digest(merged_second / "plan.json")
    assert f"now `{fresh}`" in note and "update quantity" in note.lower()
    approved = github_job("apply", merged_second, pipeline, APPROVED_DIGEST=fresh)
    assert approved.returncode == 0, approved.stderr
    world = json.loads((pipeline.world / "world.json").read_text())
    quantities = {s["id"]: s["quantity"] for c in world["customers"] for s in c["subscriptions"]}
    assert quantities[CONTOSO_BASIC] == 31
    assert all(no_state_in(pipeline.root / name) for name in ("pr-1-merged", "pr-2-merged"))


def test_nightly_resync_fills_the_observation_cache_that_pull_request_plans_read(
    pipeline: Pipeline, pg_url: str
) -> None:
    import psycopg

    work = pipeline.root / "main"
    resynced = github_job("resync", work, pipeline)
    assert resynced.returncode == 0, resynced.stderr
    assert "partner-reconciler plan" in (work / "resync.md").read_text()
    world = json.loads((pipeline.world / "world.json").read_text())
    resellers = [c for c in world["customers"] if c.get("relationship", "reseller") == "reseller"]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM reconcile_observation WHERE entry IS NOT NULL"
        ).fetchone()
    assert rows is not None and rows[0] >= len(resellers)
    plan = run(
        "--provider", "partner-center", "--dry-run", "--output", "json", cwd=work, env=pipeline.env
    )
    observed = json.loads(plan.stdout)["observation"]
    assert observed["read"] + observed["from_cache"] == len(resellers)
    assert observed["from_cache"] >= 1


def test_github_comment_is_cut_to_the_limit_with_a_link_to_the_whole_plan(
    pipeline: Pipeline,
) -> None:
    work = pipeline.root / "main"
    assert github_job("plan", work, pipeline).returncode == 0
    (work / "plan.md").write_text("| ⚠️ suspend | customer |\n" * 10_000, encoding="utf-8")
    workflow = load(GITHUB)
    step = next(
        s for s in workflow["jobs"]["plan"]["steps"] if s.get("name") == "Write the comment"
    )
    env = {**pipeline.env, "PLAN_DIGEST": workflow["env"]["PLAN_DIGEST"]}
    env |= {
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "t/s",
        "GITHUB_RUN_ID": "9",
    }
    assert run_steps([step["run"]], work, env).returncode == 0
    comment = (work / "comment.md").read_text(encoding="utf-8")
    assert len(comment.encode("utf-16-le")) // 2 <= 65_536
    assert comment.rstrip().endswith("https://github.example/t/s/actions/runs/9")
    assert "The plan is cut here" in comment


class FakeGitLab(BaseHTTPRequestHandler):
    """The few GitLab API calls of the pipeline: notes of merge request 7, and the merge request
    of a commit."""

    notes: list[dict[str, Any]]

    def _reply(self, value: Any) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:  # noqa: N802
        if "/repository/commits/" in self.path:
            self._reply([{"iid": 7}])
        else:
            self._reply(sorted(self.notes, key=lambda n: -n["id"]))

    def do_POST(self) -> None:  # noqa: N802
        note = {"id": len(self.notes) + 1, "body": self._body()["body"]}
        self.notes.append(note)
        self._reply(note)

    def do_PUT(self) -> None:  # noqa: N802
        note_id = int(self.path.rsplit("/", 1)[1])
        note = next(n for n in self.notes if n["id"] == note_id)
        note["body"] = self._body()["body"]
        self._reply(note)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def gitlab() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    notes: list[dict[str, Any]] = []
    handler = type("Handler", (FakeGitLab,), {"notes": notes})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", notes
    finally:
        server.shutdown()
        server.server_close()


def gitlab_job(job: str, work: Path, pipe: Pipeline, api: str, **extra: str) -> Any:
    pipeline = load(GITLAB)
    env = {**pipe.env, **pipeline["variables"]}
    env |= {
        "CI_API_V4_URL": api,
        "CI_PROJECT_ID": "1",
        "CI_COMMIT_SHA": "abc123",
        "CI_DEFAULT_BRANCH": "main",
        "CI_JOB_URL": "https://gitlab.example/team/specs/-/jobs/5",
        "GITLAB_API_TOKEN": "glpat-test",
        **extra,
    }
    lines = [*pipeline["default"]["before_script"], *pipeline[job]["script"]]
    return run_steps(["\n".join(lines)], work, env)


def test_gitlab_team_flow(pipeline: Pipeline, gitlab: tuple[str, list[dict[str, Any]]]) -> None:
    api, notes = gitlab
    work = pipeline.root / "main"
    assert gitlab_job("validate", work, pipeline, api).returncode == 0
    for _ in range(2):  # pushed twice: one note, updated in place
        planned = gitlab_job("plan", work, pipeline, api, CI_MERGE_REQUEST_IID="7")
        assert planned.returncode == 0, planned.stderr
    [note] = notes
    assert note["body"].startswith("<!-- partner-reconciler plan -->")
    assert f"Plan `{digest(work / 'plan.json')}`" in note["body"]
    # The world changes between review and merge: the apply stops and posts the new plan.
    edit(pipeline.world / "world.json", '"quantity": 5,', '"quantity": 6,')
    refused = gitlab_job("apply", work, pipeline, api)
    assert refused.returncode == 1 and "changed after review" in refused.stderr
    assert len(notes) == 2 and "Not applied" in notes[1]["body"]
    fresh = digest(work / "plan.json")
    assert not pipeline.plan_is_empty()
    approved = gitlab_job("apply", work, pipeline, api, APPROVED_DIGEST=fresh)
    assert approved.returncode == 0, approved.stderr
    assert pipeline.plan_is_empty()
    # Merged as reviewed: applied without asking.
    edit(work / "specs/customers/contoso.yaml", "quantity: 30", "quantity: 32")
    assert gitlab_job("plan", work, pipeline, api, CI_MERGE_REQUEST_IID="7").returncode == 0
    assert gitlab_job("apply", work, pipeline, api).returncode == 0
    assert pipeline.plan_is_empty() and no_state_in(work)
