"""Mistyped customer ids (CONTRACT section 8): a one-character slip in a customer's GUID would
otherwise plan the removal of the real customer and a relationship request to a tenant that does
not exist, with no warning at all.

The rule, exactly: a customer id in the specs that the current state does not know, while a
managed customer that the plan would remove has the same name (ignoring case and runs of spaces)
or an id within two character edits of it, makes the plan an error. Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .current import CurrentState, Customer
from .diff import normalize_name
from .errors import SpecError, SpecProblem
from .i18n import _
from .ids import CustomerId
from .plan import Plan
from .spec import Desired

MAX_EDITS = 2
_CHUNKS = MAX_EDITS + 1  # pigeonhole: at most two edits leave one of three chunks untouched


@dataclass(frozen=True)
class MistypedId:
    """A customer id of the specs that looks like a mistyped id of one the plan would remove."""

    spec_id: CustomerId
    removed: Customer
    same_name: bool


def within_edits(a: str, b: str, limit: int = MAX_EDITS) -> bool:
    """Whether ``a`` becomes ``b`` in at most ``limit`` insertions, deletions or substitutions
    (Levenshtein distance), computed in a band of width ``limit`` only."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i] + [limit + 1] * len(b)
        for j in range(max(1, i - limit), min(len(b), i + limit) + 1):
            cost = previous[j - 1] + (char != b[j - 1])
            current[j] = min(cost, previous[j] + 1, current[j - 1] + 1)
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


class _Nearby:
    """The ids of removed customers, indexed so that those within two edits of an id are found
    without comparing against every one: an id within two edits keeps one of its three chunks
    intact, shifted by at most two characters."""

    def __init__(self, ids: Iterable[str]) -> None:
        self._index: dict[tuple[int, str], list[str]] = defaultdict(list)
        for value in ids:
            for number, (start, end) in enumerate(_chunks(len(value))):
                self._index[(number, value[start:end])].append(value)

    def near(self, value: str) -> list[str]:
        found: dict[str, None] = {}
        for number, (start, end) in enumerate(_chunks(len(value))):
            for shift in range(-MAX_EDITS, MAX_EDITS + 1):
                if start + shift < 0 or end + shift > len(value):
                    continue
                for candidate in self._index.get((number, value[start + shift : end + shift]), ()):
                    found.setdefault(candidate)
        return [c for c in found if within_edits(value, c)]


def _chunks(length: int) -> list[tuple[int, int]]:
    size = max(1, length // _CHUNKS)
    return [(i * size, length if i == _CHUNKS - 1 else (i + 1) * size) for i in range(_CHUNKS)]


def removed_customers(plan: Plan) -> set[CustomerId]:
    """Customers whose relationship the plan removes, now or once a blocker ends."""
    planned = {CustomerId(a.customer_id) for a in plan.actions if a.type == "remove_relationship"}
    waiting = {CustomerId(b.customer_id) for b in plan.blocked if b.type == "remove_relationship"}
    return planned | waiting


def find_mistyped_ids(desired: Desired, current: CurrentState, plan: Plan) -> list[MistypedId]:
    """Every customer id of ``desired`` unknown to ``current`` that looks like a mistyped id of a
    customer ``plan`` removes, in the specs' order."""
    known: Mapping[str, Customer] = current.customers_by_id
    removed = [known[c] for c in sorted(removed_customers(plan)) if c in known]
    unknown = [c for c in desired.customers if c not in known]
    if not removed or not unknown:
        return []
    by_name: dict[str, Customer] = {}
    for customer in removed:
        by_name.setdefault(normalize_name(customer.name), customer)
    nearby = _Nearby(c.id for c in removed)
    found = []
    for spec_id in unknown:
        same = by_name.get(normalize_name(desired.customers[spec_id].name))
        if same is not None and normalize_name(same.name):
            found.append(MistypedId(spec_id, same, same_name=True))
        elif near := nearby.near(spec_id):
            found.append(MistypedId(spec_id, known[near[0]], same_name=False))
    return found


def check_mistyped_ids(
    desired: Desired, current: CurrentState, plan: Plan, *, line: Callable[[str, int], int]
) -> None:
    """Refuse the plan when ``find_mistyped_ids`` finds anything: one ``FILE:LINE`` problem each,
    the line looked up through ``line(file, index)`` (it reads the file again: only now)."""
    problems = []
    for item in find_mistyped_ids(desired, current, plan):
        file, index = desired.origins.get(item.spec_id, ("specs", 0))
        how = _("the same name") if item.same_name else _("an id two characters or less from it")
        message = _(
            "customer {} is not known to the current state, while the plan would remove {} ({}), "
            "which has {}: a mistyped id? Correct it (a new tenant of the same company needs a "
            "name of its own)"
        ).format(item.spec_id, item.removed.name, item.removed.id, how)
        problems.append(SpecProblem(file, line(file, index), f"customers[{index}].id", message))
    if problems:
        raise SpecError(problems)
