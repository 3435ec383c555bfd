"""Mistyped customer ids (CONTRACT section 8): a slip in a GUID must not quietly turn into the
removal of the real customer and a request to a tenant that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import customer, gid, records, run, snapshot, sub, want, world

from controller.ids import CustomerId
from controller.plan import plan
from controller.spec import CustomerSpec, Desired
from controller.typos import find_mistyped_ids, within_edits

CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"


@pytest.mark.parametrize(
    ("a", "b", "near"),
    [
        (CONTOSO, CONTOSO.replace("8a", "8b", 1), True),  # one substitution
        (CONTOSO, CONTOSO.replace("36b8", "63b8"), True),  # two characters swapped: two edits
        (CONTOSO, CONTOSO[:5] + CONTOSO[6:] + "a", True),  # one dropped, one added at the end
        (CONTOSO, CONTOSO.replace("36b8a5ac", "36b8a5ff"), True),
        (CONTOSO, CONTOSO.replace("36b8a5ac", "36b8afff"), False),  # three substitutions
        (CONTOSO, gid(1), False),
        ("abc", "abc", True),
        ("abc", "", False),
    ],
)
def test_within_two_edits(a: str, b: str, near: bool) -> None:
    assert within_edits(a, b) is near
    assert within_edits(b, a) is near


NEW_TENANT = "7d3c1a52-0b0e-4c1e-9f5e-2a1c3b4d5e6f"  # far from every gid(n)
CURRENT = world(customer(1, sub(11), name="Contoso Ltd"), customer(2, sub(21), name="Fabrikam"))


def _listed(customer_id: str, name: str) -> CustomerSpec:
    return CustomerSpec(id=customer_id, name=name)


def _typo(n: int) -> str:
    """gid(n) with its first character changed."""
    return "1" + gid(n)[1:]


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ([], []),  # nothing unknown
        ([_listed(_typo(1), "Contoso Ltd")], [(_typo(1), gid(1), True)]),  # both: the name says
        ([_listed(_typo(1), "Renamed")], [(_typo(1), gid(1), False)]),
        ([_listed(NEW_TENANT, "  contoso   LTD ")], [(NEW_TENANT, gid(1), True)]),
        ([_listed(NEW_TENANT, "Contoso Cloud Ltd")], []),  # a new tenant, told apart
    ],
    ids=[
        "all known",
        "id one edit away",
        "id one edit away, renamed",
        "same name, another id",
        "distinct name and id",
    ],
)
def test_find_mistyped_ids(
    listed: list[CustomerSpec], expected: list[tuple[str, str, bool]]
) -> None:
    specs = [want(2, name="Fabrikam"), *listed]
    desired = Desired(customers={CustomerId(s.id): s for s in specs})
    made = plan(desired, CURRENT, records(managed=(1, 2)))
    found = find_mistyped_ids(desired, CURRENT, made)
    assert [(f.spec_id, f.removed.id, f.same_name) for f in found] == expected


def test_a_customer_the_plan_does_not_remove_is_no_reason() -> None:
    specs = [want(1, name="Contoso Ltd"), want(2, name="Fabrikam"), _listed(_typo(2), "Fabrikam")]
    desired = Desired(customers={CustomerId(s.id): s for s in specs})
    made = plan(desired, CURRENT, records(managed=(1, 2)))
    assert find_mistyped_ids(desired, CURRENT, made) == []


def _mistype_contoso(example: Path) -> str:
    path = example / "specs" / "customers" / "contoso.yaml"
    typo = CONTOSO[:-1] + "b"
    path.write_text(path.read_text().replace(CONTOSO, typo))
    return typo


def test_a_mistyped_id_is_refused_naming_the_spec_line_and_the_customer(example: Path) -> None:
    typo = _mistype_contoso(example)
    before = snapshot(example)
    for command in (["--dry-run"], ["--dry-run", "--output", "json"], ["--yes"]):
        result = run(*command, cwd=example)
        assert result.returncode == 1, (command, result.stdout)
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{Path('specs/customers/contoso.yaml')}:2: customers[0].id: ")
        assert typo in line and f"Contoso Ltd ({CONTOSO})" in line
    assert snapshot(example) == before  # nothing applied
