"""``reconcile import``: spec files describing the current state, so that a partner with many
existing customers can adopt the controller without its first plan removing anything.

One file per customer under ``specs/customers/``, named after the customer, keys in a stable
order, friendly names as comments, and a first line pointing editors at the JSON Schema."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .current import CurrentState, Customer
from .errors import ReconcileError
from .fsutil import atomic_write
from .i18n import _
from .spec import Desired, dump_schema
from .untrusted import printable

SCHEMA_FILE = "spec.schema.json"
MANAGED_STATUSES = ("active", "suspended")


def _scalar(value: object) -> str:
    """A YAML scalar, quoted only where YAML needs it (``yes``, ``: ``, leading ``#``...)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:60]


def render_customer(customer: Customer, *, schema_ref: str) -> str:
    """One customer's spec file, as it is now: the plan for it is empty once it is managed."""
    lines = [f"# yaml-language-server: $schema={schema_ref}"]
    # Names are untrusted text: in a comment, a line break would end it and write YAML.
    title = printable(customer.name + (f" ({customer.domain})" if customer.domain else ""))
    lines += [f"# {title}: imported from Partner Center by `reconcile import`.", "customers:"]
    lines.append(f"  - id: {customer.id}")
    lines.append(f"    name: {_scalar(customer.name or customer.id)}")
    if customer.domain:
        lines.append(f"    domain: {_scalar(customer.domain)}")
    subscriptions = [s for s in customer.subscriptions if s.status in MANAGED_STATUSES]
    if subscriptions:
        lines.append("    subscriptions:")
    for sub in subscriptions:
        friendly = sub.name or sub.offer
        comment = f"  # {printable(friendly)}" if friendly else ""
        lines.append(f"      - id: {sub.id}{comment}")
        if sub.offer:
            lines.append(f"        offer: {_scalar(sub.offer)}")
        if sub.name:
            lines.append(f"        name: {_scalar(sub.name)}")
        lines.append(f"        quantity: {max(1, sub.quantity)}")
        if sub.commerce != "legacy":
            lines.append(f"        commerce: {sub.commerce}")
        lines.append(f"        status: {sub.status}")
        if sub.commerce == "nce" and sub.auto_renew is not None:
            lines.append(f"        auto_renew: {str(sub.auto_renew).lower()}")
    return "\n".join(lines) + "\n"


def render_partner(current: CurrentState) -> str:
    lines = [
        "# yaml-language-server: $schema=./spec.schema.json",
        "# The partner these specs are written for: they are refused against any other tenant.",
        "partner:",
        f"  id: {current.partner.id}",
    ]
    if current.partner.name:
        lines.append(f"  name: {_scalar(current.partner.name)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ImportPlan:
    """The files to write (path -> text) and the customers they make managed."""

    files: dict[Path, str]
    customers: tuple[Customer, ...]
    skipped: tuple[str, ...]  # ids already in the specs


def choose_customers(
    current: CurrentState, desired: Desired, wanted: Iterable[str]
) -> tuple[list[Customer], list[str]]:
    """The reseller customers to import (all, or those asked for), less those already in the
    specs; an asked-for customer that is unknown or not a reseller customer is an error."""
    wanted = list(wanted)
    known = current.customers_by_id
    for customer_id in wanted:
        found = known.get(customer_id)
        if found is None or found.relationship != "reseller":
            raise ReconcileError(
                _(
                    "customer {} is not a reseller customer of this partner: nothing to import"
                ).format(customer_id)
            )
    pool = (
        [known[i] for i in wanted]
        if wanted
        else [c for c in current.customers if c.relationship == "reseller"]
    )
    chosen = [c for c in pool if c.id not in desired.customers]
    skipped = [c.id for c in pool if c.id in desired.customers]
    return chosen, skipped


def plan_import(
    current: CurrentState, desired: Desired, specs_dir: Path, wanted: Iterable[str]
) -> ImportPlan:
    """Decide every file to write; nothing is written here."""
    chosen, skipped = choose_customers(current, desired, wanted)
    folder = specs_dir / "customers"
    declaring = {Path(file).resolve() for file, _index in desired.origins.values()}
    files: dict[Path, str] = {}
    for customer in sorted(chosen, key=lambda c: (_slug(c.name), c.id)):
        path = _file_for(customer, folder, files, declaring)
        files[path] = render_customer(customer, schema_ref=f"../{SCHEMA_FILE}")
    if chosen and desired.partner.id is None and not (specs_dir / "partner.yaml").exists():
        files[specs_dir / "partner.yaml"] = render_partner(current)
    return ImportPlan(files=files, customers=tuple(chosen), skipped=tuple(skipped))


def _file_for(
    customer: Customer, folder: Path, chosen: Mapping[Path, str], declaring: set[Path]
) -> Path:
    """A file of the customer's own, named after it (then with its id): never one this import
    chose already ("Contoso Ltd" and "CONTOSO LTD" whose ids start alike overwrote each other,
    and the next plan removed one), nor one that declares a customer of the specs (replacing it,
    even with --force, would take that customer out of the specs)."""
    stem = _slug(customer.name) or customer.id
    names = (stem, f"{stem}-{customer.id[:8]}", f"{stem}-{customer.id}")
    numbered = (f"{stem}-{customer.id}-{n}" for n in itertools.count(2))
    for name in itertools.chain(names, numbered):
        path = folder / f"{name}.yaml"
        if path not in chosen and path.resolve() not in declaring:
            return path
    raise AssertionError("unreachable: the names above never end")


def write_import(plan: ImportPlan, specs_dir: Path, *, force: bool) -> None:
    """Write the files; refuse (writing nothing) if any spec file exists, unless ``force``."""
    existing = sorted(str(p) for p in plan.files if p.exists())
    if existing and not force:
        raise ReconcileError(
            _("would overwrite {}: pass --force to replace them").format(", ".join(existing))
        )
    schema = specs_dir / SCHEMA_FILE
    text = dump_schema() + "\n"
    if not schema.exists() or schema.read_text(encoding="utf-8") != text:
        atomic_write(schema, text)
    for path, content in plan.files.items():
        atomic_write(path, content)
