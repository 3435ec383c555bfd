"""Watch mode with real processes and real files: no mocked watcher.

The tests run with the records in the state folder and in PostgreSQL (``state_store``), but for
the two slowest, which are about the provider and the file watcher: the provider outage, and the
changes during a pass (SIGTERM mid-pass covers a long applying pass in PostgreSQL)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import StateStore
from helpers import RECONCILE, run

from controller.providers.local import read_world
from controller.records import FileStore

CONTOSO_FILE = Path("specs/customers/contoso.yaml")
CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"
BASIC = "354ec307-e470-40d2-9563-5fed10cb4044"
NORTHWIND = "3b9c8398-289a-4913-861d-2dafb70bf03c"


class Watching:
    """A running ``reconcile --watch``, with its output collected line by line."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [RECONCILE, "--watch", *args],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(
                target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True
            ).start()

    def passes(self) -> list[str]:
        return [line for line in list(self.err) if re.search(r" pass \d+: ", line)]

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, "".join(self.err)
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}:\n{''.join(self.err)}"
            )
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)


@pytest.fixture
def watching(example: Path, state_store: StateStore) -> Iterator[Callable[..., Watching]]:
    state_store.use(example)
    started: list[Watching] = []

    def start(*args: str) -> Watching:
        started.append(Watching(example, *args))
        return started[-1]

    yield start
    for w in started:
        if w.process.poll() is None:
            w.process.kill()


def quantity(example: Path) -> int:
    world = read_world(example / "state" / "world.json")
    return world.customers_by_id[CONTOSO].subscriptions_by_id[BASIC].quantity


def edit_quantity(example: Path, new: int) -> None:
    path = example / CONTOSO_FILE
    text = path.read_text()
    path.write_text(
        text.replace("quantity: 30 ", f"quantity: {new} ", 1)
        if "quantity: 30 " in text
        else text.replace("quantity: 31 ", f"quantity: {new} ", 1)
    )


def test_an_edit_converges_a_bad_file_is_reported_then_fixed(example: Path, watching) -> None:  # type: ignore[no-untyped-def]
    w = watching("--interval", "300")
    w.wait_for(lambda: quantity(example) == 30, "the first pass")
    edit_quantity(example, 31)
    w.wait_for(lambda: quantity(example) == 31, "the edit to converge")

    bad = example / "specs" / "customers" / "zz-bad.yaml"
    bad.write_text("customers:\n  - id: 12345\n    name: Broken\n")
    w.wait_for(lambda: any("zz-bad.yaml:2: customers[0].id" in line for line in w.err), "the error")
    edit_quantity(example, 32)  # an edit while the specs are invalid is not applied
    w.wait_for(lambda: sum("error" in p for p in w.passes()) >= 2, "a second failed pass")
    assert quantity(example) == 31
    bad.unlink()
    w.wait_for(lambda: quantity(example) == 32, "convergence after the fix")
    assert w.stop() == 0
    assert "Traceback" not in "".join(w.err)


def test_an_accepted_invitation_is_picked_up_on_the_next_interval(example: Path, watching) -> None:  # type: ignore[no-untyped-def]
    w = watching("--interval", "1", "--output", "json")
    w.wait_for(lambda: len(w.out) >= 1, "the first pass")
    first = json.loads(w.out[0])
    assert first["format_version"] == 1 and len(first["results"]) == 6
    assert run("world", "accept", NORTHWIND, cwd=example).returncode == 0
    reactivated = lambda: any(  # noqa: E731
        [a["type"] for a in json.loads(line)["actions"]] == ["reactivate_subscription"] * 2
        for line in list(w.out)
    )
    w.wait_for(reactivated, "the reactivations")
    assert all(json.loads(line) for line in w.out)  # one JSON document per line
    assert w.stop() == 0


def test_a_burst_of_edits_is_one_pass(example: Path, watching) -> None:  # type: ignore[no-untyped-def]
    w = watching("--interval", "300", "--dry-run")
    w.wait_for(lambda: len(w.passes()) == 1, "the first pass")
    for n in range(8):
        (example / "specs" / f"extra-{n}.yaml").write_text("# nothing yet\n")
    w.wait_for(lambda: len(w.passes()) >= 2, "a pass for the burst")
    time.sleep(1.5)
    assert len(w.passes()) == 2
    assert w.stop(signal.SIGINT) == 0


def test_dry_run_watch_only_previews(example: Path, watching, state_store: StateStore) -> None:  # type: ignore[no-untyped-def]
    state = {p.name: p.read_bytes() for p in (example / "state").iterdir()}
    store = state_store.open(example)
    records = (store.load(), store.load_applied(), store.read_journal())
    health = example / "healthy"
    w = watching("--interval", "1", "--dry-run", "--health-file", str(health))
    w.wait_for(lambda: len(w.passes()) >= 2, "two passes")
    assert health.exists()
    assert "Plan: 1 to remove" in "".join(w.out)
    assert w.stop() == 0
    assert {p.name: p.read_bytes() for p in (example / "state").iterdir()} == state
    assert (store.load(), store.load_applied(), store.read_journal()) == records


def test_sigterm_mid_pass_finishes_in_flight_actions_and_exits_0(
    tmp_path: Path, state_store: StateStore
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from generate import generate

    generate(tmp_path, customers=80, subscriptions=3, remove=0.95, seed=3)
    state_store.use(tmp_path)
    w = Watching(tmp_path, "--allow-mass-removal", "--rate-limit", "0", "--parallelism", "4")
    journal = state_store.open(tmp_path)
    w.wait_for(
        lambda: any(e["event"] == "action_applied" for e in journal.read_journal()),
        "the first applied action",
    )
    assert w.stop() == 0
    entries = journal.read_journal()
    started = {e["id"] for e in entries if e["event"] == "action_started"}
    finished = {e["id"] for e in entries if e["event"] in ("action_applied", "action_failed")}
    runs = [e for e in entries if e["event"] != "protected"]  # protection is journaled after
    assert started == finished and runs[-1]["event"] == "run_finished"
    assert "Traceback" not in "".join(w.err)
    assert run("--allow-mass-removal", "--rate-limit", "0", cwd=tmp_path).returncode == 0


def test_a_provider_outage_is_reported_and_retried_without_exiting(example: Path) -> None:
    import os
    import socket

    from conftest import TOKEN

    from controller.emulator import Knobs, make_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "PARTNER_CENTER_BASE_URL": f"http://127.0.0.1:{port}",
        "PARTNER_CENTER_TENANT_ID": "0e1ef465-9299-45ce-a98c-57c49bded0ce",
        "PARTNER_CENTER_ACCESS_TOKEN": TOKEN,
    }
    process = subprocess.Popen(
        [RECONCILE, "--watch", "--interval", "1", "--provider", "partner-center"],
        cwd=example,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err: list[str] = []
    threading.Thread(
        target=lambda: err.extend(iter(process.stderr.readline, "")), daemon=True
    ).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    while not any("pass 2: error" in line for line in err):  # the first pass retries its reads
        assert process.poll() is None and time.monotonic() < deadline, "".join(err)
        time.sleep(0.1)
    assert any("connection failed" in line for line in err)
    server = make_server(example / "state", port=port, knobs=Knobs(token=TOKEN))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while quantity(example) != 30:
            assert process.poll() is None and time.monotonic() < deadline, "".join(err)
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        server.shutdown()
        server.server_close()
    assert TOKEN not in "".join(err)


def test_changes_during_a_pass_cause_exactly_one_more_pass(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from generate import generate

    # A first pass of about 80 actions, at most 20 a second (after a burst of 10): it lasts at
    # least 3.5 s however fast the machine (the local world is no longer slow by itself).
    generate(tmp_path, customers=20, subscriptions=3, remove=0.95, seed=3)
    w = Watching(
        tmp_path,
        "--allow-mass-removal",
        "--rate-limit",
        "1200",
        "--parallelism",
        "1",
        "--interval",
        "300",
    )
    journal = FileStore(tmp_path / "state")
    w.wait_for(
        lambda: any(e["event"] == "action_applied" for e in journal.read_journal()),
        "the first pass to be under way",
    )
    for n in range(3):  # edits while the first pass runs
        (tmp_path / "specs" / f"note-{n}.yaml").write_text("# nothing\n")
        time.sleep(0.2)
    assert len(w.passes()) == 0, "the first pass should still be running"
    w.wait_for(lambda: len(w.passes()) >= 2, "the pass for the edits", timeout=60)
    time.sleep(2)
    assert len(w.passes()) == 2
    runs = [e for e in journal.read_journal() if e["event"] == "run_started"]
    assert len(runs) == 1  # the second pass found nothing left to do
    assert w.stop() == 0


def test_an_applying_pass_says_what_it_changed_and_idle_passes_stay_quiet(
    example: Path, watching
) -> None:  # type: ignore[no-untyped-def]
    w = watching("--interval", "1")
    w.wait_for(lambda: len(w.passes()) >= 3, "an applying pass, then idle ones")
    assert w.stop() == 0
    out, err = "".join(w.out), "".join(w.err)
    # The applying pass: its plan, its per-action lines, its outcome, as a one-off apply.
    assert out.count("Plan: 1 to remove, 3 to suspend") == 1
    assert out.count("Apply: applied 6 of 6") == 1
    assert re.search(r"applied +a3 remove relationship Fabrikam Inc", err), err
    # Idle passes: nothing on stdout, one summary line each on stderr.
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("Converged") or "waits for the customer to accept" in last, last
    idle = w.passes()[1:]
    assert idle and all("applied 0, failed 0" in line for line in idle)


def test_the_customers_a_pass_could_not_observe_are_a_metric() -> None:
    """Watch mode goes on past a customer it could not read (the others are planned); the gauge
    is what an alert watches."""
    from controller import metrics
    from controller.plan import Plan

    def gauge() -> float | None:
        return metrics.REGISTRY.get_sample_value("reconcile_unobserved_customers")

    metrics.record_plan(Plan("f" * 64, unobserved={"c1": "timeout", "c2": "HTTP 500"}))
    assert gauge() == 2
    metrics.record_plan(Plan("f" * 64))
    assert gauge() == 0
