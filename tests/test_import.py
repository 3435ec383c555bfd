"""``reconcile import``: specs from the current state; the plan afterwards is empty."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from conftest import Runner, records_store
from helpers import snapshot

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
