"""Plan and apply at scale with the records in PostgreSQL, as a ratio to the file store.

    python bench/store_scale.py [--customers 10000] [--drift 0.005] [--runs 3] [--state-url URL]

For each run and each store, a fresh copy of a generated specs directory and local world
(``bench/generate.py``: 5 subscriptions a customer, every customer managed, ``--drift`` of them
with one quantity to change): the records moved into a new database with ``reconcile state
import`` for PostgreSQL, then whole ``reconcile`` processes are timed: a dry run (``--dry-run``,
run twice: the second, with the parse cache warm, is the one reported) and the apply (``--yes``).
The two stores alternate within a run, so the machine's drift touches both alike. Without
``--state-url`` a PostgreSQL server is started from the installed binaries (as the tests do)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

import pgserver  # noqa: E402
from generate import generate  # noqa: E402

RECONCILE = str(Path(sys.executable).with_name("reconcile"))


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([RECONCILE, *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"reconcile {' '.join(args)} failed:\n{result.stderr}")
    return elapsed


def new_database(server_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pgserver.database_url(server_url, name)


def one_run(template: Path, work: Path, store: str, server_url: str) -> tuple[float, float]:
    """(dry run, apply) seconds for ``store`` on a fresh copy of ``template``."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work)
    env = dict(os.environ)
    if store == "postgres":
        env["RECONCILE_STATE_URL"] = new_database(server_url)
        timed(["state", "import", "state"], work, env)
    common = ["--rate-limit", "0", "--max-removals", "100000"]
    timed(["--dry-run", "--output", "json", *common], work, env)  # fills the parse cache
    plan = timed(["--dry-run", "--output", "json", *common], work, env)
    apply = timed(["--yes", "--output", "json", *common], work, env)
    return plan, apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--drift", type=float, default=0.005)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-url", help="a PostgreSQL server to create databases in")
    args = parser.parse_args()
    stop = None
    server_url = args.state_url
    if not server_url:
        server_url, stop = pgserver.start()
    scratch = Path(tempfile.mkdtemp(prefix="store-scale-"))
    try:
        template = scratch / "template"
        generate(template, customers=args.customers, subscriptions=5, drift=args.drift)
        times: dict[str, list[tuple[float, float]]] = {"file": [], "postgres": []}
        for run in range(1, args.runs + 1):
            for store in times:
                times[store].append(one_run(template, scratch / "work", store, server_url))
                plan, apply = times[store][-1]
                print(f"run {run} {store}: dry run {plan:.2f} s, apply {apply:.2f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if stop is not None:
            stop()
    print(f"{args.customers:,} customers, {args.runs} runs each, medians:")
    print("| store | dry run | apply |")
    print("|---|---:|---:|")
    median = {s: [statistics.median(t[i] for t in times[s]) for i in (0, 1)] for s in times}
    for store, (plan, apply) in median.items():
        print(f"| {store} | {plan:.2f} s | {apply:.2f} s |")
    ratios = [median["postgres"][i] / median["file"][i] for i in (0, 1)]
    print(f"| postgres / file | {ratios[0]:.2f} | {ratios[1]:.2f} |")


if __name__ == "__main__":
    main()
