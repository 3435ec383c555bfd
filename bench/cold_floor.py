"""What a cold dry run cannot skip: the work every correct cold run does, step by step, as
ratios to PyYAML's C loader parsing the same spec files in the same run.

    python bench/cold_floor.py [--customers 10000] [--layout files] [--repeat 5] [--reconcile PATH]

Each step is a whole process of the reconcile installation's Python, doing what the one before it
did and one thing more, with the controller's own functions:

- ``imports``: the garbage collector paused, as the controller pauses it, and the modules a dry
  run with changes imports (the command line, the planner, DeepDiff);
- ``read``: and every spec file found, read and hashed (sha256, the parse cache's key);
- ``parse``: and each parsed by yaml-rs, without the checks that keep PyYAML's meaning;
- ``validate``: and each validated into the spec models;
- ``world``: and ``state/world.json`` read and validated.

then ``cold``: the dry run itself (``--dry-run --output json``, a fresh cache). What ``cold`` costs
beyond ``world`` is everything else: the checks that keep PyYAML's meaning, merging, the diff
(DeepDiff on the differing customers), the fingerprint, the plan, its output and the caches.
Figures are medians over ``--repeat`` rounds of the ratios taken pair by pair in each round, of
CPU time (user and system) and wall time."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from plan_scale import BIG_FILE_CUSTOMERS, C_LOADER, CLOCK, HERE, RECONCILE, measure

IMPORTS = """
import gc
gc.disable()  # as the controller does while loading and planning (perf.paused_gc)
from pathlib import Path
import controller.cli, controller.reconcile, deepdiff
specs = Path("specs")
"""
READ = """
import hashlib
from controller.specfiles import read_spec_bytes, spec_file_paths
texts = []
for path in spec_file_paths(specs):
    raw = read_spec_bytes(path)
    hashlib.sha256(raw).hexdigest()
    texts.append(raw.decode("utf-8"))
"""
PARSE = """
import yaml_rs
documents = [yaml_rs.loads(text, parse_datetime=False) for text in texts]
"""
VALIDATE = """
from controller.spec import SpecFile
specs = [SpecFile.model_validate(document) for document in documents]
"""
WORLD = """
from controller.providers.local import read_world
read_world(Path("state/world.json"))
"""
STEPS = {
    "imports": IMPORTS,
    "read": IMPORTS + READ,
    "parse": IMPORTS + READ + PARSE,
    "validate": IMPORTS + READ + PARSE + VALIDATE,
    "world": IMPORTS + READ + PARSE + VALIDATE + WORLD,
}


def run(customers: int, layout: str, repeat: int, reconcile: Path) -> dict[str, dict[str, float]]:
    """For each step and the dry run: the median CPU and wall ratios to the C loader."""
    per_file = 1 if layout == "files" else BIG_FILE_CUSTOMERS
    python = str(reconcile.with_name("python"))
    rounds: list[dict[str, tuple[float, float, float]]] = []
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        subprocess.run(
            [sys.executable, str(HERE / "generate.py"), str(root), "--customers", str(customers)]
            + ["--subscriptions", "5", "--drift", "0.05", "--per-file", str(per_file)]
            + ["--clock", CLOCK],
            check=True,
        )
        dry_run = [str(reconcile), "--dry-run", "--output", "json"]
        measure(dry_run, root)  # not counted: the files in the page cache
        for n in range(repeat):
            os.environ["PARTNER_RECONCILER_CACHE_DIR"] = str(root / f"cache{n}")  # fresh: cold
            figures = {"yaml": measure([python, "-c", C_LOADER, str(root / "specs")], root)}
            for step, code in STEPS.items():
                figures[step] = measure([python, "-c", code], root)
            figures["cold"] = measure(dry_run, root)
            rounds.append(figures)
    return {
        kind: {
            "cpu_x": statistics.median(r[kind][2] / r["yaml"][2] for r in rounds),
            "wall_x": statistics.median(r[kind][0] / r["yaml"][0] for r in rounds),
            "cpu_s": statistics.median(r[kind][2] for r in rounds),
        }
        for kind in ("yaml", *STEPS, "cold")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--layout", default="files", choices=("files", "big"))
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians are reported")
    parser.add_argument("--reconcile", type=Path, default=RECONCILE)
    args = parser.parse_args()
    figures = run(args.customers, args.layout, args.repeat, args.reconcile)
    print(f"{args.customers} customers, layout {args.layout}, {args.repeat} rounds")
    print(f"{'step':>9} {'CPU / C loader':>15} {'wall / C loader':>16} {'CPU s':>7}")
    for kind, row in figures.items():
        print(f"{kind:>9} {row['cpu_x']:>14.2f}x {row['wall_x']:>15.2f}x {row['cpu_s']:>7.2f}")


if __name__ == "__main__":
    main()
