"""How `reconcile --dry-run --output json` scales: whole processes, cold and warm, against a naive
pipeline measured in the same run.

    python bench/plan_scale.py [--sizes 1000,10000,50000] [--naive-sizes 1000,10000]
                               [--drift 0.05] [--one-file] [--plot bench/plan_scale.png]

Each size gets a generated spec and world (5 subscriptions a customer, 5% of customers differing).
cold: no parse cache (a fresh PARTNER_RECONCILER_CACHE_DIR); warm: the specs unchanged since the
previous run.
naive: pure-Python YAML for both sides, pydantic, one DeepDiff over both whole documents (what a
first implementation would do). Peak memory is each process's maximum resident set size.
Figures are printed as seconds and as ratios to the warm run of the same size."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import generate  # noqa: E402

RECONCILE = Path(sys.executable).with_name("reconcile")

NAIVE = """
import json, sys, yaml
from pathlib import Path
from deepdiff import DeepDiff
from controller.current import CurrentState
from controller.spec import SpecFile
root = Path(sys.argv[1])
def pure_yaml(path):
    return yaml.load(path.read_text(), Loader=yaml.SafeLoader)
docs = [pure_yaml(p) for p in sorted(root.glob("specs/**/*.yaml"))]
specs = [SpecFile.model_validate(d or {}) for d in docs]
world = CurrentState.model_validate(pure_yaml(root / "state/world.json"))
desired = {c.id: {s.id: {"status": s.status, "quantity": s.quantity} for s in c.subscriptions}
           for spec in specs for c in spec.customers}
current = {c.id: {s.id: {"status": s.status, "quantity": s.quantity} for s in c.subscriptions}
           for c in world.customers}
diff = DeepDiff(current, desired)
print(json.dumps({"changes": len(diff.get("values_changed", {}))}))
"""


def measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 2):
        raise SystemExit(
            f"{command} failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024


def run_size(
    customers: int, drift: float, one_file: bool, naive: bool, reconcile: Path
) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        generate(root, customers=customers, subscriptions=5, drift=drift, one_file=one_file)
        dry_run = [str(reconcile), "--dry-run", "--output", "json"]
        os.environ["PARTNER_RECONCILER_CACHE_DIR"] = str(root / "cache")  # fresh: cold
        figures = {"cold": measure(dry_run, root)}
        figures["warm"] = measure(dry_run, root)
        if naive:
            python = str(reconcile.with_name("python"))  # the same installation as reconcile
            figures["naive"] = measure([python, "-c", NAIVE, str(root)], root)
        return figures


def plot(results: dict[int, dict[str, tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for kind, style in (("cold", "o-"), ("warm", "s-"), ("naive", "^--")):
        points = [(n, r[kind][0]) for n, r in sorted(results.items()) if kind in r]
        if points:
            axes.plot(*zip(*points, strict=True), style, label=kind)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("customers (5 subscriptions each)")
    axes.set_ylabel("reconcile --dry-run, whole process (s)")
    axes.set_title("Plan time against size")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--naive-sizes", default="1000,10000")
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument("--one-file", action="store_true", help="one big spec file per size")
    parser.add_argument("--plot", type=Path, help="write a log-log PNG of time against size")
    parser.add_argument(
        "--reconcile",
        type=Path,
        default=RECONCILE,
        help="the reconcile command to measure (e.g. from a venv without the bench extras)",
    )
    args = parser.parse_args()
    naive_sizes = {int(n) for n in args.naive_sizes.split(",") if n}
    results = {}
    print(f"{'customers':>9} {'kind':>5} {'wall s':>8} {'peak MB':>8} {'x warm':>7}")
    for size in (int(n) for n in args.sizes.split(",")):
        results[size] = run_size(
            size, args.drift, args.one_file, size in naive_sizes, args.reconcile
        )
        warm = results[size]["warm"][0]
        for kind, (wall, peak) in results[size].items():
            print(f"{size:>9} {kind:>5} {wall:>8.2f} {peak:>8.0f} {wall / warm:>7.1f}")
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
