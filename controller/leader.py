"""Leader election among watch replicas that share one PostgreSQL database.

The leader holds a session-level advisory lock (one per partner) on a connection of its own, and
checks that connection every ``HEARTBEAT`` seconds. When the leader dies, however it dies (kill -9
included), the server ends its session and drops the lock, and a standby, which tries to take it
on every tick of its loop, leads within a second. When the leader's connection fails it sets
``lost`` at once, which stops the apply in progress (no new action starts), and stands by.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from .errors import StateError
from .i18n import _
from .pgstore import (
    connect,
    current_holder,
    database_error,
    lock_key,
    record_holder,
    redact_url,
)

log = logging.getLogger("reconcile")

HEARTBEAT = 0.5  # seconds between checks of the leader's connection


class Leadership:
    """This replica's part in the election; ``role`` is ``leader``, ``standby`` or
    ``unreachable`` (no database)."""

    def __init__(self, url: str, partner: str) -> None:
        self.url = url
        self.partner = partner
        self.key = lock_key("leader", partner)
        self.lost = threading.Event()  # set when leadership ends; cleared when it begins
        self.role = "standby"
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"

    def try_lead(self) -> bool:
        """Lead if nobody does; True while this replica leads."""
        with self._lock:
            if self.is_leader:
                return True
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.url)
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                if row != (True,):
                    self.role = "standby"
                    return False
                record_holder(self._conn, self.partner, "leader")
            except psycopg.Error as exc:
                self._drop(str(database_error(self.url, exc)), role="unreachable")
                return False
            except StateError as exc:
                self._drop(str(exc), role="unreachable")
                return False
            self.role = "leader"
            self.lost.clear()
        log.info(_("leader for partner %s (%s)"), self.partner, redact_url(self.url))
        self._heartbeat = threading.Thread(target=self._beat, name="leader-heartbeat", daemon=True)
        self._heartbeat.start()
        return True

    def leader(self) -> str | None:
        """Who leads now ('pid P on HOST, since T'), as far as the database says."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                return None
            try:
                return current_holder(self._conn, self.partner, "leader")
            except psycopg.Error:
                return None

    def _beat(self) -> None:
        while not self._closing.wait(HEARTBEAT):
            with self._lock:
                if not self.is_leader:
                    return
                try:
                    assert self._conn is not None
                    self._conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    self._drop(str(database_error(self.url, exc)), role="standby")
                    return

    def _drop(self, reason: str, *, role: str) -> None:
        """Give up leadership (called with the lock held): stop applying at once."""
        was_leader = self.is_leader
        self.role = role
        self.lost.set()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        first = reason.splitlines()[0] if reason else ""
        if was_leader:
            log.error(_("no longer the leader, standing by: %s"), first)

    def close(self) -> None:
        """Step down (the lock goes with the connection)."""
        self._closing.set()
        with self._lock:
            self.role = "standby"
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class StopWhenAny(threading.Event):
    """An event that also counts as set when any of ``others`` is: stops a pass on a signal or
    when leadership is lost, without a thread to join them."""

    def __init__(self, *others: threading.Event) -> None:
        super().__init__()
        self._others = others

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self._others)
