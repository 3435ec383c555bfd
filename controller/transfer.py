"""``reconcile state export/import``: move the controller's records between stores (the state
directory and a PostgreSQL database), under both stores' locks."""

from __future__ import annotations

from .errors import StateError
from .i18n import _
from .records import Records, RecordStore


def is_empty(store: RecordStore) -> bool:
    return store.load() == Records() and not store.load_applied() and not store.read_journal()


def copy_records(source: RecordStore, target: RecordStore, *, target_name: str) -> int:
    """Copy the records, the applied snapshot and the journal (in order) from ``source`` into
    ``target``, which must hold nothing yet (state is moved, never merged). Returns how many
    journal entries were copied."""
    if not is_empty(target):
        raise StateError(
            _("{} already holds records: refusing to overwrite them").format(target_name)
        )
    entries = source.read_journal()
    for entry in entries:
        target.append_journal(entry, sync=False)
    target.sync_journal()
    target.save_applied(source.load_applied())
    target.save(source.load())
    return len(entries)
