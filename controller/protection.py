"""Protection that a hand edit of ``records.json`` cannot lift silently.

``state/records.json`` is committed beside the specs and changes through pull requests, so it is
reviewable input, not proof. The only way to lift protection is a spec listing the customer with
``protected: false`` (contract section 1); a customer id that leaves ``protected`` any other way
is kept protected, and the plan says so in a warning. Two witnesses remember what the
controller itself last wrote:

    the ledger    $XDG_STATE_HOME/partner-reconciler/protected/<partner id>.json (default
                  ~/.local/state/...): outside the checkout, so a pull request cannot touch it;
                  present on every machine that applied before (a watch controller, an
                  operator's laptop, a self-hosted runner)
    the journal   the last ``protected`` entry of state/journal.jsonl: in the checkout, so it
                  catches an edit of records.json alone, also on a fresh CI runner, but not an
                  edit of both files (review state/ changes, e.g. with CODEOWNERS)

Only the file store needs them: a database store keeps its records out of the checkout.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from .errors import StateError
from .fsutil import atomic_write
from .i18n import _
from .records import FileStore, Records, RecordStore, utc_now
from .spec import Desired

log = logging.getLogger("reconcile")

# A protected set, by where it was witnessed.
Witnesses = Mapping[str, frozenset[str]]
JOURNAL_EVENT = "protected"
_TAIL = 1 << 20  # the journal is read from its end, a block at a time


def ledger_path(partner_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "partner-reconciler" / "protected" / f"{partner_id}.json"


def _read_ledger(path: Path) -> frozenset[str]:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError) as exc:
        raise StateError(_("{}: unreadable protection ledger: {}").format(path, exc)) from exc
    ids = document.get("protected") if isinstance(document, dict) else None
    guids = _guids(ids)
    if guids is None or len(guids) != len(ids or ()):
        raise StateError(_("{}: protected: must be a list of customer ids").format(path))
    return frozenset(guids)


def _guids(ids: object) -> list[str] | None:
    """The GUIDs among ``ids`` (a list), in lower case as everywhere else; None when not a list.
    An id that differs only by case is the same customer: read as written, it would be taken
    for one missing from the records, and an id that is no GUID could not be recorded."""
    from .ids import normalize_guid

    if not isinstance(ids, list):
        return None
    guids = []
    for item in ids:
        try:
            guids.append(normalize_guid(item))
        except (TypeError, ValueError):  # not a string, or not a GUID
            continue
    return guids


def _journal_witness(path: Path) -> frozenset[str] | None:
    """The protected set of the journal's last ``protected`` entry, read from the end."""
    marker = b'"event": "' + JOURNAL_EVENT.encode() + b'"'
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            tail = b""
            while end > 0:
                start = max(0, end - _TAIL)
                handle.seek(start)
                tail = handle.read(end - start) + tail
                end = start
                found = tail.rfind(marker)
                if found >= 0 and (start == 0 or tail.rfind(b"\n", 0, found) >= 0):
                    line_start = tail.rfind(b"\n", 0, found) + 1
                    line_end = tail.find(b"\n", found)
                    return _witnessed_ids(tail[line_start : line_end if line_end >= 0 else None])
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from exc
    return None


def _witnessed_ids(line: bytes) -> frozenset[str] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None  # a damaged line is no witness (status reports it)
    guids = _guids(entry.get("protected") if isinstance(entry, dict) else None)
    return None if guids is None else frozenset(guids)  # what is no GUID witnesses nothing


def read_witnesses(store: RecordStore, partner_id: str) -> dict[str, frozenset[str]]:
    """What the controller last wrote as protected, by witness (none for other stores)."""
    if not isinstance(store, FileStore):
        return {}
    witnesses = {str(ledger_path(partner_id)): _read_ledger(ledger_path(partner_id))}
    journaled = _journal_witness(store.journal_path)
    if journaled is not None:
        witnesses[str(store.journal_path)] = journaled
    return witnesses


def keep_protection(
    records: Records,
    desired: Desired,
    witnesses: Witnesses,
    *,
    names: Mapping[str, str],
    records_file: str,
) -> tuple[Records, tuple[str, ...]]:
    """``records`` with every witnessed protection that no spec lifted, and a warning for each
    one that ``records_file`` had lost. Pure."""
    recorded = set(records.protected)
    lifted: dict[str, str] = {}
    for witness, ids in witnesses.items():
        for customer_id in sorted(ids - recorded):
            spec = desired.customers.get(customer_id)  # type: ignore[call-overload]
            if spec is not None and spec.protected is not None:
                continue  # false: the one way to lift it; true: protected by the spec anyway
            lifted.setdefault(customer_id, witness)
    if not lifted:
        return records, ()
    warnings = tuple(
        _(
            "customer {} ({}) is protected but missing from {} (the controller last wrote it "
            "there, says {}); no spec says protected: false, so it stays protected"
        ).format(names.get(customer_id, ""), customer_id, records_file, witness)
        for customer_id, witness in lifted.items()
    )
    kept = tuple(sorted(recorded | set(lifted)))
    return records.model_copy(update={"protected": kept}), warnings


def remember_protected(store: RecordStore, records: Records) -> None:
    """After the records are saved: update the ledger, and journal the set when it changed."""
    if not isinstance(store, FileStore) or records.partner_id is None:
        return
    protected = sorted(records.protected)
    path = ledger_path(records.partner_id)
    try:
        if _read_ledger(path) != frozenset(protected):
            atomic_write(path, json.dumps({"protected": protected}, indent=1) + "\n")
    except (OSError, StateError) as exc:  # the journal still witnesses it
        log.warning(_("%s: cannot keep the protection ledger: %s"), path, exc)
    if (_journal_witness(store.journal_path) or frozenset()) != frozenset(protected):
        entry = {"event": JOURNAL_EVENT, "time": utc_now(), "protected": protected}
        store.append_journal(entry, sync=True)
