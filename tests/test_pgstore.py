"""The PostgreSQL store: the same records, snapshot and journal as the file store, one partner's
rows apart from another's, a versioned schema, a redacted URL, and an advisory lock that names
its holder and dies with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import store_env
from helpers import PARTNER, gid, records, run, snapshot

from controller.errors import LockError, StateError
from controller.pgstore import (
    SCHEMA_VERSION,
    PostgresStore,
    connect,
    current_holder,
    migrate,
    redact_url,
    schema_version,
)
from controller.records import FileStore

OTHER = "11111111-2222-4333-8444-555555555555"


def test_records_snapshot_and_journal_round_trip(pg_url: str) -> None:
    store = PostgresStore(pg_url, PARTNER)
    assert store.load() == records() and store.load_applied() == {} and store.read_journal() == []
    saved = records(managed=(2, 1), protected=(1,), pending=(3,)).model_copy(
        update={
            "partner_id": PARTNER,
            "managed": (gid(1), gid(2)),
            "offboarding": {gid(2): "cancel_in_window"},
        }
    )
    store.save(saved)
    assert store.load() == saved
    smaller = saved.model_copy(update={"managed": (gid(2),), "pending": (), "offboarding": {}})
    store.save(smaller)  # only the difference is written
    assert PostgresStore(pg_url, PARTNER).load() == smaller
    store.save_applied({gid(1): {gid(5): "active/3"}, gid(2): {}})
    store.save_applied({gid(1): {gid(5): "active/4"}})
    assert store.load_applied() == {gid(1): {gid(5): "active/4"}}
    store.append_journal({"event": "a"}, sync=False)
    store.append_journal({"event": "b"}, sync=False)
    assert PostgresStore(pg_url, PARTNER).read_journal() == []  # queued, not yet committed
    store.sync_journal()
    store.append_journal({"event": "c"})
    assert [e["event"] for e in PostgresStore(pg_url, PARTNER).read_journal()] == ["a", "b", "c"]


def test_partners_sharing_a_database_never_see_each_others_rows(pg_url: str) -> None:
    mine, theirs = PostgresStore(pg_url, PARTNER), PostgresStore(pg_url, OTHER)
    mine.save(records(managed=(1,), pending=(2,)))
    mine.save_applied({gid(1): {gid(3): "active/1"}})
    mine.append_journal({"event": "run_started"})
    assert theirs.load() == records() and theirs.load_applied() == {}
    assert theirs.read_journal() == []
    theirs.save(records(managed=(7,)))
    assert mine.load().managed == (gid(1),)
    with mine.lock(timeout=0), theirs.lock(timeout=0):  # one lock per partner
        pass


def test_schema_is_migrated_step_by_step_and_a_newer_one_is_refused(pg_url: str) -> None:
    with connect(pg_url) as conn:
        assert migrate(conn, pg_url, upto=1) == 0
        assert schema_version(conn) == 1
        conn.execute(
            "INSERT INTO reconcile_journal (partner, entry) VALUES (%s, %s)",
            (PARTNER, json.dumps({"event": "old"})),
        )
    store = PostgresStore(pg_url, PARTNER)  # on first use: migrated to the latest, data kept
    assert store.read_journal() == [{"event": "old"}]
    with connect(pg_url) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        conn.execute("INSERT INTO reconcile_schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError, match="newer than this controller"):
        PostgresStore(pg_url, PARTNER)


def test_state_migrate_command(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "RECONCILE_STATE_URL": pg_url}
    first = run("state", "migrate", cwd=tmp_path, env=env)
    assert first.returncode == 0 and f"0 -> {SCHEMA_VERSION}" in first.stdout
    again = run("state", "migrate", cwd=tmp_path, env=env)
    assert f"version {SCHEMA_VERSION}, up to date" in again.stdout


def test_the_password_is_never_printed(example: Path, postgres_server: str) -> None:
    unreachable = "postgresql://reconcile:s3cr3t-pw@127.0.0.1:9/nowhere"
    assert redact_url(unreachable) == "postgresql://reconcile:***@127.0.0.1:9/nowhere"
    env = {**os.environ, "RECONCILE_STATE_URL": unreachable}
    for args in (["--dry-run"], ["status"], ["state", "migrate"]):
        result = run(*args, cwd=example, env=env)
        assert result.returncode == 1, args
        assert "s3cr3t" not in result.stdout + result.stderr
        [line] = result.stderr.splitlines()
        assert "reconcile:***@127.0.0.1:9" in line
    on_command_line = run("--dry-run", "--state-url", unreachable, cwd=example)
    assert on_command_line.returncode == 1 and "s3cr3t" not in on_command_line.stderr
    assert "RECONCILE_STATE_URL" in on_command_line.stderr


def test_lock_names_a_live_holder_only(pg_url: str) -> None:
    holder, other = PostgresStore(pg_url, PARTNER), PostgresStore(pg_url, PARTNER)
    with holder.lock(timeout=0):
        started = time.monotonic()
        with pytest.raises(LockError, match=f"locked by pid {os.getpid()} on .*, since "):
            other.lock(timeout=0.3).__enter__()
        assert time.monotonic() - started >= 0.3  # --lock-timeout waited
    with other.lock(timeout=0):
        pass
    with connect(pg_url) as conn:  # a holder row left behind names nobody
        assert current_holder(conn, PARTNER, "apply") is None


HOLD = """
import sys, time
from controller.pgstore import PostgresStore
store = PostgresStore(sys.argv[1], sys.argv[2])
with store.lock(timeout=0):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_frees_the_lock_at_once(pg_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, pg_url, PARTNER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(LockError, match=f"locked by pid {holder.pid} on "):
            PostgresStore(pg_url, PARTNER).lock(timeout=0).__enter__()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with PostgresStore(pg_url, PARTNER).lock(timeout=2):  # the server dropped it
            pass
    finally:
        holder.kill()
        holder.wait()


def test_export_and_import_move_state_between_the_folder_and_the_database(
    example: Path, pg_url: str
) -> None:
    env = store_env(example, pg_url)  # state import: the example's records.json
    assert run("--yes", cwd=example, env=env).returncode == 0
    store = PostgresStore(pg_url, PARTNER)
    assert store.read_journal()[0]["event"] == "run_started"
    exported = example / "exported"
    result = run("state", "export", str(exported), cwd=example, env=env)
    assert result.returncode == 0, result.stderr
    back = FileStore(exported)
    assert back.load() == store.load() and back.load_applied() == store.load_applied()
    assert back.read_journal() == store.read_journal()
    again = run("state", "import", str(exported), cwd=example, env=env)
    assert again.returncode == 1 and "already holds records" in again.stderr
    before = snapshot(exported)
    assert run("state", "export", str(exported), cwd=example, env=env).returncode == 1
    assert snapshot(exported) == before  # never overwritten
    with psycopg.connect(pg_url) as conn:
        partners = conn.execute("SELECT DISTINCT partner FROM reconcile_journal").fetchall()
    assert partners == [(PARTNER,)]


def test_a_password_typed_before_a_subcommand_is_refused_too(example: Path) -> None:
    url = "postgresql://reconcile:s3cr3t-pw@127.0.0.1:9/nowhere"
    result = run("--state-url", url, "status", cwd=example)
    assert result.returncode == 1 and "s3cr3t" not in result.stdout + result.stderr
    assert "RECONCILE_STATE_URL" in result.stderr
    env = {**os.environ, "RECONCILE_STATE_URL": url}
    assert run("validate", cwd=example, env=env).returncode == 0  # the environment's URL is fine


def test_journal_entries_queued_before_a_failure_are_kept(pg_url: str) -> None:
    store = PostgresStore(pg_url, PARTNER)
    with pytest.raises(RuntimeError), store.lock(timeout=0):
        store.append_journal({"event": "queued"}, sync=False)
        raise RuntimeError("a bug mid-apply")
    assert PostgresStore(pg_url, PARTNER).read_journal() == [{"event": "queued"}]
    with store.lock(timeout=0):  # and the lock was released
        pass


def test_the_observation_cache_is_a_table_per_partner_never_replaced_by_an_older_read(
    pg_url: str,
) -> None:
    from datetime import timedelta

    from helpers import NOW, customer, gid, sub

    from controller.observation import Observed

    def seen(n: int, quantity: int, hours_ago: int) -> Observed:
        return Observed(
            customer=customer(n, sub(n * 10, quantity=quantity)),
            observed_at=NOW - timedelta(hours=hours_ago),
            listed="d",
            etags={gid(n * 10): "e"},
        )

    store, other = PostgresStore(pg_url, PARTNER), PostgresStore(pg_url, OTHER)
    first = {gid(1): seen(1, 5, 2), gid(2): seen(2, 3, 2), gid(3): None}
    store.save_observations(PARTNER, first, frozenset(first))
    assert PostgresStore(pg_url, PARTNER).load_observations(PARTNER) == first
    assert other.load_observations(OTHER) == {}
    # A later run: 1 read again (newer), 2 offered with an older read (a slower run), 3 gone.
    second = {gid(1): seen(1, 7, 0), gid(2): seen(2, 9, 5)}
    store.save_observations(PARTNER, second, frozenset(second))
    assert store.load_observations(PARTNER) == {gid(1): second[gid(1)], gid(2): first[gid(2)]}


def test_what_postgresql_refuses_in_a_name_or_an_error_is_stored_as_a_replacement(
    pg_url: str,
) -> None:
    """A NUL or a lone surrogate (a hostile customer name, a service's error message) would
    make the database refuse the row: the pending request and the journal entry are kept with
    U+FFFD in its place, as the file store keeps a lone surrogate."""
    from controller.records import PendingRequest, Records

    store = PostgresStore(pg_url, PARTNER)
    pending = PendingRequest(
        customer_id=gid(1), name="Contoso \x00 \ud800 Ltd", requested_at="t", invitation_url="u"
    )
    store.save(Records(pending=(pending,)))
    assert store.load().pending[0].name == "Contoso \ufffd \ufffd Ltd"
    store.save(store.load())  # and read back as it was stored, so nothing is rewritten
    store.append_journal({"event": "action_failed", "error": "bad \x00 byte \udc80"})
    assert store.read_journal()[-1]["error"] == "bad \ufffd byte \ufffd"


def test_what_postgresql_refuses_in_an_observed_name_is_cached_as_a_replacement(
    pg_url: str,
) -> None:
    """A customer's name comes from Partner Center (untrusted): a NUL or a lone surrogate in it
    must not make the observation cache's row refused, and so the plan fail."""
    from helpers import NOW, customer, sub

    from controller.observation import Observed

    hostile = customer(1, sub(10), name="Contoso \x00 \ud800 Ltd")
    seen = {gid(1): Observed(customer=hostile, observed_at=NOW, listed="d")}
    store = PostgresStore(pg_url, PARTNER)
    store.save_observations(PARTNER, seen, frozenset(seen))
    cached = store.load_observations(PARTNER)[gid(1)]
    assert cached is not None and cached.customer.name == "Contoso \ufffd \ufffd Ltd"
    assert cached.customer.subscriptions == hostile.subscriptions


def test_the_journal_keeps_each_partners_last_entries_however_partners_interleave(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.pgstore.JOURNAL_MAX_ROWS", 3)
    mine, theirs = PostgresStore(pg_url, PARTNER), PostgresStore(pg_url, OTHER)
    for n in range(3):
        mine.append_journal({"event": "run_started", "run": f"r{n}"})
    for n in range(10):
        theirs.append_journal({"event": "run_started", "run": f"t{n}"})
    mine.append_journal({"event": "run_started", "run": "r3"})
    with mine.lock(timeout=0):  # an apply starts: older entries go
        pass
    assert [e["run"] for e in mine.read_journal()] == ["r1", "r2", "r3"]
    assert len(theirs.read_journal()) == 10  # another partner's are not this one's to trim
