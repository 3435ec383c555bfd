"""The observation cache at scale: a pull request's dry run against the Partner Center emulator,
requests made and wall time, incremental (``--refresh auto``) against full (``--refresh full``).

    python bench/observe_scale.py [--customers 10000] [--subscriptions 2] [--rate-limit 500]
                                  [--measure-full]

The emulator serves a generated tenant (``bench/generate.py``) on loopback; the controller runs as
the real command (``reconcile --provider partner-center --dry-run``), a process of its own. The
drift baseline says the last apply converged (the specs as applied), so a pull request that
changes one customer's quantity is the change under test.

1. The cache is filled once by a full dry run without a rate limit (its requests are counted:
   that is the full refresh's request count).
2. One customer's spec changes; the pull request's dry run runs with ``--rate-limit`` (Partner
   Center's 500 requests a minute) and the emulator as it is: requests and wall time.
3. The full refresh's time at the same rate limit is extrapolated from its request count (the
   limiter's bucket holds 10 requests, then one every 60/rate seconds), unless ``--measure-full``
   runs it (about 20 minutes at 10,000 customers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from generate import PARTNER, generate  # noqa: E402

from controller.drift import spec_snapshot  # noqa: E402
from controller.emulator import Emulator, Knobs, make_server  # noqa: E402
from controller.spec import load_specs  # noqa: E402

RECONCILE = str(Path(sys.executable).with_name("reconcile"))
BURST = 10  # the rate limiter's bucket (controller/ratelimit.py)


class Counted:
    """Counts the requests the emulator answers."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.count = 0
        self._lock = threading.Lock()
        self._handle = emulator.handle
        emulator.handle = self.handle  # type: ignore[method-assign]

    def handle(self, *args: Any) -> Any:
        with self._lock:
            self.count += 1
        return self._handle(*args)


def dry_run(work: Path, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [RECONCILE, "--provider", "partner-center", "--dry-run", "--output", "json", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"reconcile failed ({done.returncode}): {done.stderr}")
    return seconds, json.loads(done.stdout)


def change_one_customer(specs: Path) -> str:
    files = sorted((specs / "customers").glob("*.yaml"))
    path = files[len(files) // 2]
    text = path.read_text()
    marker = "quantity: "
    at = text.index(marker) + len(marker)
    end = text.index("\n", at)
    path.write_text(text[:at] + str(int(text[at:end]) + 1) + text[end:])
    return path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=2)
    parser.add_argument("--rate-limit", type=float, default=500.0)
    parser.add_argument("--measure-full", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        generate(work, customers=args.customers, subscriptions=args.subscriptions, seed=1)
        (work / "state" / "applied.json").write_text(
            json.dumps(spec_snapshot(load_specs(work / "specs")))
        )
        server = make_server(work / "state", knobs=Knobs(page_size=500))
        emulator: Emulator = server.RequestHandlerClass.emulator  # type: ignore[attr-defined]
        counted = Counted(emulator)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = {
            **os.environ,
            "PARTNER_CENTER_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "PARTNER_CENTER_TENANT_ID": PARTNER,
            "PARTNER_CENTER_ACCESS_TOKEN": "bench",
            "PARTNER_RECONCILER_CACHE_DIR": str(work / "cache"),
        }
        try:
            fill_seconds, filled = dry_run(work, env, "--refresh", "full", "--rate-limit", "0")
            full_requests = counted.count
            assert not filled["has_changes"], "the generated tenant should match its specs"
            changed = change_one_customer(work / "specs")
            counted.count = 0
            rate = str(args.rate_limit)
            seconds, plan = dry_run(work, env, "--rate-limit", rate)
            requests = counted.count
            assert [a["customer_id"] for a in plan["actions"]] == [changed], plan["actions"]
            measured_full: float | None = None
            if args.measure_full:
                counted.count = 0
                measured_full, _plan = dry_run(work, env, "--refresh", "full", "--rate-limit", rate)
        finally:
            server.shutdown()
            server.server_close()
    per_second = args.rate_limit / 60.0
    full_seconds = measured_full or max(0, full_requests - BURST) / per_second
    result = {
        "customers": args.customers,
        "subscriptions_per_customer": args.subscriptions,
        "rate_limit_per_minute": args.rate_limit,
        "incremental": {
            "requests": requests,
            "seconds": round(seconds, 1),
            "observation": plan.get("observation"),
        },
        "full": {
            "requests": full_requests,
            "seconds": round(full_seconds, 1),
            "seconds_are": "measured" if measured_full else "extrapolated from requests and rate",
            "fill_without_rate_limit_seconds": round(fill_seconds, 1),
        },
        "ratio_requests": round(requests / full_requests, 4),
        "ratio_seconds": round(seconds / full_seconds, 4) if full_seconds else None,
        "rate_bound_incremental_seconds": round(max(0, requests - BURST) / per_second, 1),
    }
    print(json.dumps(result, indent=1))
    print(
        f"\n{args.customers} customers, --rate-limit {args.rate_limit:g}: one-customer change, "
        f"incremental {requests} requests in {seconds:.1f} s; full {full_requests} requests, "
        f"{full_seconds / 60:.1f} min ({result['full']['seconds_are']}); "
        f"ratio {requests / full_requests:.4f} (requests), "
        f"{seconds / full_seconds if full_seconds else math.nan:.4f} (time)"
    )


if __name__ == "__main__":
    main()
