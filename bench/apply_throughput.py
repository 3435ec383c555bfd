"""Apply throughput of the executor against the in-memory provider with a fixed per-call latency.

    python bench/apply_throughput.py [--removals 1000] [--subscriptions 4] [--latency 0.02]
                                     [--parallelism 1,8,32] [--store memory|file]

Each run applies N customer removals (each: suspend every subscription, then remove the
relationship). The ideal bound at parallelism P is max(critical path, total calls / P) x latency;
the figure that matters is the ratio of the wall time to that bound (1.00 is perfect). At
parallelism 1 the run uses a tenth of the removals unless --full, to keep it short; the ratio is
comparable all the same. ``--store file`` journals to a real state directory (fsync included)."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.apply import Executor  # noqa: E402
from controller.current import CurrentState, Customer, Subscription  # noqa: E402
from controller.plan import plan  # noqa: E402
from controller.providers.memory import MemoryProvider  # noqa: E402
from controller.records import FileStore, MemoryStore, Records  # noqa: E402
from controller.spec import CustomerSpec, Desired  # noqa: E402

PARTNER = "0e1ef465-9299-45ce-a98c-57c49bded0ce"


def gid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def scenario(removals: int, subscriptions: int) -> tuple[Desired, CurrentState, Records]:
    keep = CustomerSpec(id=gid(0), name="Kept")
    customers = [Customer(id=gid(0), name="Kept")]
    for c in range(1, removals + 1):
        subs = tuple(Subscription(id=gid(c * 1000 + s)) for s in range(subscriptions))
        customers.append(Customer(id=gid(c), name=f"C{c}", subscriptions=subs))
    current = CurrentState(partner={"id": PARTNER}, customers=tuple(customers))  # type: ignore[arg-type]
    records = Records(managed=tuple(gid(c) for c in range(1, removals + 1)))
    return Desired(customers={gid(0): keep}), current, records  # type: ignore[dict-item]


def measure(
    removals: int, subscriptions: int, latency: float, parallelism: int, store: str
) -> dict:
    desired, current, records = scenario(removals, subscriptions)
    made = plan(desired, current, records)
    calls = len(made.actions)
    bound = max(2, math.ceil(calls / parallelism)) * latency
    provider = MemoryProvider(current, latency=latency)
    with tempfile.TemporaryDirectory() as directory:
        record_store = FileStore(Path(directory)) if store == "file" else MemoryStore(records)
        executor = Executor(provider, record_store, parallelism=parallelism)
        started = time.perf_counter()
        results = executor.run(made)
        wall = time.perf_counter() - started
    assert all(r.status == "applied" for r in results)
    return {
        "parallelism": parallelism,
        "removals": removals,
        "calls": calls,
        "wall": wall,
        "bound": bound,
        "ratio": wall / bound,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--removals", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--parallelism", default="1,8,32")
    parser.add_argument("--store", choices=("memory", "file"), default="memory")
    parser.add_argument("--full", action="store_true", help="parallelism 1 at full size too")
    args = parser.parse_args()
    header = ("parallelism", "removals", "calls", "wall s", "bound s", "ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (11, 8, 6, 8, 8, 6), strict=True)))
    for p in (int(x) for x in args.parallelism.split(",")):
        removals = args.removals if p > 1 or args.full else max(1, args.removals // 10)
        row = measure(removals, args.subscriptions, args.latency, p, args.store)
        print(
            f"{row['parallelism']:>11} {row['removals']:>8} {row['calls']:>6} {row['wall']:>8.2f} "
            f"{row['bound']:>8.2f} {row['ratio']:>6.2f}"
        )


if __name__ == "__main__":
    main()
