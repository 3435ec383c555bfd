"""Apply throughput of the executor: against the in-memory provider, the local world file, and the
emulator over HTTP, each compared with the throughput bound.

    python bench/apply_throughput.py                      # local world and emulator (the goals)
    python bench/apply_throughput.py --provider memory    # the executor alone
        [--customers 1000,10000] [--actions 2000] [--parallelism 1,8] [--latency 0.02]
        [--provider local,emulator|memory] [--store memory|file] [--removals 1000] [--full]

Local world and emulator: a world of N customers with 2 subscriptions each, and a plan of
``--actions`` quantity changes (independent: no action waits for another) spread over the
customers, applied with the journal on disk (fsync included) as ``reconcile`` does. The bound at
parallelism P is ceil(actions / P) x latency (one request per action: the provider PATCHes the
resource as it observed it); the figure that matters is the ratio of the wall time to that bound
(1.00 is perfect). The local world has no latency of its own: its runs are compared with the same
bound as the emulator's. The emulator runs in its own process (as ``reconcile emulator``), with
``--latency`` on every request and no rate limit; its observation before the apply (one customer
list in pages, then each customer's subscriptions, P at once) is timed too, against its bound
(pages + ceil(customers / P)) x latency. ``--sample N`` applies only N of the actions at the
sizes where the old code would take too long (ratios still compare; the row says so).

Memory provider (``--provider memory``): N customer removals (each: suspend every subscription,
then remove the relationship), bound max(critical path, calls / P) x latency; parallelism 1 runs a
tenth of the removals unless ``--full``. ``--store file`` journals to a real state directory."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout first

from controller.apply import Executor  # noqa: E402
from controller.current import CurrentState, Customer, Partner, Subscription  # noqa: E402
from controller.plan import Plan, plan  # noqa: E402
from controller.providers.local import LocalProvider, render_world  # noqa: E402
from controller.providers.memory import MemoryProvider  # noqa: E402
from controller.providers.partnercenter import PartnerCenterProvider  # noqa: E402
from controller.records import FileStore, MemoryStore, Records  # noqa: E402
from controller.spec import CustomerSpec, Desired, SubscriptionSpec  # noqa: E402

PARTNER = "0e1ef465-9299-45ce-a98c-57c49bded0ce"
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
SUBSCRIPTIONS = 2  # per customer in the local and emulator scenarios
PAGE_SIZE = 100  # the emulator's customers per page (its default)


def gid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# --- memory provider: the executor alone ---------------------------------------------------


def removals_scenario(removals: int, subscriptions: int) -> tuple[Desired, CurrentState, Records]:
    keep = CustomerSpec(id=gid(0), name="Kept")
    customers = [Customer(id=gid(0), name="Kept")]
    for c in range(1, removals + 1):
        subs = tuple(Subscription(id=gid(c * 1000 + s)) for s in range(subscriptions))
        customers.append(Customer(id=gid(c), name=f"C{c}", subscriptions=subs))
    current = CurrentState(partner={"id": PARTNER}, customers=tuple(customers))  # type: ignore[arg-type]
    records = Records(managed=tuple(gid(c) for c in range(1, removals + 1)))
    return Desired(customers={gid(0): keep}), current, records  # type: ignore[dict-item]


def measure_memory(
    removals: int, subscriptions: int, latency: float, parallelism: int, store: str
) -> dict[str, Any]:
    desired, current, records = removals_scenario(removals, subscriptions)
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


# --- local world and emulator: 2,000 quantity changes ----------------------------------------


def world_of(customers: int) -> CurrentState:
    return CurrentState.model_construct(
        partner=Partner(id=PARTNER, name="Bench"),
        customers=tuple(
            Customer(
                id=gid(c),
                name=f"Customer {c}",
                domain=f"c{c}.onmicrosoft.com",
                subscriptions=tuple(
                    Subscription(id=gid(10_000_000 + c * 10 + s), offer=f"OFFER-{s}", quantity=5)
                    for s in range(SUBSCRIPTIONS)
                ),
            )
            for c in range(customers)
        ),
    )


def changed_quantities(world: CurrentState, actions: int) -> Desired:
    """Specs for every customer, with ``actions`` subscriptions' quantities changed, spread
    evenly over the customers."""
    everything = [(c, s) for s in range(SUBSCRIPTIONS) for c in world.customers]
    step = max(1, len(everything) // actions)
    changed = {(c.id, s) for c, s in everything[::step][:actions]}
    specs = {
        c.id: CustomerSpec(
            id=c.id,
            name=c.name,
            domain=c.domain,
            subscriptions=tuple(
                SubscriptionSpec(
                    id=sub.id,
                    offer=sub.offer,
                    quantity=sub.quantity + 1 if (c.id, s) in changed else sub.quantity,
                )
                for s, sub in enumerate(c.subscriptions)
            ),
        )
        for c in world.customers
    }
    return Desired(customers=specs)  # type: ignore[arg-type]


def start_emulator(state: Path, latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.entry",
            "emulator",
            "--state",
            str(state),
            "--port",
            "0",
            "--latency",
            str(latency),
            "--token",
            TOKEN,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,  # this checkout's controller, whatever is installed
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line}{process.stderr.read()}")
    return process, match[0]


def measure_world(
    provider_kind: str,
    customers: int,
    actions: int,
    parallelism: int,
    latency: float,
    sample: int | None,
) -> dict[str, Any]:
    world = world_of(customers)
    desired = changed_quantities(world, actions)
    records = Records(managed=tuple(c.id for c in world.customers))
    row: dict[str, Any] = {"provider": provider_kind, "customers": customers, "P": parallelism}
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory) / "state"
        state.mkdir()
        (state / "world.json").write_text(render_world(world))
        journal = Path(directory) / "journal"
        emulator = None
        provider: Any
        try:
            if provider_kind == "local":
                provider = LocalProvider(state)
                current = provider.observe()
            else:
                emulator, url = start_emulator(state, latency)
                env = {
                    "PARTNER_CENTER_BASE_URL": url,
                    "PARTNER_CENTER_TENANT_ID": PARTNER,
                    "PARTNER_CENTER_ACCESS_TOKEN": TOKEN,
                }
                provider = PartnerCenterProvider.from_env(env, parallelism=parallelism)
                started = time.perf_counter()
                current = provider.observe()
                observed = time.perf_counter() - started
                pages = math.ceil(customers / PAGE_SIZE)
                observe_bound = (pages + math.ceil(customers / parallelism)) * latency
                row.update(
                    observe=observed,
                    observe_bound=observe_bound,
                    observe_ratio=observed / observe_bound,
                )
            made = plan(desired, current, records)
            assert len(made.actions) == actions, len(made.actions)
            if sample is not None and sample < actions:
                made = Plan(fingerprint=made.fingerprint, actions=made.actions[:sample])
            applied = len(made.actions)
            executor = Executor(provider, FileStore(journal), parallelism=parallelism)
            started = time.perf_counter()
            results = executor.run(made)
            if provider_kind == "local":
                provider.close()  # the log folded into world.json, as at the end of a run
            wall = time.perf_counter() - started
            failed = [r for r in results if r.status != "applied"]
            assert not failed, failed[:3]
        finally:
            if emulator is not None:
                emulator.terminate()
                emulator.wait()
    bound = math.ceil(applied / parallelism) * latency
    row.update(
        actions=applied, wall=wall, bound=bound, ratio=wall / bound, per_action=wall / applied
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--provider", default="local,emulator")
    parser.add_argument("--customers", default="1000,10000")
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        help="apply only this many of the actions (for the slow old code)",
    )
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--parallelism", default=None, help="default 1,8 (memory: 1,8,32)")
    parser.add_argument("--removals", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--store", choices=("memory", "file"), default="memory")
    parser.add_argument("--full", action="store_true", help="memory: parallelism 1 at full size")
    args = parser.parse_args()
    if args.provider == "memory":
        header = ("parallelism", "removals", "calls", "wall s", "bound s", "ratio")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, (11, 8, 6, 8, 8, 6), strict=True)))
        for p in (int(x) for x in (args.parallelism or "1,8,32").split(",")):
            removals = args.removals if p > 1 or args.full else max(1, args.removals // 10)
            r = measure_memory(removals, args.subscriptions, args.latency, p, args.store)
            print(
                f"{r['parallelism']:>11} {r['removals']:>8} {r['calls']:>6} {r['wall']:>8.2f} "
                f"{r['bound']:>8.2f} {r['ratio']:>6.2f}"
            )
        return
    print("provider  customers  P  actions   wall s  bound s  ratio  ms/action  observe s (ratio)")
    for kind in args.provider.split(","):
        for customers in (int(x) for x in args.customers.split(",")):
            for p in (int(x) for x in (args.parallelism or "1,8").split(",")):
                r = measure_world(kind, customers, args.actions, p, args.latency, args.sample)
                observe = (
                    f"{r['observe']:.2f} ({r['observe_ratio']:.2f})" if "observe" in r else "-"
                )
                print(
                    f"{kind:<9} {customers:>9} {p:>2} {r['actions']:>8} {r['wall']:>8.2f} "
                    f"{r['bound']:>8.2f} {r['ratio']:>6.2f} {1000 * r['per_action']:>10.1f}  "
                    f"{observe}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
