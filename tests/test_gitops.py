"""GitOps integration: the example CI workflows and pre-commit hook are valid and do what the
README says (each workflow's steps run in order, as scripts, against the emulator and a
PostgreSQL database; GitHub's `actions/github-script` steps under node, against a fake of the
GitHub API, ``tests/github_script.js``); the pull-request markdown matches a reviewed snapshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, TOKEN, start_emulator
from helpers import RECONCILE, run, world_document

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


def digest(plan_file: Path) -> str:
    code = load(GITHUB)["env"]["PLAN_DIGEST"]
    return subprocess.check_output([sys.executable, "-c", code, str(plan_file)], text=True).strip()


def no_state_in(work: Path) -> bool:
    """Nothing to commit back: no records, journal or snapshot next to the specs."""
    kept = ("records.json", "journal.jsonl", "applied.json", "world.json")
    return not any(p.name in kept for p in work.rglob("*"))


# --- GitHub: every step of a job, `actions/github-script` ones included (run by node) ---------

GITHUB_SCRIPT = ROOT / "tests" / "github_script.js"
NODE = shutil.which("node")
# The `if:` conditions of the workflow's steps, as GitHub evaluates them for this test. A new
# condition in the workflow fails the test until it is added here.
CONDITIONS: dict[str, Callable[[GitHubJob], bool]] = {
    "github.event_name == 'push'": lambda job: job.event == "push",
    "steps.reviewed.outputs.run_id": lambda job: bool(
        job.outputs.get("reviewed", {}).get("run_id")
    ),
    "failure() && hashFiles('comment.md') != ''": lambda job: (
        job.failed and (job.work / "comment.md").exists()
    ),
    "always()": lambda job: True,
}
SKIPPED_ACTIONS = ("actions/checkout@", "actions/setup-python@")


@dataclass
class GitHub:
    """The fake GitHub the workflow's scripts talk to: pull requests and their comments,
    commit comments, workflow runs, and the artifacts the jobs upload."""

    root: Path
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    commit_comments: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # core.warning, in the job's log
    next_id: int = 1000


@dataclass
class GitHubJob:
    """One job of the workflow running, with what its steps left for the next ones."""

    github: GitHub
    work: Path
    env: dict[str, str]
    event: str
    run_id: int
    sha: str
    pull: int | None = None
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    failed: bool = False

    def expand(self, text: str) -> str:
        """GitHub's ``${{ steps.ID.outputs.NAME }}`` substitutions (an unknown one is empty)."""
        return re.sub(
            r"\$\{\{\s*steps\.(\w+)\.outputs\.(\w+)\s*\}\}",
            lambda m: self.outputs.get(m[1], {}).get(m[2], ""),
            text,
        )

    def run_step(self, step: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        uses = step.get("uses", "")
        if "run" in step:
            return run_steps([step["run"]], self.work, self.env)
        if uses.startswith("actions/github-script@"):
            return self.github_script(self.expand(step["with"]["script"]), step.get("id"))
        if uses.startswith("actions/upload-artifact@"):
            kept = self.github.root / "artifacts" / str(self.run_id) / step["with"]["name"]
            kept.mkdir(parents=True)
            for name in step["with"]["path"].split():
                shutil.copy(self.work / name, kept)
        elif uses.startswith("actions/download-artifact@"):
            run_id = self.expand(step["with"]["run-id"])
            kept = self.github.root / "artifacts" / run_id / step["with"]["name"]
            shutil.copytree(kept, self.work / step["with"]["path"])
        else:
            assert uses.startswith(SKIPPED_ACTIONS), f"no fake for {uses}"
        return subprocess.CompletedProcess([], 0, "", "")

    def github_script(self, script: str, step_id: str | None) -> subprocess.CompletedProcess[str]:
        """The script under node, as the action runs it, against the fake GitHub."""
        if NODE is None:  # the machines this project runs on have it; CI must run these
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail("node is not installed: the github-script steps cannot run")
            pytest.skip("node is not installed: the github-script steps cannot run")
        state = {
            "context": {
                "repo": {"owner": "team", "repo": "specs"},
                "issue": {"number": self.pull},
                "sha": self.sha,
                "workflow": load(GITHUB)["name"],
            },
            **{k: v for k, v in asdict(self.github).items() if k != "root"},
        }
        (self.work / "script.js").write_text(script)
        (self.work / "github.json").write_text(json.dumps(state))
        result = subprocess.run(
            [NODE, str(GITHUB_SCRIPT), "script.js", "github.json"],
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode == 0:
            after = json.loads((self.work / "github.json").read_text())
            for name in ("comments", "commit_comments", "warnings", "next_id"):
                setattr(self.github, name, after[name])
            if step_id:
                self.outputs[step_id] = after["outputs"]
        return result


def github_job(
    job: str,
    work: Path,
    pipe: Pipeline,
    github: GitHub,
    *,
    event: str,
    run_id: int,
    sha: str,
    pull: int | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """Every step of ``job`` in order as GitHub runs it (its ``if:`` conditions honoured):
    shell steps with bash, github-script steps under node, artifacts kept by the fake GitHub.
    Returns the first failed step's result, else the last one's."""
    workflow = load(GITHUB)
    env = {**pipe.env, **{k: str(v) for k, v in workflow["env"].items()}}
    env.update({k: v for k, v in workflow["jobs"][job].get("env", {}).items() if "${{" not in v})
    env |= {
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "team/specs",
        "GITHUB_RUN_ID": str(run_id),
        "GITHUB_OUTPUT": str(work / "github-output"),
        "APPROVED_DIGEST": "",
        **extra,
    }
    running = GitHubJob(github, work, env, event, run_id, sha, pull)
    first_failure = None
    result = subprocess.CompletedProcess[str]([], 0, "", "")
    for step in workflow["jobs"][job]["steps"]:
        condition = step.get("if")
        if condition is None:
            if running.failed:
                continue
        elif not CONDITIONS[condition](running):
            continue
        result = running.run_step(step)
        if result.returncode != 0 and first_failure is None:
            running.failed, first_failure = True, result
    if job == "plan" and first_failure is None:  # a run whose plan artifact can be found
        head = next(p["head"]["sha"] for p in github.pulls if p["number"] == pull)
        github.runs.insert(  # newest first, as GitHub lists them
            0,
            {
                "id": run_id,
                "name": workflow["name"],
                "event": event,
                "head_sha": head,
                "status": "success",
            },
        )
    return first_failure or result


def open_pull(github: GitHub, number: int) -> None:
    github.pulls.append(
        {"number": number, "head": {"sha": f"head-{number}"}, "merge_commit_sha": f"merge-{number}"}
    )


def test_github_team_flow_applies_the_reviewed_plan_and_stops_on_a_changed_one(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    github = GitHub(tmp_path / "github")
    first, second = pipeline.checkout("pr-1"), pipeline.checkout("pr-2")
    edit(second / "specs/customers/contoso.yaml", "quantity: 30", "quantity: 31")
    github.comments["1"] = [{"id": n, "body": f"looks good {n}"} for n in range(3)]  # 2 pages
    for number, work in ((1, first), (2, second)):  # both are planned before either is merged
        open_pull(github, number)
        pushes = 2 if number == 1 else 1  # pushed twice: one comment, updated in place
        for push in range(pushes):
            run_id = 100 * number + push
            context = {"event": "pull_request", "run_id": run_id, "sha": f"head-{number}"}
            assert github_job("validate", work, pipeline, github, **context).returncode == 0
            planned = github_job("plan", work, pipeline, github, pull=number, **context)
            assert planned.returncode == 0, planned.stderr
        [comment] = [c for c in github.comments[str(number)] if "partner-reconciler" in c["body"]]
        assert comment["body"] == (work / "comment.md").read_text()
        assert f"Plan `{digest(work / 'plan.json')}`" in comment["body"]
    # Merged one after the other: each apply finds its pull request's reviewed plan.
    merged_first = pipeline.checkout("pr-1-merged", first / "specs")
    applied = github_job(
        "apply", merged_first, pipeline, github, event="push", run_id=3, sha="merge-1"
    )
    assert applied.returncode == 0, applied.stderr
    assert (merged_first / "reviewed" / "plan.json").read_bytes() == (
        first / "plan.json"
    ).read_bytes()
    assert pipeline.plan_is_empty()  # the reviewed plan was applied in full
    # The second pull request's reviewed plan was made before the first was applied.
    merged_second = pipeline.checkout("pr-2-merged", second / "specs")
    refused = github_job(
        "apply", merged_second, pipeline, github, event="push", run_id=4, sha="merge-2"
    )
    assert refused.returncode == 1 and "changed after review" in refused.stdout + refused.stderr
    note = github.comments["2"][-1]["body"]
    fresh = digest(merged_second / "plan.json")
    assert note.startswith("<!-- partner-reconciler plan not applied -->")
    assert f"now `{fresh}`" in note and "update quantity" in note.lower()
    approved = github_job(
        "apply",
        merged_second,
        pipeline,
        github,
        event="workflow_dispatch",
        run_id=5,
        sha="merge-2",
        APPROVED_DIGEST=fresh,
    )
    assert approved.returncode == 0, approved.stderr
    world = world_document(pipeline.world / "world.json")
    quantities = {s["id"]: s["quantity"] for c in world["customers"] for s in c["subscriptions"]}
    assert quantities[CONTOSO_BASIC] == 31
    assert all(no_state_in(pipeline.root / name) for name in ("pr-1-merged", "pr-2-merged"))


def test_nightly_resync_fills_the_observation_cache_that_pull_request_plans_read(
    pipeline: Pipeline, pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    work = pipeline.root / "main"
    github = GitHub(tmp_path / "github")
    resynced = github_job("resync", work, pipeline, github, event="schedule", run_id=11, sha="m")
    assert resynced.returncode == 0, resynced.stderr
    assert "partner-reconciler plan" in (work / "resync.md").read_text()
    world = world_document(pipeline.world / "world.json")
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


def test_github_push_without_a_reviewed_plan_posts_it_on_the_commit(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """A push to main that no pull request reviewed (or whose plan run is gone) applies
    nothing: the plan goes to the commit's comments, with a warning in the job's log."""
    github = GitHub(tmp_path / "github")
    work = pipeline.checkout("pushed")
    refused = github_job("apply", work, pipeline, github, event="push", run_id=7, sha="direct")
    assert refused.returncode == 1 and "changed after review" in refused.stdout + refused.stderr
    assert github.warnings == ["no pull request for this commit: no reviewed plan"]
    [comment] = github.commit_comments
    assert comment["commit_sha"] == "direct" and "**Not applied**" in comment["body"]
    assert not pipeline.plan_is_empty()


def test_github_comment_is_cut_to_the_limit_with_a_link_to_the_whole_plan(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    github = GitHub(tmp_path / "github")
    open_pull(github, 9)
    work = pipeline.root / "main"
    context = {"event": "pull_request", "run_id": 9, "sha": "head-9", "pull": 9}
    assert github_job("plan", work, pipeline, github, **context).returncode == 0
    (work / "plan.md").write_text("| ⚠️ suspend | customer |\n" * 10_000, encoding="utf-8")
    workflow = load(GITHUB)
    steps = workflow["jobs"]["plan"]["steps"]
    job = GitHubJob(github, work, pipeline.env, **context)
    job.env |= {
        "PLAN_DIGEST": workflow["env"]["PLAN_DIGEST"],
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "t/s",
        "GITHUB_RUN_ID": "9",
    }
    for name in (
        "Write the comment",
        "Comment the plan on the pull request (one comment, updated in place)",
    ):
        result = job.run_step(next(s for s in steps if s.get("name") == name))
        assert result.returncode == 0, result.stderr
    [comment] = github.comments["9"]  # the fake refuses a body over GitHub's limit
    body = comment["body"]
    assert body == (work / "comment.md").read_text(encoding="utf-8")
    assert len(body.encode("utf-16-le")) // 2 <= 65_536
    assert body.rstrip().endswith("https://github.example/t/s/actions/runs/9")
    assert "The plan is cut here" in body


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
