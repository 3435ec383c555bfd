"""How `reconcile --dry-run --output json` scales: whole processes, cold and warm, as ratios to
PyYAML's C loader parsing the same spec files in the same run.

    python bench/plan_scale.py [--sizes 1000,10000,50000] [--layouts files,big] [--repeat 3]
                               [--drift 0.05] [--plot bench/plan_scale.png] [--reconcile PATH]

Each size gets a generated spec and world (``generate.py``: 5 subscriptions a customer, 5% of
customers differing), in two layouts: ``files``, one file per customer, and ``big``, big files of
at most 10,000 customers each (one file up to 10,000; a spec file may not exceed 16 MiB).
For each, in turn and ``--repeat`` times:

- ``yaml``: a Python process that reads every spec file and parses it with
  ``yaml.load(text, Loader=yaml.CSafeLoader)`` (PyYAML's libyaml C loader), nothing else;
- ``cold``: the dry run without a parse cache (a fresh ``PARTNER_RECONCILER_CACHE_DIR``);
- ``warm``: the dry run again, specs and world unchanged: the previous run's output is reused
  (``controller/planreuse.py``);
- ``changed``: "warm, one changed": the dry run after one customer's quantity is edited in its
  spec file, a real plan with the parse cache warm (the edited file parsed again).

The generated world keeps its own clock (``now``), as the shipped example's does: a world without
one is planned at the wall clock, and such a run is never reused.

Figures are medians of the wall times and of the peak resident set sizes, and the medians of the
ratios cold/yaml, warm/yaml and changed/yaml taken pair by pair in the same round (the machine's
speed drifts between rounds), of wall time and of CPU time (user and system: on a machine shared
with other work, wall time counts the waits for a processor too). Quote ratios, not seconds."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECONCILE = Path(sys.executable).with_name("reconcile")
BIG_FILE_CUSTOMERS = 10_000
CLOCK = "2026-12-01T09:00:00Z"
KINDS = ("cold", "warm", "changed")

C_LOADER = """
import sys, yaml
from pathlib import Path
for path in sorted(Path(sys.argv[1]).rglob("*.yaml")):
    yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
"""


def measure(command: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, peak resident MB and CPU seconds (user and system) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 2):
        raise SystemExit(
            f"{command} failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


@contextmanager
def edited_customer(specs: Path) -> Iterator[None]:
    """One customer's first quantity one higher, in its spec file, for the time of a run."""
    path = min((specs / "customers").glob("*.yaml"))
    text = path.read_text(encoding="utf-8")
    match = re.search(r"quantity: (\d+)", text)
    assert match is not None, path
    edited = f"{text[: match.start(1)]}{int(match.group(1)) + 1}{text[match.end(1) :]}"
    path.write_text(edited, encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(text, encoding="utf-8")


def run_case(
    customers: int, layout: str, drift: float, repeat: int, reconcile: Path
) -> dict[str, float]:
    """The medians of one size and layout."""
    per_file = 1 if layout == "files" else BIG_FILE_CUSTOMERS
    python = str(reconcile.with_name("python"))  # the same installation as reconcile
    rounds: list[dict[str, tuple[float, float, float]]] = []
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        # In a process of its own: a process started from this one counts this one's memory
        # in its peak (fork), so this one stays small.
        subprocess.run(
            [sys.executable, str(HERE / "generate.py"), str(root), "--customers", str(customers)]
            + ["--subscriptions", "5", "--drift", str(drift), "--per-file", str(per_file)]
            + ["--clock", CLOCK],
            check=True,
        )
        dry_run = [str(reconcile), "--dry-run", "--output", "json"]
        measure(dry_run, root)  # a first run, not counted: the files in the page cache
        for n in range(repeat):
            os.environ["PARTNER_RECONCILER_CACHE_DIR"] = str(root / f"cache{n}")  # fresh: cold
            figures = {"yaml": measure([python, "-c", C_LOADER, str(root / "specs")], root)}
            figures["cold"] = measure(dry_run, root)
            figures["warm"] = measure(dry_run, root)
            with edited_customer(root / "specs"):
                figures["changed"] = measure(dry_run, root)
            rounds.append(figures)
    result: dict[str, float] = {}
    for kind in ("yaml", *KINDS):
        result[f"{kind}_s"] = statistics.median(r[kind][0] for r in rounds)
        result[f"{kind}_mb"] = statistics.median(r[kind][1] for r in rounds)
        result[f"{kind}_cpu"] = statistics.median(r[kind][2] for r in rounds)
    for kind in KINDS:
        result[f"{kind}_x"] = statistics.median(r[kind][0] / r["yaml"][0] for r in rounds)
        result[f"{kind}_cpu_x"] = statistics.median(r[kind][2] / r["yaml"][2] for r in rounds)
    return result


def plot(results: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.2, 5.6))
    styles = {"yaml": "^--", "cold": "o-", "changed": "d-", "warm": "s-"}
    labels = {
        "yaml": "PyYAML C loader (parse only)",
        "cold": "dry run, cold",
        "changed": "dry run, warm, one customer changed",
        "warm": "dry run, warm, unchanged (reused)",
    }
    layouts = {"files": "one file a customer", "big": "big files"}
    for layout, by_size in results.items():
        for kind, style in styles.items():
            points = [(n, r[f"{kind}_cpu"]) for n, r in sorted(by_size.items())]
            axes.plot(
                *zip(*points, strict=True),
                style,
                label=f"{labels[kind]} ({layouts[layout]})",
                alpha=1.0 if layout == "files" else 0.5,
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("customers (5 subscriptions each)")
    axes.set_ylabel("whole process, CPU s (user + system), median")
    axes.set_title("reconcile --dry-run against the C loader's parse")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--layouts", default="files,big", help="files, big, or both")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument("--plot", type=Path, help="write a log-log PNG of CPU time against size")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--reconcile",
        type=Path,
        default=RECONCILE,
        help="the reconcile command to measure (its folder's python runs the C loader)",
    )
    args = parser.parse_args()
    results: dict[str, dict[int, dict[str, float]]] = {}
    header = (
        f"{'customers':>9} {'layout':>6} {'yaml s':>7} {'cold s':>7} {'warm s':>7} "
        f"{'changed s':>9} {'cold/yaml':>9} {'warm/yaml':>9} {'changed/yaml':>12} "
        f"{'cpu: cold/yaml':>14} {'warm/yaml':>9} {'changed/yaml':>12} "
        f"{'peak MB cold/warm/changed':>26}"
    )
    print(header)
    for layout in args.layouts.split(","):
        for size in (int(n) for n in args.sizes.split(",")):
            r = run_case(size, layout, args.drift, args.repeat, args.reconcile)
            results.setdefault(layout, {})[size] = r
            print(
                f"{size:>9} {layout:>6} {r['yaml_s']:>7.2f} {r['cold_s']:>7.2f} "
                f"{r['warm_s']:>7.2f} {r['changed_s']:>9.2f} {r['cold_x']:>8.2f}x "
                f"{r['warm_x']:>8.2f}x {r['changed_x']:>11.2f}x "
                f"{r['cold_cpu_x']:>13.2f}x {r['warm_cpu_x']:>8.2f}x {r['changed_cpu_x']:>11.2f}x "
                f"{r['cold_mb']:>8.0f} / {r['warm_mb']:.0f} / {r['changed_mb']:.0f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
