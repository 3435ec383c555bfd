"""The fast paths of a plan give exactly what the plain ones gave: the diff (one DeepDiff over
all differing customers instead of one each) and the fingerprint (hashed from the models' field
values instead of a dump), on random scenarios and on a generated world."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from test_properties import SETTINGS, scenarios

from controller.current import CurrentState
from controller.diff import (
    CustomerDiff,
    FieldChange,
    _differing,
    _matches,
    _views,
    diff_customer,
    diff_states,
)
from controller.ids import CustomerId, SubscriptionId
from controller.plan import fingerprint
from controller.providers.local import read_world
from controller.records import Records
from controller.spec import CustomerSpec, Desired, load_specs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from generate import generate  # noqa: E402


def plain_fingerprint(current: CurrentState, records: Records) -> str:
    """The fingerprint as a dump of the models (what it was before the fast path)."""
    document = current.model_dump(exclude={"now", "unobserved"})
    for customer in document["customers"]:
        customer["subscriptions"] = sorted(customer["subscriptions"], key=lambda s: s["id"])
    document["customers"] = sorted(document["customers"], key=lambda c: c["id"])
    document["records"] = records.model_dump(mode="json")
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def plain_diff(customer_id: CustomerId, spec: CustomerSpec | None, customer: Any) -> CustomerDiff:
    """One customer, one DeepDiff (what the diff was before the fast path)."""
    from deepdiff import DeepDiff

    if spec is None or customer is None:
        missing = tuple(SubscriptionId(s.id) for s in spec.subscriptions) if spec else ()
        return CustomerDiff(customer_id, spec, customer, missing_subscriptions=missing)
    observed = customer.subscriptions_by_id
    missing = tuple(SubscriptionId(s.id) for s in spec.subscriptions if s.id not in observed)
    unlisted: tuple[SubscriptionId, ...] = ()
    if len(spec.subscriptions) - len(missing) != len(observed):
        listed = {s.id for s in spec.subscriptions}
        unlisted = tuple(SubscriptionId(s.id) for s in customer.subscriptions if s.id not in listed)
    changes: tuple[FieldChange, ...] = ()
    if not _matches(spec, customer):
        wanted, actual = _views(spec, customer)
        if wanted != actual:
            actual, wanted = _differing(actual, wanted), _differing(wanted, actual)
            tree = DeepDiff(actual, wanted, view="tree")
            found = [
                FieldChange(
                    tuple(str(p) for p in level.path(output_format="list")), level.t1, level.t2
                )
                for kind in ("values_changed", "type_changes")
                for level in tree.get(kind, ())
            ]
            changes = tuple(sorted(found, key=lambda c: c.path))
    return CustomerDiff(customer_id, spec, customer, changes, missing, unlisted)


def plain_diffs(desired: Desired, current: CurrentState) -> tuple[CustomerDiff, ...]:
    known = current.customers_by_id
    ids = sorted(set(desired.customers) | set(known))
    return tuple(
        plain_diff(CustomerId(i), desired.customers.get(CustomerId(i)), known.get(i)) for i in ids
    )


@SETTINGS
@given(scenarios())
def test_the_fast_diff_and_fingerprint_equal_the_plain_ones(scenario: tuple) -> None:
    desired, current, records = scenario
    assert diff_states(desired, current) == plain_diffs(desired, current)
    for customer_id, spec in desired.customers.items():
        customer = current.customers_by_id.get(customer_id)
        assert diff_customer(customer_id, spec, customer) == plain_diff(customer_id, spec, customer)
    assert fingerprint(current, records) == plain_fingerprint(current, records)


def test_the_fast_diff_and_fingerprint_equal_the_plain_ones_on_a_generated_world(
    tmp_path: Path,
) -> None:
    generate(tmp_path, customers=300, subscriptions=4, drift=0.3, remove=0.1)
    desired = load_specs(tmp_path / "specs")
    current = read_world(tmp_path / "state" / "world.json")
    diffs = diff_states(desired, current)
    assert sum(1 for d in diffs if d.changes) > 50  # many customers differ: one DeepDiff for all
    assert diffs == plain_diffs(desired, current)
    records = Records(managed=tuple(current.customers_by_id))
    assert fingerprint(current, records) == plain_fingerprint(current, records)


def test_models_read_alike_share_one_fields_set_and_copies_stay_apart(tmp_path: Path) -> None:
    generate(tmp_path, customers=20, subscriptions=3)
    current = read_world(tmp_path / "state" / "world.json")
    desired = load_specs(tmp_path / "specs")
    for subscriptions in (
        [s for c in current.customers for s in c.subscriptions],
        [s for c in desired.customers.values() for s in c.subscriptions],
    ):
        assert len({id(s.model_fields_set) for s in subscriptions}) == 1  # one set for all
    first, second = current.customers[0].subscriptions[:2]
    fields = set(second.model_fields_set)
    changed = first.model_copy(update={"suspended_by": "partner"})
    assert "suspended_by" in changed.model_fields_set
    assert second.model_fields_set == fields  # the shared set itself is never changed
