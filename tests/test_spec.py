"""Spec loading: merging, normalisation, and a FILE:LINE: field: message for every mistake."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from helpers import gid

from controller.errors import ReconcileError, SpecError
from controller.spec import load_specs, spec_json_schema

GOOD = f"""\
customers:
  - id: {gid(1)}
    name: Contoso
    subscriptions:
      - id: {gid(11)}
        quantity: 3
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(directory: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_specs(directory)
    return [str(p) for p in caught.value.problems]


def test_files_are_found_recursively_and_merged(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "nested/deeper/b.yml", f"customers:\n  - id: {gid(2)}\n    name: Fabrikam\n")
    write(tmp_path, "partner.yaml", f"partner:\n  id: {gid(500)}\n  prune: none\n")
    write(tmp_path, "notes.txt", "not a spec")
    desired = load_specs(tmp_path)
    assert set(desired.customers) == {gid(1), gid(2)}
    assert desired.partner.prune == "none" and desired.partner.id == gid(500)
    assert [Path(f).name for f in desired.files] == ["a.yaml", "b.yml", "partner.yaml"]


def test_ids_are_lower_cased(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        GOOD.upper()
        .replace("CUSTOMERS", "customers")
        .replace("NAME", "name")
        .replace("ID:", "id:")
        .replace("SUBSCRIPTIONS", "subscriptions")
        .replace("QUANTITY", "quantity"),
    )
    desired = load_specs(tmp_path)
    assert list(desired.customers) == [gid(1)]
    assert desired.customers[gid(1)].subscriptions[0].id == gid(11)  # type: ignore[index]


def test_empty_files_and_empty_lists_are_allowed(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "comment.yaml", "# nothing yet\n")
    write(tmp_path, "null.yaml", "customers:\n")
    assert load_specs(tmp_path).customers == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "customers:\n\t- id: x\n",
            "a.yaml:2: YAML syntax error: found character that cannot start any token",
        ),
        (
            GOOD + "    colour: red\n",
            "a.yaml:7: customers[0].colour: unknown key; allowed keys are: id, name",
        ),
        (
            GOOD.replace(gid(11), "not-a-guid"),
            "a.yaml:5: customers[0].subscriptions[0].id: must be a GUID",
        ),
        (
            GOOD + "        status: paused\n",
            "a.yaml:7: customers[0].subscriptions[0].status: "
            "must be one of 'active', 'suspended' or 'cancelled', got 'paused'",
        ),
        (
            GOOD + "        status: cancelled\n",
            "a.yaml:7: customers[0].subscriptions[0].status: status: cancelled is for "
            "new-commerce subscriptions only: add commerce: nce to say this is one",
        ),
        (
            GOOD + "        commerce: legacy\n        status: cancelled\n",
            "a.yaml:8: customers[0].subscriptions[0].status: status: cancelled is for "
            "new-commerce subscriptions only, and this one is commerce: legacy "
            "(a legacy subscription is suspended instead)",
        ),
        (
            GOOD + "        auto_renew: false\n",
            "a.yaml:7: customers[0].subscriptions[0].auto_renew: auto_renew is for "
            "new-commerce subscriptions only: add commerce: nce to say this is one",
        ),
        (
            GOOD + "        commerce: legacy\n        auto_renew: false\n",
            "a.yaml:8: customers[0].subscriptions[0].auto_renew: auto_renew is for "
            "new-commerce subscriptions only, and this one is commerce: legacy",
        ),
        (
            GOOD + "        commerce: nce\n        auto_renew: 'no'\n",
            "a.yaml:8: customers[0].subscriptions[0].auto_renew: must be true or false",
        ),
        (
            GOOD + "        commerce: csp\n",
            "a.yaml:7: customers[0].subscriptions[0].commerce: must be one of",
        ),
        (
            "partner:\n  offboarding: cancel_now\n",
            "a.yaml:2: partner.offboarding: must be one of 'end_at_term' or 'cancel_in_window'",
        ),
        (
            GOOD.replace("    subscriptions:", "    offboarding: never\n    subscriptions:"),
            "a.yaml:4: customers[0].offboarding: must be one of",
        ),
        (
            GOOD.replace("quantity: 3", "quantity: 0"),
            "a.yaml:6: customers[0].subscriptions[0].quantity: must be >= 1, got 0",
        ),
        (
            GOOD.replace("quantity: 3", "quantity: '3'"),
            "a.yaml:6: customers[0].subscriptions[0].quantity: must be a whole number, got str '3'",
        ),
        (GOOD.replace("    name: Contoso\n", ""), "a.yaml:2: customers[0].name: is required"),
        (
            GOOD.replace("Contoso", "Contoso\n    name: Again"),
            "a.yaml:4: YAML syntax error: duplicate key 'name'",
        ),
        ("- just a list\n", "a.yaml:1: must be a mapping with the keys partner and customers"),
        ("customers: {}\n", "a.yaml:1: customers: must be a list"),
        (
            GOOD + f"      - id: {gid(11)}\n",
            "a.yaml:7: customers[0].subscriptions[1].id: duplicate subscription id",
        ),
        (
            GOOD + "    protected: maybe\n",
            "a.yaml:7: customers[0].protected: must be true or false",
        ),
        (
            "partner:\n  prune: always\n",
            "a.yaml:2: partner.prune: must be one of 'managed' or 'none'",
        ),
    ],
    ids=[
        "syntax error",
        "unknown key",
        "bad GUID",
        "bad status",
        "cancelled without commerce",
        "cancelled on a legacy subscription",
        "auto_renew without commerce",
        "auto_renew on a legacy subscription",
        "auto_renew not a boolean",
        "bad commerce",
        "bad partner offboarding",
        "bad customer offboarding",
        "quantity below 1",
        "quantity as text",
        "missing name",
        "duplicate key",
        "not a mapping",
        "customers not a list",
        "duplicate subscription",
        "protected not a boolean",
        "bad prune",
    ],
)
def test_each_mistake_is_one_line_with_file_line_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    write(tmp_path, "a.yaml", text)
    found = problems(tmp_path)
    assert len(found) == 1, found
    file, rest = expected.split(":", 1)
    assert found[0].startswith(f"{tmp_path / file}:{rest}"), found[0]


def test_duplicate_customer_across_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", f"# another\ncustomers:\n  - id: {gid(1).upper()}\n    name: Again\n")
    [message] = problems(tmp_path)
    assert message.startswith(
        f"{tmp_path / 'b.yaml'}:3: customers[0].id: duplicate customer id {gid(1)}"
    )
    assert message.endswith(f"also in {tmp_path / 'a.yaml'}:2")


def test_partner_twice_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "partner:\n  name: A\n")
    write(tmp_path, "b.yaml", "\npartner:\n  name: B\n")
    [message] = problems(tmp_path)
    assert message.startswith(
        f"{tmp_path / 'b.yaml'}:2: partner: partner is defined more than once"
    )


def test_problems_of_every_file_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "customers: [\n")
    write(tmp_path, "b.yaml", GOOD.replace("quantity: 3", "quantity: -1"))
    assert [Path(p.split(":")[0]).name for p in problems(tmp_path)] == ["a.yaml", "b.yaml"]


def test_missing_specs_directory(tmp_path: Path) -> None:
    with pytest.raises(ReconcileError, match="does not exist"):
        load_specs(tmp_path / "nope")


def test_yaml_1_1_booleans_are_booleans(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        GOOD.replace("    name: Contoso\n", "    name: Contoso\n    protected: yes\n"),
    )
    assert load_specs(tmp_path).customers[gid(1)].protected is True  # type: ignore[index]


def test_schema_describes_the_spec_format() -> None:
    schema = spec_json_schema()
    json.dumps(schema)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == {"partner", "customers"}
    customer = schema["$defs"]["CustomerSpec"]
    assert customer["additionalProperties"] is False
    assert "name" in customer["required"]
    assert customer["properties"]["id"]["pattern"].startswith("^[0-9a-fA-F]{8}")


def test_new_commerce_settings_load(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "partner:\n  offboarding: cancel_in_window\n"
        + GOOD.replace("    subscriptions:", "    offboarding: end_at_term\n    subscriptions:")
        + "        commerce: nce\n        status: cancelled\n        auto_renew: false\n",
    )
    desired = load_specs(tmp_path)
    assert desired.partner.offboarding == "cancel_in_window"
    contoso = desired.customers[gid(1)]  # type: ignore[index]
    assert contoso.offboarding == "end_at_term"
    subscription = contoso.subscriptions[0]
    assert (subscription.commerce, subscription.status, subscription.auto_renew) == (
        "nce",
        "cancelled",
        False,
    )
