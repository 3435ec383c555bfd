"""``reconcile import``: specs from the current state; the plan afterwards is empty."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import Runner, records_store
from helpers import gid, snapshot

from controller.cli import main

TAILSPIN = "8ca21255-597d-46ee-8895-0c95529977fd"


def test_import_into_empty_specs_then_the_plan_is_empty(example: Path, reconcile: Runner) -> None:
    shutil.rmtree(example / "specs")
    result = reconcile("import")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (example / "specs" / "customers").iterdir())
    assert files == [
        "contoso-ltd.yaml",
        "fabrikam-inc.yaml",
        "litware-inc.yaml",
        "tailspin-toys.yaml",
        "woodgrove-bank.yaml",
    ]
    text = (example / "specs" / "customers" / "contoso-ltd.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../spec.schema.json\n")
    assert "354ec307-e470-40d2-9563-5fed10cb4044  # Microsoft 365 Business Basic" in text
    litware = (example / "specs" / "customers" / "litware-inc.yaml").read_text()
    assert "        commerce: nce\n        status: active\n        auto_renew: true\n" in litware
    assert "        commerce: azure_plan\n" in litware
    schema = json.loads((example / "specs" / "spec.schema.json").read_text())
    assert schema["title"] == "partner-reconciler spec file"
    assert yaml.safe_load((example / "specs" / "partner.yaml").read_text())["partner"]["id"]
    assert reconcile("validate").returncode == 0
    check = reconcile("--dry-run", "--detailed-exitcode")
    assert check.returncode == 0, check.stdout
    managed = records_store(example, reconcile).load().managed
    assert TAILSPIN in managed  # imported customers are managed from now on
    again = reconcile("import")
    assert again.returncode == 0 and "Imported 0 customers" in again.stdout


def test_import_some_customers_next_to_existing_specs(example: Path, reconcile: Runner) -> None:
    result = reconcile("import", "--customers", TAILSPIN)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (example / "specs" / "customers").glob("tailspin*")] == [
        "tailspin-toys.yaml"
    ]
    plan = json.loads(reconcile("--dry-run", "--output", "json").stdout)
    assert plan["unmanaged"] == []  # Tailspin is now in the specs' care
    assert (
        reconcile("import", "--customers", "3b9c8398-289a-4913-861d-2dafb70bf03c").returncode == 1
    )


def test_import_never_overwrites_a_spec_file_without_force(
    example: Path, reconcile: Runner
) -> None:
    target = example / "specs" / "customers" / "tailspin-toys.yaml"
    target.write_text("# hand-written, not to be lost\n")
    before = snapshot(example)
    refused = reconcile("import", "--customers", TAILSPIN)
    assert (
        refused.returncode == 1
        and "--force" in refused.stderr
        and "Traceback" not in refused.stderr
    )
    assert snapshot(example) == before
    forced = reconcile("import", "--customers", TAILSPIN, "--force")
    assert forced.returncode == 0
    assert TAILSPIN in target.read_text()


def test_import_from_partner_center_fills_the_observation_cache(example: Path) -> None:
    from conftest import TOKEN, start_emulator
    from helpers import run

    from controller.emulator import Knobs

    shutil.rmtree(example / "specs")
    stop, env = start_emulator(example / "state", Knobs(token=TOKEN))
    try:
        center = ("--provider", "partner-center")
        assert run("import", *center, cwd=example, env=env).returncode == 0
        # No request at all: everything the plan needs was observed by the import.
        cached = run(
            *center, "--dry-run", "--refresh", "none", "--output", "json", cwd=example, env=env
        )
        assert cached.returncode == 0, cached.stderr
        assert json.loads(cached.stdout)["observation"]["read"] == 0
        assert json.loads(cached.stdout)["actions"] == []
    finally:
        stop()


def test_customers_whose_names_and_ids_start_alike_get_a_file_each(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Contoso Ltd", "contoso-ltd" and "CONTOSO  LTD" (names from Partner Center) share a file
    name, and these ids their first eight characters: two of them were written to the same file,
    so one customer was imported, made managed, and removed by the next plan."""
    monkeypatch.chdir(example)
    shutil.rmtree(example / "specs")
    for n, name in enumerate(("Contoso Ltd", "contoso-ltd", "CONTOSO  LTD"), start=1):
        assert main(["world", "add-customer", gid(n), "--name", name]) == 0
    assert main(["import", "--customers", ",".join(gid(n) for n in (1, 2, 3))]) == 0
    files = sorted(p.name for p in (example / "specs" / "customers").glob("contoso*"))
    assert files == [
        "contoso-ltd-00000000-0000-4000-8000-000000000003.yaml",
        "contoso-ltd-00000000.yaml",
        "contoso-ltd.yaml",
    ]
    capsys.readouterr()
    assert main(["--dry-run", "--detailed-exitcode", "--only", gid(1), "--only", gid(2)]) == 0
    assert main(["--dry-run", "--detailed-exitcode", "--only", gid(3)]) == 0


def test_import_with_force_never_replaces_the_file_of_a_customer_in_the_specs(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new customer named like one in the specs took over its file with --force: the old
    customer left the specs, and the next plan removed it."""
    monkeypatch.chdir(example)
    contoso = example / "specs" / "customers" / "contoso.yaml"
    kept = contoso.rename(contoso.with_name("contoso-ltd.yaml"))
    before = kept.read_bytes()
    assert main(["world", "add-customer", gid(1), "--name", "Contoso Ltd"]) == 0
    assert main(["import", "--customers", gid(1), "--force"]) == 0
    assert kept.read_bytes() == before
    assert (example / "specs" / "customers" / "contoso-ltd-00000000.yaml").exists()
    capsys.readouterr()
    assert main(["--dry-run", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert "36b8a5ac-453b-4f02-9061-e10e8bddc18a" not in {
        a["customer_id"] for a in plan["actions"] if a["type"] == "remove_relationship"
    }
