"""Generate a specs directory and a local world of any size, for tests and benchmarks.

    python bench/generate.py OUT --customers 1000 --subscriptions 5 --drift 0.05 [--remove 0.1]

Customers ``--remove`` (a share) are managed but left out of the specs (each becomes a removal);
``--drift`` of the rest differ in one subscription's quantity. ``--one-file`` writes one big spec
file instead of one per customer, ``--per-file N`` files of N customers; ``--clock`` gives the
world a clock of its own (``now``)."""

from __future__ import annotations

import argparse
import json
import random
import uuid
from pathlib import Path

import yaml

PARTNER = "0e1ef465-9299-45ce-a98c-57c49bded0ce"


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(
    out: Path,
    *,
    customers: int,
    subscriptions: int,
    drift: float = 0.0,
    remove: float = 0.0,
    one_file: bool = False,
    per_file: int = 1,
    seed: int = 1,
    clock: str | None = None,
) -> None:
    rng = random.Random(seed)
    world, specs, managed = [], [], []
    for n in range(customers):
        customer_id = guid(rng)
        subs = [
            {
                "id": guid(rng),
                "offer": "CFQ7TTC0LH18",
                "name": f"Subscription {s}",
                "quantity": rng.randint(1, 50),
                "status": "active",
            }
            for s in range(subscriptions)
        ]
        name = f"Customer {n:06d}"
        world.append(
            {
                "id": customer_id,
                "name": name,
                "domain": f"c{n}.onmicrosoft.com",
                "relationship": "reseller",
                "subscriptions": subs,
            }
        )
        managed.append(customer_id)
        if rng.random() < remove:
            continue
        listed = [
            {"id": s["id"], "offer": s["offer"], "name": s["name"], "quantity": s["quantity"]}
            for s in subs
        ]
        if listed and rng.random() < drift:
            listed[0]["quantity"] += 1
        specs.append({"id": customer_id, "name": name, "subscriptions": listed})
    state, spec_dir = out / "state", out / "specs"
    state.mkdir(parents=True, exist_ok=True)
    spec_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, object] = {"partner": {"id": PARTNER, "name": "Bench Partner"}}
    if clock is not None:
        document["now"] = clock
    (state / "world.json").write_text(json.dumps({**document, "customers": world}, indent=1))
    (state / "records.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "partner_id": PARTNER,
                "managed": sorted(managed),
                "protected": [],
                "pending": [],
            },
            indent=1,
        )
    )
    (spec_dir / "partner.yaml").write_text(yaml.safe_dump({"partner": {"id": PARTNER}}))
    if one_file:
        per_file = max(len(specs), 1)
    (spec_dir / "customers").mkdir(exist_ok=True)
    for start in range(0, len(specs), per_file):
        chunk = specs[start : start + per_file]
        name = chunk[0]["id"] if per_file == 1 else f"customers-{start // per_file:04d}"
        (spec_dir / "customers" / f"{name}.yaml").write_text(
            yaml.safe_dump({"customers": chunk}, sort_keys=False)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument("--remove", type=float, default=0.0)
    parser.add_argument("--one-file", action="store_true")
    parser.add_argument("--per-file", type=int, default=1, help="customers a spec file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clock", help="the world's own clock (ISO 8601 UTC); default: none")
    args = parser.parse_args()
    generate(
        args.out,
        customers=args.customers,
        subscriptions=args.subscriptions,
        drift=args.drift,
        remove=args.remove,
        one_file=args.one_file,
        per_file=args.per_file,
        seed=args.seed,
        clock=args.clock,
    )


if __name__ == "__main__":
    main()
