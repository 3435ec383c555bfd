"""The observation cache: each customer's last observed state (its subscriptions, when, and their
etags), so that a plan reads from Partner Center only the customers it needs instead of one
request per customer of the tenant (see README, "Observation cache").

A plan reads the customer list, then the subscriptions of the customers that ``to_read`` picks:
those the specs changed since the last apply, those to be removed (read fully, entitlements
included), pending requests, those the customer list shows as new or changed, those never
observed, and the oldest of those observed more than ``max_age`` ago (a bounded number per run).
The others come from the cache. ``--refresh full`` reads everyone; ``--refresh none`` reads
nothing. Apply reads again each resource it changes and refuses to change one that is not as the
cache said (``partnercenter``), so a stale cache can leave a plan incomplete, never make a wrong
change.

Specs and ``state/`` come through pull requests, so the cache is never in the checkout (a poisoned
cache could hide a customer from the plan): the file store keeps it in the user's cache directory
(as the parse cache, ``speccache``), one file per state directory (its real path) and partner,
authenticated with the machine's HMAC key; the PostgreSQL store keeps it in a table of its own.
A cache that is damaged, unauthenticated or another's is ignored (one warning) and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from . import __version__
from .current import CurrentState, Customer, Partner, UtcDatetime
from .drift import spec_snapshot
from .errors import PlanError
from .fsutil import atomic_write
from .i18n import _
from .ids import Guid
from .records import Records
from .spec import Desired
from .usercache import mac, machine_key, usable_cache_dir

Refresh = Literal["auto", "full", "none"]
REFRESH_MODES: tuple[Refresh, ...] = ("auto", "full", "none")
DEFAULT_MAX_AGE = timedelta(hours=24)
# Customers re-read per run because their observation is older than --max-age, oldest first:
# bounded so that a pull request's dry run stays small; the nightly --refresh full (and watch
# mode's resync) re-reads the rest.
STALE_PER_RUN = 50

log = logging.getLogger("reconcile")


class Observed(BaseModel):
    """One customer as last observed: the state the planner sees, when it was read (the
    service's clock), its entry in the customer list (a digest: a change there means read it
    again) and its subscriptions' etags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: Customer
    observed_at: UtcDatetime
    listed: str
    etags: dict[str, str] = Field(default_factory=dict)


# Customer id -> its last observation; None: listed, never observed (its read failed).
Observations = dict[str, Observed | None]
_OBSERVATIONS: TypeAdapter[dict[Guid, Observed | None]] = TypeAdapter(dict[Guid, Observed | None])


@dataclass(frozen=True)
class ObservePolicy:
    """How much of the tenant a run reads afresh (``--refresh``, ``--max-age``)."""

    refresh: Refresh = "auto"
    max_age: timedelta = DEFAULT_MAX_AGE
    stale_per_run: int = STALE_PER_RUN


FULL = ObservePolicy(refresh="full")


@dataclass(frozen=True)
class Needs:
    """Customers a plan must see as they are now, whatever the cache says."""

    read: frozenset[str] = frozenset()
    # Read fully (reservation entitlements included, Azure or not): about to be removed.
    fully: frozenset[str] = frozenset()


def plan_needs(
    desired: Desired,
    records: Records,
    applied: Mapping[str, Mapping[str, str]],
    also: frozenset[str] = frozenset(),
) -> Needs:
    """The customers whose spec changed since the last apply (the applied snapshot), those to be
    removed (managed, left out of the specs), pending requests, and ``also``. Pure."""
    asked = spec_snapshot(desired)
    changed = {c for c, s in asked.items() if applied.get(c) != s}
    removals = {c for c in records.managed if c not in desired.customers}
    pending = {p.customer_id for p in records.pending}
    return Needs(read=frozenset(changed | pending | also), fully=frozenset(removals))


def to_read(
    listed: Mapping[str, str],
    cached: Mapping[str, Observed | None],
    needs: Needs,
    now: datetime,
    policy: ObservePolicy,
) -> frozenset[str]:
    """Which of the listed reseller customers (id -> digest of their list entry) to read now.
    Pure: ``now`` is the service's clock."""
    if policy.refresh == "full":
        return frozenset(listed)
    if policy.refresh == "none":
        return frozenset()
    wanted = needs.read | needs.fully
    read: set[str] = set()
    stale: list[tuple[datetime, str]] = []
    for customer_id, digest in listed.items():
        entry = cached.get(customer_id)
        if entry is None or entry.listed != digest or customer_id in wanted:
            read.add(customer_id)
        elif now - entry.observed_at > policy.max_age:
            stale.append((entry.observed_at, customer_id))
    stale.sort()
    read.update(c for _when, c in stale[: policy.stale_per_run])
    return frozenset(read)


def listing_digest(raw: Mapping[str, Any]) -> str:
    """A customer's entry in the customer list, as a digest: when it changes (relationship,
    name, domain), the customer is read again."""
    body = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()[:32]


@dataclass(frozen=True)
class Observation:
    """What one observation gave: the current state, what to cache now, and how fresh it is."""

    current: CurrentState
    observations: Observations
    fresh: frozenset[str]  # the customers read now (the others came from the cache)
    oldest: datetime | None = None  # the oldest observation the state is made of
    from_cache: int = 0  # reseller customers taken from the cache
    read: int = 0  # reseller customers whose subscriptions were read now


def from_cache_alone(partner_id: str, cached: Observations, now: datetime) -> Observation:
    """``--refresh none``: the state as the cache has it, no request at all; a customer listed
    but never observed is an error naming it (its spec would otherwise look unmet)."""
    if not cached:
        raise PlanError(
            _(
                "--refresh none: there is no observation cache for this state and partner yet; "
                "run once without it (--refresh auto or full)"
            )
        )
    never = sorted(c for c, o in cached.items() if o is None)
    if never:
        raise PlanError(
            _("--refresh none: never observed: {}; run without --refresh none to read them").format(
                ", ".join(never)
            )
        )
    entries = [o for o in cached.values() if o is not None]
    current = CurrentState(
        partner=Partner(id=partner_id),
        customers=tuple(o.customer for o in entries),
        now=now,
    )
    oldest = min((o.observed_at for o in entries), default=None)
    return Observation(current, dict(cached), frozenset(), oldest, len(entries))


# --- the file store's cache: outside the checkout, authenticated ----------------------------

VERSION = f"1/{__version__}"


def cache_path(state_dir: Path, partner: str, environ: Mapping[str, str]) -> Path | None:
    """Where the observation cache of ``state_dir`` and ``partner`` lives (the user's cache
    directory), or None when caching is turned off."""
    base = usable_cache_dir(environ)
    if base is None:
        return None
    key = os.fsencode(state_dir.resolve()) + b"\0" + partner.lower().encode()
    return Path(base) / f"observed-{hashlib.sha256(key).hexdigest()[:32]}.json"


class ObservationFile:
    """The file store's observation cache of one state directory and partner."""

    def __init__(self, state_dir: Path, partner: str, environ: Mapping[str, str]) -> None:
        self.path = cache_path(state_dir, partner, environ)
        self._state_dir = str(state_dir.resolve())
        self._partner = partner.lower()
        self._key: bytes | None = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self._key = machine_key(self.path.parent)

    def load(self) -> Observations:
        """The cached observations; none when there is no cache, and none (with one warning)
        when it is damaged, not authenticated by this machine's key, or another's."""
        if self.path is None or self._key is None:
            return {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            return self._ignored(exc.strerror or type(exc).__name__)
        tag, _newline, body = data.partition(b"\n")
        import hmac

        if not hmac.compare_digest(tag, mac(self._key, body)):
            return self._ignored(_("not written by this machine's controller"))
        try:
            document = orjson.loads(body)
            if not isinstance(document, dict) or document.get("version") != VERSION:
                return self._ignored(_("written by another version"))
            if (document.get("state_dir"), document.get("partner")) != (
                self._state_dir,
                self._partner,
            ):
                return self._ignored(_("of another state directory or partner"))
            return dict(_OBSERVATIONS.validate_python(document.get("customers")))
        except (ValueError, ValidationError) as exc:
            return self._ignored(type(exc).__name__)

    def _ignored(self, why: str) -> Observations:
        log.warning(_("%s: observation cache ignored (%s); this run reads afresh"), self.path, why)
        return {}

    def save(self, observations: Mapping[str, Observed | None]) -> None:
        if self.path is None or self._key is None:
            return
        document = {
            "version": VERSION,
            "state_dir": self._state_dir,
            "partner": self._partner,
            "customers": {
                c: (o.model_dump(mode="json") if o is not None else None)
                for c, o in observations.items()
            },
        }
        body = orjson.dumps(document)
        with contextlib.suppress(OSError):  # a cache not written costs time, never correctness
            atomic_write(self.path, (mac(self._key, body) + b"\n" + body).decode())


def load_entries(rows: Mapping[str, Any]) -> Observations:
    """Observations from stored JSON values (customer id -> dict or None); raises
    ValidationError when one is not an observation."""
    return dict(_OBSERVATIONS.validate_python(dict(rows)))
