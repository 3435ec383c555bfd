"""``reconcile status``: pending relationship requests and the last apply's outcome, read from
the controller's records and journal (no provider is contacted)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import StateError
from .i18n import _
from .records import FileStore, PendingRequest, RecordStore
from .untrusted import printable


@dataclass(frozen=True)
class LastApply:
    run: str
    started: str
    finished: str | None  # None: the run was interrupted before it finished
    actions: int
    applied: int
    failed: int
    skipped: int
    failures: tuple[str, ...]


@dataclass(frozen=True)
class Status:
    pending: tuple[PendingRequest, ...]
    last_apply: LastApply | None


def last_apply(journal: list[dict[str, Any]]) -> LastApply | None:
    """The most recent run in the journal, counted from its own entries."""
    starts = [i for i, e in enumerate(journal) if e.get("event") == "run_started"]
    if not starts:
        return None
    first = journal[starts[-1]]
    entries = [e for e in journal[starts[-1] :] if e.get("run") == first.get("run")]
    finished = next((e for e in entries if e.get("event") == "run_finished"), None)
    outcomes = [
        e
        for e in entries
        if e.get("event", "").startswith("action_") and e.get("event") != "action_started"
    ]
    count = {
        s: sum(e["event"] == f"action_{s}" for e in outcomes)
        for s in ("applied", "failed", "skipped")
    }
    failures = tuple(
        f"{e.get('id')} {e.get('type')}: {e.get('error')}"
        for e in outcomes
        if e["event"] == "action_failed"
    )
    return LastApply(
        run=str(first.get("run")),
        started=str(first.get("time")),
        finished=str(finished.get("time")) if finished else None,
        actions=int(first.get("actions", 0)),
        failures=failures,
        **count,
    )


def read_status(store: RecordStore) -> Status:
    """The status kept in ``store``; a state folder holding no controller state is an error, not
    "nothing pending" (a mistyped --state must not look like a quiet success)."""
    if isinstance(store, FileStore):
        state_dir = store.state_dir
        kept = (
            store.records_path,
            store.journal_path,
            store.applied_path,
            state_dir / "world.json",
        )
        if not any(path.exists() for path in kept):
            raise StateError(
                _(
                    "{}: no controller state here (no records.json, journal.jsonl or world.json)"
                ).format(state_dir)
            )
    return Status(pending=store.load().pending, last_apply=last_apply(store.read_journal()))


def render_status(status: Status, output: str) -> str:
    if output == "json":
        document = {
            "pending": [p.model_dump(mode="json") for p in status.pending],
            "last_apply": status.last_apply.__dict__ if status.last_apply else None,
        }
        return json.dumps(document, indent=2, default=list) + "\n"
    lines = []  # records and journal are files anyone may have edited: names shown escaped
    if status.pending:
        lines.append(_("Pending relationship requests (send each link to the customer's admin):"))
        for p in status.pending:
            lines.append(
                f"  {printable(p.name or p.customer_id)} ({p.customer_id}), "
                + _("requested {}").format(p.requested_at)
            )
            lines.append(f"    {printable(p.invitation_url)}")
    else:
        lines.append(_("No pending relationship requests."))
    run = status.last_apply
    if run is None:
        lines.append(_("No apply has run yet."))
    else:
        state = (
            _("finished {}").format(run.finished)
            if run.finished
            else _("interrupted; the next run resumes")
        )
        lines.append(
            _("Last apply {} (started {}, {}): applied {} of {}, failed {}, skipped {}.").format(
                run.run, run.started, state, run.applied, run.actions, run.failed, run.skipped
            )
        )
        lines += [f"  {printable(f)}" for f in run.failures]
    return "\n".join(lines) + "\n"
