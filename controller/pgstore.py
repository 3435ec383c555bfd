"""The PostgreSQL store: the controller's records, applied snapshot, pending requests and journal
in a database that a team's runners and watch replicas share (``--state-url postgresql://…``).

Every row carries the partner (tenant id) it belongs to, and every query names it, so several
partners share one database without seeing each other's rows. The schema is the controller's own:
created and migrated on first use (or by ``reconcile state migrate``), versioned in
``reconcile_schema_version``; a database newer than this controller is refused, never downgraded.

Locks are PostgreSQL session-level advisory locks, keyed by purpose and partner: the server drops
them when the holding connection ends, so a killed runner never leaves a stale lock. Who holds one
(host, pid, since) is written to ``reconcile_lock_holder``, and only shown while that session
still holds the lock (a row left by a killed holder is never named).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from pydantic import ValidationError

from .errors import LockError, StateError, validation_problem
from .fsutil import with_replaced
from .i18n import _, ngettext
from .records import APPLIED_SNAPSHOT, PendingRequest, Records, is_journal_entry, utc_now

if TYPE_CHECKING:
    from .observation import Observations, Observed

log = logging.getLogger("reconcile")

JOURNAL_MAX_ROWS = 500_000  # older entries are dropped when an apply starts (like the rotation)
MIGRATIONS: tuple[str, ...] = (
    # 1: records, applied snapshot, journal
    """
    CREATE TABLE reconcile_partner (
        partner text PRIMARY KEY,
        recorded_partner_id text,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE reconcile_managed (
        partner text NOT NULL, customer_id text NOT NULL, PRIMARY KEY (partner, customer_id)
    );
    CREATE TABLE reconcile_protected (
        partner text NOT NULL, customer_id text NOT NULL, PRIMARY KEY (partner, customer_id)
    );
    CREATE TABLE reconcile_pending (
        partner text NOT NULL,
        customer_id text NOT NULL,
        name text NOT NULL,
        requested_at text NOT NULL,
        invitation_url text NOT NULL,
        PRIMARY KEY (partner, customer_id)
    );
    CREATE TABLE reconcile_applied (
        partner text NOT NULL, customer_id text NOT NULL, snapshot jsonb NOT NULL,
        PRIMARY KEY (partner, customer_id)
    );
    CREATE TABLE reconcile_journal (
        partner text NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        entry jsonb NOT NULL,
        PRIMARY KEY (partner, seq)
    );
    """,
    # 2: who holds a lock (for the refusal message), and which replica wrote each journal entry
    """
    CREATE TABLE reconcile_lock_holder (
        partner text NOT NULL,
        lock text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        since text NOT NULL,
        backend_pid integer NOT NULL,
        PRIMARY KEY (partner, lock)
    );
    ALTER TABLE reconcile_journal ADD COLUMN written_by text NOT NULL DEFAULT '';
    """,
    # 3: a customer's own offboarding setting (contract section 7), remembered past its removal
    """
    CREATE TABLE reconcile_offboarding (
        partner text NOT NULL,
        customer_id text NOT NULL,
        offboarding text NOT NULL,
        PRIMARY KEY (partner, customer_id)
    );
    """,
    # 4: the observation cache: each customer's last observed state (NULL: listed, never read)
    """
    CREATE TABLE reconcile_observation (
        partner text NOT NULL,
        customer_id text NOT NULL,
        observed_at timestamptz,
        entry jsonb,
        PRIMARY KEY (partner, customer_id)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
# What PostgreSQL's text and jsonb refuse (NUL) or cannot encode (a lone surrogate, which Python's
# json and YAML escapes let into a name or a service's error message): stored as U+FFFD.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_MIGRATION_LOCK = 0x7265636F6E63  # any constant: serialises concurrent migrations
CONNECT_TIMEOUT = 10

T = TypeVar("T")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: the only form ever printed or logged."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "postgresql://***"


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def lock_key(purpose: str, partner: str) -> int:
    """A signed 64-bit advisory-lock key for ``purpose`` (apply, leader) and ``partner``."""
    digest = hashlib.sha256(f"partner-reconciler/{purpose}/{partner}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def storable(value: Any) -> Any:
    """``value`` (JSON-like) with every character PostgreSQL refuses replaced by U+FFFD, so a
    hostile name or error message never stops an apply from recording what it did."""
    return with_replaced(value, _UNSTORABLE)


def writer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection, or a StateError naming the redacted URL.

    TCP keepalives and a user timeout make a vanished server or network noticed in seconds, not
    hours."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="partner-reconciler",
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            tcp_user_timeout=10_000,  # ms: unacknowledged data on a silent network
        )
    except psycopg.Error as exc:
        raise database_error(url, exc) from exc


def database_error(url: str, exc: Exception) -> StateError:
    """One line naming the (redacted) database and what went wrong; never the password."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = _password(url)
    if password:
        first = first.replace(password, "***")
    return StateError(_("{}: {}").format(redact_url(url), first))


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The schema's version in this database; 0 when the controller's tables are not there."""
    exists = conn.execute("SELECT to_regclass('reconcile_schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM reconcile_schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: psycopg.Connection[Any], url: str, *, upto: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``upto`` (default: this controller's), each step in its own
    transaction under a lock, so two controllers starting at once migrate once. Returns the
    version found before."""
    try:
        found = schema_version(conn)
        if found == upto == SCHEMA_VERSION:
            return found  # up to date: no DDL, so a role that may only read works too
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS reconcile_schema_version (version integer)")
            found = schema_version(conn)
            if found > SCHEMA_VERSION:
                raise StateError(
                    _(
                        "{}: the database's schema is version {}, newer than this controller's "
                        "({}): upgrade the controller"
                    ).format(redact_url(url), found, SCHEMA_VERSION)
                )
            for version in range(found + 1, upto + 1):
                conn.execute(MIGRATIONS[version - 1].encode())
                conn.execute("INSERT INTO reconcile_schema_version VALUES (%s)", (version,))
            return found
    except psycopg.Error as exc:
        raise database_error(url, exc) from exc


def known_partners(url: str) -> list[str]:
    """The partners that have records in the database at ``url``."""
    with connect(url) as conn:
        migrate(conn, url)
        rows = conn.execute("SELECT partner FROM reconcile_partner ORDER BY partner").fetchall()
    return [r[0] for r in rows]


class PostgresStore:
    """Records of one partner in a shared PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, partner: str) -> None:
        self.url = url
        self.partner = partner
        self.where = _("{} (partner {})").format(redact_url(url), partner)
        self._conn = connect(url)
        self._conn_lock = threading.RLock()  # executor threads share the connection
        self._journal: list[str] = []
        self._journal_lock = threading.Lock()  # keeps batches in order
        self._lost = threading.Event()
        self._do(lambda conn: migrate(conn, url))

    # --- the connection ---------------------------------------------------------------------

    def _do(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on the connection, in a transaction; database errors become one line."""
        if self._lost.is_set():
            raise StateError(_("{}: the connection was lost; stopping").format(self.where))
        with self._conn_lock:
            try:
                with self._conn.transaction():
                    return work(self._conn)
            except psycopg.OperationalError as exc:
                if self._conn.broken:
                    self._lost.set()  # the lock went with it: write nothing more
                raise database_error(self.url, exc) from exc
            except psycopg.Error as exc:
                raise database_error(self.url, exc) from exc

    def close(self) -> None:
        with self._conn_lock:
            self._conn.close()

    # --- records ----------------------------------------------------------------------------

    def load(self) -> Records:
        def read(conn: psycopg.Connection[Any]) -> Records | None:
            row = conn.execute(
                "SELECT recorded_partner_id FROM reconcile_partner WHERE partner = %s",
                (self.partner,),
            ).fetchone()
            if row is None:
                return None
            pending = conn.execute(
                "SELECT customer_id, name, requested_at, invitation_url FROM reconcile_pending "
                "WHERE partner = %s ORDER BY customer_id",
                (self.partner,),
            ).fetchall()
            offboarding = conn.execute(
                "SELECT customer_id, offboarding FROM reconcile_offboarding "
                "WHERE partner = %s ORDER BY customer_id",
                (self.partner,),
            ).fetchall()
            return Records(
                partner_id=row[0],
                managed=tuple(self._ids(conn, "reconcile_managed")),
                protected=tuple(self._ids(conn, "reconcile_protected")),
                pending=tuple(
                    PendingRequest(customer_id=c, name=n, requested_at=r, invitation_url=u)
                    for c, n, r, u in pending
                ),
                offboarding=dict(offboarding),
            )

        try:
            return self._do(read) or Records()
        except ValidationError as exc:  # a row edited by hand into something invalid
            raise StateError(
                _("{}: invalid records: {}").format(self.where, validation_problem(exc))
            ) from exc

    def _ids(self, conn: psycopg.Connection[Any], table: str) -> list[str]:
        rows = conn.execute(
            f"SELECT customer_id FROM {table} WHERE partner = %s ORDER BY customer_id",
            (self.partner,),
        ).fetchall()
        return [r[0] for r in rows]

    def save(self, records: Records) -> None:
        """Write what changed since the stored records, in one transaction."""

        def write(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "INSERT INTO reconcile_partner (partner, recorded_partner_id) VALUES (%s, %s) "
                "ON CONFLICT (partner) DO UPDATE SET recorded_partner_id = excluded."
                "recorded_partner_id, updated_at = now() "
                "WHERE reconcile_partner.recorded_partner_id IS DISTINCT FROM "
                "excluded.recorded_partner_id",
                (self.partner, records.partner_id),
            )
            for table, ids in (
                ("reconcile_managed", records.managed),
                ("reconcile_protected", records.protected),
            ):
                self._replace_rows(conn, table, {i: () for i in ids})
            self._replace_rows(
                conn,
                "reconcile_pending",
                {
                    p.customer_id: (p.name, p.requested_at, p.invitation_url)
                    for p in records.pending
                },
                columns=("name", "requested_at", "invitation_url"),
            )
            self._replace_rows(
                conn,
                "reconcile_offboarding",
                {c: (o,) for c, o in records.offboarding.items()},
                columns=("offboarding",),
            )

        self._do(write)

    def _replace_rows(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        wanted: Mapping[str, tuple[Any, ...]],
        columns: tuple[str, ...] = (),
    ) -> None:
        """Make ``table``'s rows of this partner equal ``wanted`` (customer -> other columns),
        deleting and inserting only the difference."""
        wanted = {c: tuple(storable(v)) for c, v in wanted.items()}
        select = ", ".join(("customer_id", *columns))
        rows = conn.execute(
            f"SELECT {select} FROM {table} WHERE partner = %s", (self.partner,)
        ).fetchall()
        stored = {r[0]: tuple(r[1:]) for r in rows}
        gone = [c for c, v in stored.items() if wanted.get(c) != v]
        if gone:
            conn.execute(
                f"DELETE FROM {table} WHERE partner = %s AND customer_id = ANY(%s)",
                (self.partner, gone),
            )
        new = [(self.partner, c, *v) for c, v in wanted.items() if stored.get(c) != v]
        if new:
            names = ", ".join(("partner", select))
            with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in new:
                    copy.write_row(row)

    def load_applied(self) -> dict[str, dict[str, str]]:
        rows = self._do(
            lambda conn: conn.execute(
                "SELECT customer_id, snapshot FROM reconcile_applied WHERE partner = %s",
                (self.partner,),
            ).fetchall()
        )
        try:
            return APPLIED_SNAPSHOT.validate_python(dict(rows))
        except ValidationError as exc:  # a row edited by hand: stop before anything is done
            raise StateError(
                _(
                    "{}: reconcile_applied: {}; it only tells drift from spec changes: delete "
                    "this partner's rows, and the next apply writes them afresh"
                ).format(self.where, validation_problem(exc))
            ) from exc

    def save_applied(self, snapshot: Mapping[str, Mapping[str, str]]) -> None:
        def write(conn: psycopg.Connection[Any]) -> None:
            rows = conn.execute(
                "SELECT customer_id, snapshot FROM reconcile_applied WHERE partner = %s",
                (self.partner,),
            ).fetchall()
            stored = dict(rows)
            gone = [c for c, s in stored.items() if c in snapshot and snapshot[c] != s]
            gone += [c for c in stored if c not in snapshot]
            if gone:
                conn.execute(
                    "DELETE FROM reconcile_applied WHERE partner = %s AND customer_id = ANY(%s)",
                    (self.partner, gone),
                )
            new = [(c, dict(s)) for c, s in snapshot.items() if stored.get(c) != s]
            if new:
                with conn.cursor().copy(
                    "COPY reconcile_applied (partner, customer_id, snapshot) FROM STDIN"
                ) as copy:
                    for customer_id, value in new:
                        copy.write_row((self.partner, customer_id, json.dumps(value)))

        self._do(write)

    # --- the observation cache -------------------------------------------------------------

    def load_observations(self, partner: str) -> Observations:
        """This tenant's observation cache (its rows; ``partner`` is the store's own). Rows that
        are not observations are ignored, with one warning, and rewritten by this run."""
        from pydantic import ValidationError

        from .observation import load_entries

        rows = self._do(
            lambda conn: conn.execute(
                "SELECT customer_id, entry FROM reconcile_observation WHERE partner = %s",
                (self.partner,),
            ).fetchall()
        )
        try:
            return load_entries(dict(rows))
        except ValidationError:
            log.warning(
                _("%s: observation cache ignored (damaged rows); this run reads afresh"), self.where
            )
            return {}

    def save_observations(
        self, partner: str, observations: Mapping[str, Observed | None], fresh: frozenset[str]
    ) -> None:
        """Write the customers read now (and those newly listed), and forget those no longer
        listed, in one transaction; a row is never replaced by an older observation."""

        def entry(observed: Observed | None) -> str | None:
            if observed is None:
                return None  # listed, never read
            return json.dumps(storable(observed.model_dump(mode="json")))

        def write(conn: psycopg.Connection[Any]) -> None:
            stored = {
                r[0]
                for r in conn.execute(
                    "SELECT customer_id FROM reconcile_observation WHERE partner = %s",
                    (self.partner,),
                ).fetchall()
            }
            gone = sorted(stored - observations.keys())
            if gone:
                conn.execute(
                    "DELETE FROM reconcile_observation "
                    "WHERE partner = %s AND customer_id = ANY(%s)",
                    (self.partner, gone),
                )
            rows = [
                (self.partner, c, o.observed_at if o else None, entry(o))
                for c, o in observations.items()
                if c in fresh or c not in stored
            ]
            if rows:
                conn.cursor().executemany(
                    "INSERT INTO reconcile_observation (partner, customer_id, observed_at, entry) "
                    "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (partner, customer_id) "
                    "DO UPDATE SET observed_at = excluded.observed_at, entry = excluded.entry "
                    "WHERE reconcile_observation.observed_at IS NULL "
                    "OR excluded.observed_at >= reconcile_observation.observed_at",
                    rows,
                )

        self._do(write)

    # --- journal ----------------------------------------------------------------------------

    def append_journal(self, entry: Mapping[str, Any], *, sync: bool = True) -> None:
        """Queue ``entry``; with ``sync``, return once it and every earlier one is committed."""
        line = json.dumps(storable(dict(entry)), sort_keys=True)
        with self._journal_lock:
            self._journal.append(line)
            if sync:
                self._flush_journal()

    def sync_journal(self) -> None:
        with self._journal_lock:
            self._flush_journal()

    def _flush_journal(self) -> None:
        """Commit every queued entry in one COPY (group commit); called with the journal lock,
        so batches reach the table in the order they were queued."""
        if not self._journal:
            return
        batch, writer = self._journal, writer_id()

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor().copy(
                "COPY reconcile_journal (partner, entry, written_by) FROM STDIN"
            ) as copy:
                for line in batch:
                    copy.write_row((self.partner, line, writer))

        self._do(write)
        self._journal = []

    def read_journal(self) -> list[dict[str, Any]]:
        rows = self._do(
            lambda conn: conn.execute(
                "SELECT entry FROM reconcile_journal WHERE partner = %s ORDER BY seq",
                (self.partner,),
            ).fetchall()
        )
        entries = [r[0] for r in rows if is_journal_entry(r[0])]
        if len(entries) < len(rows):  # rows edited by hand: history, so skipped with a warning
            log.warning(
                ngettext(
                    "%s: reconcile_journal: skipped %d damaged entry",
                    "%s: reconcile_journal: skipped %d damaged entries",
                    len(rows) - len(entries),
                ),
                self.where,
                len(rows) - len(entries),
            )
        return entries

    def _trim_journal(self) -> None:
        """Keep this partner's last JOURNAL_MAX_ROWS entries (``seq`` is shared by every
        partner of the database, so it is counted in rows, not in ``seq`` numbers)."""
        self._do(
            lambda conn: conn.execute(
                "DELETE FROM reconcile_journal WHERE partner = %s AND seq <= "
                "(SELECT seq FROM reconcile_journal WHERE partner = %s "
                "ORDER BY seq DESC OFFSET %s LIMIT 1)",
                (self.partner, self.partner, JOURNAL_MAX_ROWS),
            )
        )

    # --- the lock ---------------------------------------------------------------------------

    @contextmanager
    def lock(self, *, timeout: float) -> Iterator[None]:
        """Hold this partner's apply lock, or raise LockError naming its holder."""
        key = lock_key("apply", self.partner)
        if not self._try_lock(key, timeout):
            raise LockError(
                _("{} is locked by {}: another apply is running").format(
                    self.where, self._holder("apply")
                )
            )
        try:
            self._do(lambda conn: record_holder(conn, self.partner, "apply"))
            self._trim_journal()
            yield
        except BaseException:
            with suppress(StateError):  # keep what was queued before the failure, if we can
                self.sync_journal()
            raise
        else:
            self.sync_journal()
        finally:
            self._unlock(key)

    def _try_lock(self, key: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            row = self._do(lambda conn: conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)))
            if row.fetchone() == (True,):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _unlock(self, key: int) -> None:
        if self._lost.is_set() or self._conn.closed:
            return  # the server dropped the lock with the session

        def release(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "DELETE FROM reconcile_lock_holder WHERE partner = %s AND lock = 'apply' "
                "AND backend_pid = pg_backend_pid()",
                (self.partner,),
            )
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

        self._do(release)

    def _holder(self, lock: str) -> str:
        """Who holds ``lock`` now (the holder writes its row just after taking it)."""
        deadline = time.monotonic() + 1.0
        while True:
            found = self._do(lambda conn: current_holder(conn, self.partner, lock))
            if found or time.monotonic() > deadline:
                return found or _("another process")
            time.sleep(0.05)


def record_holder(conn: psycopg.Connection[Any], partner: str, lock: str) -> None:
    """Say who holds ``lock`` (called by the session that holds it)."""
    conn.execute(
        "INSERT INTO reconcile_lock_holder (partner, lock, host, pid, since, backend_pid) "
        "VALUES (%s, %s, %s, %s, %s, pg_backend_pid()) ON CONFLICT (partner, lock) DO UPDATE "
        "SET host = excluded.host, pid = excluded.pid, since = excluded.since, "
        "backend_pid = excluded.backend_pid",
        (partner, lock, socket.gethostname(), os.getpid(), utc_now()),
    )


def current_holder(conn: psycopg.Connection[Any], partner: str, lock: str) -> str | None:
    """'pid P on HOST, since T' for the live session holding ``lock``, or None."""
    key = lock_key(lock, partner)
    row = conn.execute(
        "SELECT h.pid, h.host, h.since FROM reconcile_lock_holder h JOIN pg_locks l "
        "ON l.pid = h.backend_pid AND l.locktype = 'advisory' AND l.granted "
        "AND l.classid = ((%s >> 32) & 4294967295)::bigint::oid "
        "AND l.objid = (%s & 4294967295)::bigint::oid "
        "WHERE h.partner = %s AND h.lock = %s",
        (key, key, partner, lock),
    ).fetchone()
    if row is None:
        return None
    return _("pid {pid} on {host}, since {since}").format(pid=row[0], host=row[1], since=row[2])
