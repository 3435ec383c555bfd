"""Teams sharing one PostgreSQL database: two processes on two state folders, one Partner Center
(the emulator). One apply at a time, named when refused; a killed holder frees the lock at once;
two watch replicas elect one leader, fail over within an interval when it is killed, never apply
at the same time, apply nothing out of order and lose nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import start_emulator
from helpers import PARTNER, RECONCILE, customer, gid, run, sub, world

from controller.emulator import Knobs
from controller.providers.local import read_world, render_world

INTERVAL = 3.0
KEPT, REMOVED = range(1, 9), range(9, 13)  # customers kept (subscriptions suspended) / removed


@dataclass
class Team:
    """A world served by the emulator, a database, and two state folders."""

    root: Path
    env: dict[str, str]
    pg_url: str

    def folder(self, name: str) -> Path:
        return self.root / name

    def journal(self) -> list[tuple[int, dict[str, Any], str]]:
        with psycopg.connect(self.pg_url) as conn:
            rows = conn.execute(
                "SELECT seq, entry, written_by FROM reconcile_journal ORDER BY seq"
            ).fetchall()
        return [(seq, entry, writer) for seq, entry, writer in rows]

    def world(self) -> Any:
        return read_world(self.root / "world" / "world.json")


def _subscriptions(n: int) -> tuple[int, int]:
    return 100 + 2 * n, 101 + 2 * n


def _write_specs(specs: Path) -> None:
    specs.mkdir()
    lines = [f"partner:\n  id: {PARTNER}\ncustomers:"]
    for n in KEPT:
        lines.append(f"  - id: {gid(n)}\n    name: Customer {n}\n    subscriptions:")
        lines += [f"      - id: {gid(s)}\n        status: suspended" for s in _subscriptions(n)]
    (specs / "customers.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def team(tmp_path: Path, pg_url: str) -> Iterator[Team]:
    """Twelve customers with two active subscriptions each: eight keep them, suspended (16
    suspensions); four leave (8 suspensions, then 4 removals that depend on them). The emulator
    answers slowly, so an apply takes seconds."""
    state = tmp_path / "world"
    state.mkdir()
    everyone = [customer(n, *(sub(s) for s in _subscriptions(n))) for n in (*KEPT, *REMOVED)]
    (state / "world.json").write_text(render_world(world(*everyone)))
    managed = {"partner_id": PARTNER, "managed": [gid(n) for n in (*KEPT, *REMOVED)]}
    (state / "records.json").write_text(json.dumps(managed))
    stop, env = start_emulator(state, Knobs(latency=0.15))
    env = {**env, "RECONCILE_STATE_URL": pg_url}
    for name in ("a", "b"):
        _write_specs_folder = tmp_path / name
        _write_specs_folder.mkdir()
        _write_specs(_write_specs_folder / "specs")
    moved = run("state", "import", str(state), cwd=tmp_path, env=env)
    assert moved.returncode == 0, moved.stderr
    try:
        yield Team(tmp_path, env, pg_url)
    finally:
        stop()


def _reconcile(team: Team, folder: str, *args: str) -> subprocess.Popen[str]:
    """``reconcile`` in the background; its output goes to files in its folder (``log``)."""
    with (
        open(team.folder(folder) / "out", "w") as out,
        open(team.folder(folder) / "log", "w") as log,
    ):
        return subprocess.Popen(
            [RECONCILE, "--provider", "partner-center", "--parallelism", "1", *args],
            cwd=team.folder(folder),
            env=team.env,
            stdout=out,
            stderr=log,
            text=True,
        )


def _wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _applied(team: Team) -> int:
    return sum(1 for _seq, e, _w in team.journal() if e.get("event") == "action_applied")


def _check_journal(team: Team) -> None:
    """Runs never interleave (one block of entries each, one writer each), and within a run no
    removal starts before the suspensions it depends on were applied."""
    seen: list[str] = []
    writers: dict[str, set[str]] = {}
    started: dict[tuple[str, str], set[str]] = {}  # (run, customer) -> suspensions started
    applied: set[str] = set()
    for _seq, entry, writer in team.journal():
        run_id = entry["run"]
        if not seen or seen[-1] != run_id:
            assert run_id not in seen, f"run {run_id} resumed after another run started"
            seen.append(run_id)
        writers.setdefault(run_id, set()).add(writer)
        key = (run_id, entry.get("customer_id", ""))
        if entry.get("type") == "suspend_subscription":
            if entry["event"] == "action_started":
                started.setdefault(key, set()).add(entry["subscription_id"])
            elif entry["event"] == "action_applied":
                applied.add(entry["subscription_id"])
        if entry["event"] == "action_started" and entry["type"] == "remove_relationship":
            assert started.get(key, set()) <= applied, entry
    assert all(len(w) == 1 for w in writers.values()), writers


def _converged(team: Team) -> None:
    by_id = {c.id: c for c in team.world().customers}
    for n in KEPT:
        assert by_id[gid(n)].relationship == "reseller"
        assert {s.status for s in by_id[gid(n)].subscriptions} == {"suspended"}
    for n in REMOVED:
        assert by_id[gid(n)].relationship == "none"


def test_a_second_apply_is_refused_naming_the_holder_and_a_killed_holder_frees_it(
    team: Team,
) -> None:
    first = _reconcile(team, "a", "--yes")
    try:
        _wait_for(lambda: _applied(team) >= 1, 60, "the first apply to start applying")
        second = run("--provider", "partner-center", cwd=team.folder("b"), env=team.env)
        assert second.returncode == 1
        [line] = second.stderr.splitlines()
        assert f"is locked by pid {first.pid} on " in line and ", since " in line
        first.send_signal(signal.SIGKILL)
        first.wait()
        started = time.monotonic()
        third = run("--provider", "partner-center", "--yes", cwd=team.folder("b"), env=team.env)
        assert third.returncode == 0, third.stderr
        assert time.monotonic() - started < 30
    finally:
        first.kill()
        first.wait()
    _check_journal(team)
    _converged(team)


def _ready(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return str(response.read().decode().strip())
    except (urllib.error.URLError, OSError):
        return ""


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return str(response.read().decode())


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _replicas(team: Team) -> Iterator[dict[str, tuple[subprocess.Popen[str], int]]]:
    """Two watch replicas, a and b, each with its own state folder and --listen port; stopped
    with SIGTERM at the end (exit 0 expected of those still running)."""
    watch = ["--watch", "--interval", str(INTERVAL), "--lock-timeout", "60"]
    replicas = {}
    for name in ("a", "b"):
        port = _free_port()
        replicas[name] = (_reconcile(team, name, *watch, "--listen", f"127.0.0.1:{port}"), port)
    try:
        yield replicas
    finally:
        running = [p for p, _port in replicas.values() if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            assert process.wait(timeout=60) == 0


def _leader_and_standby(replicas: dict[str, tuple[subprocess.Popen[str], int]]) -> tuple[str, str]:
    def roles() -> dict[str, str] | None:
        found = {name: _ready(port) for name, (_p, port) in replicas.items()}
        return found if sorted(found.values()) == ["leader", "standby"] else None

    found = _wait_for(roles, 30, "one leader and one standby")
    leader = next(n for n, role in found.items() if role == "leader")
    return leader, next(n for n in found if n != leader)


def _finished_by(team: Team, process: subprocess.Popen[str]) -> bool:
    """Whether ``process`` finished an apply that applied something and failed nothing."""
    return any(
        e["event"] == "run_finished" and e.get("failed") == 0 and e.get("applied", 0) > 0
        for _s, e, writer in team.journal()
        if writer.endswith(f":{process.pid}")
    )


def test_watch_replicas_elect_one_leader_and_fail_over_when_it_is_killed(team: Team) -> None:
    with _replicas(team) as replicas:
        leader, standby = _leader_and_standby(replicas)
        _wait_for(lambda: _applied(team) >= 3, 60, "the leader to apply")
        replicas[leader][0].send_signal(signal.SIGKILL)
        replicas[leader][0].wait()
        killed = time.monotonic()
        port = replicas[standby][1]
        _wait_for(lambda: _ready(port) == "leader", INTERVAL, "the standby to lead")
        assert time.monotonic() - killed <= INTERVAL
        new_leader = replicas[standby][0]
        _wait_for(lambda: _finished_by(team, new_leader), 60, "the new leader to apply the rest")
        metrics = _wait_for(
            lambda: 'reconcile_passes_total{result="ok"}' in (text := _metrics(port)) and text,
            30,
            "the new leader's pass to end",
        )
        assert "reconcile_leader 1.0" in metrics
        assert 'reconcile_partner_center_requests_total{code="200"}' in metrics
        assert 'reconcile_actions_total{result="applied",type="suspend_subscription"}' in metrics
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
    _check_journal(team)
    _converged(team)
    assert "leader for partner" in (team.folder(standby) / "log").read_text()


def test_a_leader_that_loses_the_database_stops_applying_and_the_standby_takes_over(
    team: Team,
) -> None:
    with _replicas(team) as replicas:
        leader, standby = _leader_and_standby(replicas)
        _wait_for(lambda: _applied(team) >= 3, 60, "the leader to apply")
        with psycopg.connect(team.pg_url, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(backend_pid) FROM reconcile_lock_holder"
            ).fetchall()
        assert len(cut) == 2  # the leader's two connections: leadership and apply lock
        lost_at = max(seq for seq, _e, _w in team.journal())
        new_leader = replicas[standby][0]
        _wait_for(lambda: _ready(replicas[standby][1]) == "leader", INTERVAL, "a new leader")
        _wait_for(lambda: _finished_by(team, new_leader), 60, "the new leader to apply the rest")
        old = f":{replicas[leader][0].pid}"
        late = [e for seq, e, w in team.journal() if seq > lost_at and w.endswith(old)]
        assert not [e for e in late if e["event"] == "action_started"], late
        _wait_for(
            lambda: _ready(replicas[leader][1]) == "standby", 10, "the old leader to stand by"
        )
    _check_journal(team)
    _converged(team)
    assert "no longer the leader" in (team.folder(leader) / "log").read_text()


def test_listen_goes_with_watch_and_needs_a_host_and_port(example: Path) -> None:
    alone = run("--listen", "127.0.0.1:9100", cwd=example)
    assert alone.returncode == 1 and "--listen goes with --watch" in alone.stderr
    bad = run("--watch", "--dry-run", "--listen", "nowhere", cwd=example)
    assert bad.returncode == 1 and "HOST:PORT" in bad.stderr
    assert "Traceback" not in alone.stderr + bad.stderr
