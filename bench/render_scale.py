"""Rendering time of a large plan in each output format, and of the apply progress lines.

    python bench/render_scale.py [--actions 10000,20000,40000]

Each plan removes N/2 customers (one suspension, then the removal: N actions), every action
mentioning a named customer and subscription. Rendering must grow linearly with the plan: the
figure to look at is the time per thousand actions, which should stay flat as N grows."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.document import ActionResult  # noqa: E402
from controller.plan import Action, Plan  # noqa: E402
from controller.render import Outcome, markdown, text  # noqa: E402
from controller.render import json as json_render  # noqa: E402


def gid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _removing(
    id_: str, type_: str, customer: str, subscription: str | None, after: tuple[str, ...]
) -> Action:
    """One action of a customer's removal (built without validation: it is only rendered)."""
    change = ("active", "suspended") if subscription else ("reseller", "none")
    return Action.model_construct(
        id=id_,
        type=type_,
        customer_id=customer,
        subscription_id=subscription,
        depends_on=after,
        from_=change[0],
        to=change[1],
        reason="customer removed from specs",
        drift=False,
    )


def removal_plan(actions: int) -> Plan:
    """N actions: for each of N/2 customers, suspend its subscription, then remove it."""
    built: list[Action] = []
    names: dict[str, str] = {}
    for n in range(actions // 2):
        customer, subscription = gid(2 * n), gid(2 * n + 1)
        names[customer], names[subscription] = f"Customer {n}", f"Subscription {n}"
        suspend, remove = f"a{2 * n + 1}", f"a{2 * n + 2}"
        built.append(_removing(suspend, "suspend_subscription", customer, subscription, ()))
        built.append(_removing(remove, "remove_relationship", customer, None, (suspend,)))
    return Plan(fingerprint="0" * 64, actions=tuple(built), names=names)


def renderers(plan: Plan) -> dict[str, Callable[[], object]]:
    failed = tuple(ActionResult(id=a.id, status="failed", error="HTTP 409") for a in plan.actions)
    outcome = Outcome(plan, failed, plan)
    return {
        "text plan": lambda: text.render_plan(plan),
        "markdown plan": lambda: markdown.render_plan(plan),
        "json plan": lambda: json_render.render_plan(plan),
        "text outcome (all failed)": lambda: text.render_outcome(outcome),
        "progress lines": lambda: [
            text.result_line(a, r, plan.names) for a, r in zip(plan.actions, failed, strict=True)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", default="10000,20000,40000")
    sizes = [int(n) for n in parser.parse_args().actions.split(",")]
    print(f"{'what':<28}" + "".join(f"{n:>12,}" for n in sizes) + "   (seconds)")
    timings: dict[str, list[float]] = {}
    for size in sizes:
        for what, render in renderers(removal_plan(size)).items():
            started = time.perf_counter()
            render()
            timings.setdefault(what, []).append(time.perf_counter() - started)
    for what, seconds in timings.items():
        print(f"{what:<28}" + "".join(f"{s:>12.2f}" for s in seconds))


if __name__ == "__main__":
    main()
