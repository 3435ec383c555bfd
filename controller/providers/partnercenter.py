"""The Partner Center provider: observes and changes a real tenant (or the emulator) through
the REST API. The HTTP contract (headers, ids, errors, throttling) is ``pcapi``'s; the resources'
meaning is ``pcresources``'; this module says what to ask, in which order, and what an answer
means for the action at hand.

- A change is a PATCH of the full resource as last read, with its etag in ``If-Match`` when it
  has one (new-commerce items have none). A stale etag (400 code 2055, or 412) is read afresh and
  tried once more, as a new request.
- A change answered 202 (accepted, not done) is polled until the resource shows it, within
  ``Polling``'s bounds; otherwise the action fails as pending: never reported applied blind.
- A removal answered 3000 is not taken for success: the customer is read again, and only a
  relationship that is gone (or refused with 20002) counts as removed.
- One customer that cannot be observed (an unexpected error for its calls) is that customer's
  failure: it is listed in ``CurrentState.unobserved`` and left out of the plan, never shown as a
  customer without subscriptions. Failures that are everyone's (credentials) fail the run.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from ..current import CurrentState, Customer, Subscription, iso_utc
from ..errors import PermanentProviderError, ProviderError, validation_problem
from ..i18n import _
from ..ids import normalize_guid
from ..observation import (
    FULL,
    Needs,
    Observation,
    Observed,
    ObservePolicy,
    from_cache_alone,
    listing_digest,
    to_read,
)
from ..ratelimit import RateLimiter
from ..retry import RetryPolicy
from .auth import TokenSource, token_source
from .pcapi import Answer, Session, camel_keys, retry_after_seconds
from .pcresources import (
    active_azure_subscriptions,
    api_path,
    commerce_of,
    invitation_link,
    is_azure_commitment,
    open_commitments,
    open_reserved_instances,
    parse_customer,
    parse_subscription,
    relationship_of,
)

DEFAULT_BASE_URL = "https://api.partnercenter.microsoft.com"
PAGE_SIZE = 500
NO_RELATIONSHIP = "20002"  # "No relationship between caller and account"
RELATIONSHIP_GONE = "3000"  # documented as "Invalid property"; also seen while it still existed
STALE_ETAG = {"2055", "412", "PreconditionFailed"}  # "Etag is no longer valid"
EVERYONES_FAILURE = {"auth", "401"}  # a failure no single customer explains
MAX_PAGES = 10_000


@dataclass(frozen=True)
class Settings:
    base_url: str
    tenant_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        tenant = env.get("PARTNER_CENTER_TENANT_ID", "")
        try:
            tenant = normalize_guid(tenant)
        except ValueError as exc:
            raise ProviderError(
                _("PARTNER_CENTER_TENANT_ID must be the partner's tenant id (a GUID)")
            ) from exc
        base = env.get("PARTNER_CENTER_BASE_URL") or DEFAULT_BASE_URL
        return cls(base_url=checked_base_url(base), tenant_id=tenant)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def checked_base_url(url: str) -> str:
    """The API root, refused unless the bearer token can only travel encrypted: https, or plain
    http to this machine (the emulator); no credentials, query or fragment in it. Checked at
    start-up, before any token is requested or sent."""

    def refuse(why: str) -> ProviderError:
        return ProviderError(_("PARTNER_CENTER_BASE_URL {}: {}").format(shown, why))

    shown = url if len(url) <= 200 else url[:200] + "…"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise refuse(_("not a URL")) from exc
    if parsed.userinfo:
        shown = _("(not shown: it holds credentials)")
        raise refuse(_("must not hold credentials; the token comes from the environment"))
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise refuse(_("must be an https:// URL with a host"))
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise refuse(_("must not have a query or a fragment"))
    if parsed.scheme == "http" and not _is_loopback(parsed.host):
        raise refuse(
            _(
                "must be https: the bearer token is only sent over TLS "
                "(plain http only to this machine: 127.0.0.0/8, ::1, localhost)"
            )
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class Polling:
    """How long a change answered 202 is awaited: ``attempts`` reads, ``interval`` seconds
    apart (or what the answer's Retry-After says), ``max_wait`` seconds in all."""

    attempts: int = 10
    interval: float = 3.0
    max_wait: float = 120.0


class PartnerCenterProvider:
    """Observes and changes a real tenant (or the emulator) through the REST API."""

    def __init__(
        self,
        settings: Settings,
        token: TokenSource,
        *,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        observe_parallelism: int = 8,
        retry: RetryPolicy | None = None,
        polling: Polling | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._session = Session(
            settings.base_url,
            token,
            rate_limiter=rate_limiter,
            transport=transport,
            timeout=timeout,
        )
        self._parallelism = max(1, observe_parallelism)
        self._retry = retry or RetryPolicy()
        self._polling = polling or Polling()
        self._sleep = sleep
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}  # as last read, with etag
        self._etags: dict[str, dict[str, str]] = {}  # customer -> subscription -> etag
        # Subscriptions a plan saw from the observation cache (and when it observed them).
        self._assumed: dict[tuple[str, str], tuple[Subscription, datetime | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        rate_limiter: RateLimiter | None = None,
        parallelism: int = 8,
        state_dir: Path | None = None,
    ) -> PartnerCenterProvider:
        return cls(
            Settings.from_env(env),
            token_source(env, state_dir=state_dir),
            rate_limiter=rate_limiter,
            observe_parallelism=parallelism,
        )

    # --- observe -----------------------------------------------------------------------------

    def _read(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        """A GET: safe to repeat, so temporary errors are retried here."""
        answer = self._retry.call(
            lambda: self._session.request("GET", path, headers=headers), sleep=self._sleep
        )
        return answer.body

    def _items(self, path: str) -> list[dict[str, Any]]:
        """Every item of a collection, following ``links.next`` (a uri without ``/v1``, and
        headers such as MS-ContinuationToken) page after page."""
        items: list[dict[str, Any]] = []
        page = self._read(path)
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        while True:
            items.extend(page.get("items") or [])
            following = (page.get("links") or {}).get("next")
            if not following:
                return items
            uri = api_path(str(following["uri"]))
            headers = {str(h["key"]): str(h["value"]) for h in following.get("headers") or []}
            where = (uri, tuple(sorted(headers.items())))
            if where in seen or len(seen) >= MAX_PAGES:
                message = _("unexpected response from Partner Center: {} pages in a loop")
                raise PermanentProviderError(message.format(path), code="bad_response")
            seen.add(where)
            page = self._read(uri, headers=headers)

    def _observe_customer(self, raw: Mapping[str, Any], *, fully: bool = False) -> Customer:
        """One customer: its subscriptions when it is a reseller customer, and, only where they
        matter (customers with Azure, or read ``fully``: about to be removed), its Azure plan's
        active subscriptions and its open reserved instances."""
        customer_id = normalize_guid(raw["id"])
        if relationship_of(raw) != "reseller":
            return parse_customer(raw)  # advisor, syndication, none: never read or changed
        base = f"/v1/customers/{customer_id}"
        try:
            raw_items = self._items(f"{base}/subscriptions")
        except PermanentProviderError as exc:
            if exc.code == NO_RELATIONSHIP:  # it ended the relationship from its side
                return parse_customer(raw, refused=True)
            raise
        etags = {}
        with self._lock:
            for item in raw_items:
                subscription_id = normalize_guid(item["id"])
                self._resources[(customer_id, subscription_id)] = item
                self._assumed.pop((customer_id, subscription_id), None)
                etag = (item.get("attributes") or {}).get("etag")
                if etag:
                    etags[subscription_id] = str(etag)
            self._etags[customer_id] = etags
        subscriptions = tuple(
            self._with_entitlements(base, parse_subscription(item), item)
            for item in raw_items
            if not is_azure_commitment(item)
        )
        reservations = open_commitments(raw_items)
        # A reserved instance can be bought on a customer with no Azure subscription left: a
        # customer about to be removed is asked whatever its subscriptions are.
        if fully or any(_uses_azure(item) for item in raw_items):
            reservations += open_reserved_instances(self._items(f"{base}/entitlements"))
        return parse_customer(raw, subscriptions, reservations_open=reservations)

    def _with_entitlements(
        self, base: str, subscription: Subscription, raw: Mapping[str, Any]
    ) -> Subscription:
        if subscription.commerce != "azure_plan" or subscription.status not in (
            "active",
            "suspended",
        ):
            return subscription
        entitlements = self._items(f"{base}/subscriptions/{subscription.id}/azureEntitlements")
        active = active_azure_subscriptions(entitlements)
        return subscription.model_copy(update={"azure_subscriptions_active": active})

    def _observe_or_fail(
        self, raw: Mapping[str, Any], *, fully: bool = False
    ) -> Customer | ProviderError:
        try:
            return self._observe_customer(raw, fully=fully)
        except ProviderError as exc:
            if getattr(exc, "code", None) in EVERYONES_FAILURE:
                raise
            return exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # incl. pydantic's
            return _bad_response(exc)

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

    def observe(self) -> CurrentState:
        """Every customer, read now."""
        return self.observe_with({}, Needs(), FULL).current

    def observe_with(
        self, cached: Mapping[str, Observed | None], needs: Needs, policy: ObservePolicy
    ) -> Observation:
        """The customer list, then the subscriptions of the customers ``policy`` and ``needs``
        ask for (``observation.to_read``); the others as ``cached`` has them, and remembered as
        such, so that a change to one of them is refused unless it is still as cached."""
        if policy.refresh == "none":
            result = from_cache_alone(self.settings.tenant_id, dict(cached), datetime.now(UTC))
            self._assume(result.current.customers, cached)
            return result
        try:
            raw_customers = self._items(f"/v1/customers?size={PAGE_SIZE}")
            ids = [normalize_guid(raw["id"]) for raw in raw_customers]
            listed = {i: listing_digest(raw) for i, raw in zip(ids, raw_customers, strict=True)}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _bad_response(exc) from exc
        listed_at = self._session.service_time() or datetime.now(UTC)
        resellers = {
            i: listed[i]
            for i, raw in zip(ids, raw_customers, strict=True)
            if relationship_of(raw) == "reseller"
        }
        read = to_read(resellers, cached, needs, listed_at, policy)

        def one(item: tuple[str, Mapping[str, Any]]) -> Customer | ProviderError | Observed:
            customer_id, raw = item
            entry = cached.get(customer_id)
            if customer_id in resellers and customer_id not in read and entry is not None:
                return entry
            return self._observe_or_fail(raw, fully=customer_id in needs.fully)

        with ThreadPoolExecutor(max_workers=self._parallelism) as pool:
            outcomes = list(pool.map(one, zip(ids, raw_customers, strict=True)))
        failures = {i: o for i, o in zip(ids, outcomes, strict=True) if isinstance(o, Exception)}
        tried = sum(1 for i in resellers if i in read or cached.get(i) is None)
        if failures and len(failures) == tried:  # nobody could be read: the run's failure
            raise next(iter(failures.values()))
        now = self._session.service_time() or datetime.now(UTC)
        observations: dict[str, Observed | None] = {}
        customers = []
        for customer_id, raw, outcome in zip(ids, raw_customers, outcomes, strict=True):
            if isinstance(outcome, Observed):
                customers.append(outcome.customer)
                observations[customer_id] = outcome
            elif isinstance(outcome, Customer):
                customers.append(outcome)
                observations[customer_id] = Observed.model_construct(
                    customer=outcome,
                    observed_at=now,
                    listed=listed[customer_id],
                    etags=self._etags.get(customer_id, {}),
                )
            else:  # could not be read: its last observation (if any) stays the cache's
                customers.append(parse_customer(raw))
                observations[customer_id] = cached.get(customer_id)
        from_cache = [o for o in outcomes if isinstance(o, Observed)]
        self._assume(tuple(o.customer for o in from_cache), cached)
        try:
            current = CurrentState(
                partner={"id": self.settings.tenant_id, "name": ""},
                customers=tuple(customers),
                # The service's clock (its answers' Date) decides its windows: the emulator's is
                # the world's own; the wall clock only when no answer said.
                now=now,
                unobserved={i: str(e) for i, e in failures.items()},
            )
        except ValidationError as exc:  # e.g. a customer listed twice: neither may win
            raise PermanentProviderError(
                _("unexpected response from Partner Center: {}").format(validation_problem(exc)),
                code="bad_response",
            ) from exc
        oldest = min((o.observed_at for o in from_cache), default=now if resellers else None)
        fresh = frozenset(i for i, o in zip(ids, outcomes, strict=True) if isinstance(o, Customer))
        read_now = len(fresh & resellers.keys())
        return Observation(current, observations, fresh, oldest, len(from_cache), read_now)

    def _assume(
        self, customers: tuple[Customer, ...], cached: Mapping[str, Observed | None]
    ) -> None:
        """Remember the subscriptions a plan saw from the cache, not read now: a change to one
        reads it first and is refused unless it is still as cached."""
        with self._lock:
            for customer in customers:
                entry = cached.get(customer.id)
                when = entry.observed_at if entry is not None else None
                for subscription in customer.subscriptions:
                    key = (customer.id, subscription.id)
                    self._resources.pop(key, None)
                    self._assumed[key] = (subscription, when)

    # --- actions ---------------------------------------------------------------------------

    def _subscription_path(self, customer_id: str, subscription_id: str) -> str:
        return f"/v1/customers/{customer_id.lower()}/subscriptions/{subscription_id.lower()}"

    def _patch_subscription(self, customer_id: str, subscription_id: str, **change: Any) -> None:
        """PATCH the full resource as last read, with ``change`` applied and its etag (if it has
        one) in If-Match; read it afresh first if it was never read (or came from the
        observation cache), or once if the etag went stale. A resource read again is changed only
        if it is still as the plan saw it. A 202 is awaited until the resource shows the change."""
        key = (customer_id.lower(), subscription_id.lower())
        path = self._subscription_path(*key)
        with self._lock:
            resource = self._resources.get(key)
            assumed = self._assumed.get(key) if resource is None else None
        for attempt in (1, 2):
            if resource is None or attempt == 2:
                resource = self._read(path)
                if assumed is not None:
                    _check_as_cached(path, resource, *assumed)
                    assumed = None
            etag = (resource.get("attributes") or {}).get("etag")
            headers = {"If-Match": str(etag)} if etag else {}
            try:
                answer = self._session.request(
                    "PATCH", path, json={**resource, **change}, headers=headers
                )
            except PermanentProviderError as exc:
                if exc.code in STALE_ETAG and attempt == 1:
                    # Someone changed it since it was read: read it again, and send the change
                    # (a new request) only if what the plan decided on is still so.
                    assumed = _as_read(resource)
                    continue
                raise
            updated = self._settled(path, answer, change)
            with self._lock:
                self._resources[key] = updated
                self._assumed.pop(key, None)
            return

    def _settled(self, path: str, answer: Answer, change: Mapping[str, Any]) -> dict[str, Any]:
        """The resource once it shows ``change``: the answer itself, or, after a 202, the
        resource read again until it does (bounded); else the action is pending."""
        body = answer.body if isinstance(answer.body, dict) else None
        if answer.status != 202 and body is not None and _shows(body, change):
            return body
        if answer.status != 202:
            return self._read(path)  # a 200 without the resource: trust, but keep it fresh
        interval = _retry_after(answer) or self._polling.interval
        # The answer's Location says where to look; always under the API root (api_path keeps
        # only its path), so the bearer token never goes to another host.
        location = answer.headers.get("Location")
        polled = api_path(location) if location else path
        started = time.monotonic()
        for _attempt in range(self._polling.attempts):
            if time.monotonic() - started + interval > self._polling.max_wait:
                break
            self._sleep(interval)
            resource, located = self._poll(polled, path)
            polled = polled if located else path  # a Location that is not it: not asked again
            if _shows(resource, change):
                return dict(resource)
        raise PermanentProviderError(
            _(
                "{}: Partner Center accepted the change ({}) with 202 but does not show it after "
                "{:.0f} s; it may still complete: the next plan shows whether it did"
            ).format(path, _describe(change), time.monotonic() - started),
            code="pending",
        )

    def _poll(self, polled: str, path: str) -> tuple[Mapping[str, Any], bool]:
        """The subscription as ``polled`` (the 202's Location) shows it, or, when that is not
        the subscription (an operation's status, a link that cannot be read), the subscription
        itself read again; and whether the Location gave it."""
        if polled != path:
            try:
                shown = self._read(polled)
            except PermanentProviderError:
                shown = None
            subscription_id = path.rsplit("/", 1)[-1]
            if isinstance(shown, Mapping) and (
                str(camel_keys(dict(shown)).get("id", "")).lower() == subscription_id
            ):
                return shown, True
        resource: Mapping[str, Any] = self._read(path)
        return resource, polled == path

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._patch_subscription(customer_id, subscription_id, status="suspended")

    def reactivate_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._patch_subscription(customer_id, subscription_id, status="active")

    def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None:
        self._patch_subscription(customer_id, subscription_id, quantity=quantity)

    def cancel_subscription(self, customer_id: str, subscription_id: str) -> None:
        """Cancel a new-commerce subscription: PATCH ``status: deleted`` (inside its window)."""
        self._patch_subscription(customer_id, subscription_id, status="deleted")

    def set_auto_renew(self, customer_id: str, subscription_id: str, enabled: bool) -> None:
        self._patch_subscription(customer_id, subscription_id, autoRenewEnabled=enabled)

    def remove_relationship(self, customer_id: str) -> None:
        path = f"/v1/customers/{customer_id.lower()}"
        body = {"relationshipToPartner": "none", "attributes": {"objectType": "Customer"}}
        try:
            self._session.request("PATCH", path, json=body)
        except PermanentProviderError as exc:
            if exc.code == NO_RELATIONSHIP:
                return  # already gone
            if exc.code != RELATIONSHIP_GONE:
                raise
            still = self._relationship_now(path)
            if still != "none":
                raise PermanentProviderError(
                    _(
                        "{}; the customer, read again, still shows relationship {}: not removed"
                    ).format(exc, still),
                    code=RELATIONSHIP_GONE,
                ) from exc

    def _relationship_now(self, path: str) -> str:
        """The customer's relationship as the service shows it now (``none`` when refused)."""
        try:
            return relationship_of(self._read(path) or {})
        except PermanentProviderError as exc:
            if exc.code in (NO_RELATIONSHIP, "404"):
                return "none"
            raise

    def request_relationship(self, customer_id: str) -> str:
        answer = self._session.request("GET", "/v1/customers/relationshiprequests")
        return invitation_link(answer.body)

    def close(self) -> None:
        self._session.close()


def _uses_azure(raw: Mapping[str, Any]) -> bool:
    """A subscription under which reserved instances may have been bought: the Azure plan, an
    Azure commitment, or a legacy Azure offer (MS-AZR-...)."""
    item = camel_keys(raw)
    offer = str(item.get("offerId") or "").upper()
    return commerce_of(item)[0] == "azure_plan" or offer.startswith("MS-AZR-")


# What of a subscription the plan decided on; the Azure plan's active subscriptions come from
# another read, and the moment of a suspension is not in the resource.
_NOT_COMPARED = {"azure_subscriptions_active", "suspended_at"}


def _as_read(resource: Mapping[str, Any]) -> tuple[Subscription, None] | None:
    """The subscription as this run read it (None if it cannot be parsed: then not compared)."""
    try:
        return parse_subscription(resource), None
    except (KeyError, TypeError, ValueError):
        return None


def _check_as_cached(
    path: str, resource: Mapping[str, Any], assumed: Subscription, observed_at: datetime | None
) -> None:
    """Refuse a change to a subscription that, read now, is not as the plan saw it (in the
    observation cache, observed at ``observed_at``, or as this run read it, None): the plan may
    be wrong about it; the next plan reads it."""
    try:
        now = parse_subscription(resource).model_dump(exclude=_NOT_COMPARED)
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad_response(exc) from exc
    if now == assumed.model_dump(exclude=_NOT_COMPARED):
        return
    if observed_at is None:
        message = _(
            "{}: changed since this run read it: not changed; the next plan reads it afresh"
        )
        raise PermanentProviderError(message.format(path), code="stale_observation")
    raise PermanentProviderError(
        _(
            "{}: changed since it was observed ({}, from the observation cache): not "
            "changed; the next plan reads it afresh"
        ).format(path, iso_utc(observed_at)),
        code="stale_observation",
    )


def _shows(resource: Mapping[str, Any], change: Mapping[str, Any]) -> bool:
    item = camel_keys(dict(resource))
    return all(
        str(item.get(k)).lower() == str(v).lower() if isinstance(v, str) else item.get(k) == v
        for k, v in change.items()
    )


def _describe(change: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in change.items())


def _retry_after(answer: Answer) -> float | None:
    return retry_after_seconds(answer.headers.get("Retry-After"))


def _bad_response(exc: Exception) -> PermanentProviderError:
    first_line = next(iter(str(exc).splitlines()), "")
    return PermanentProviderError(
        _("unexpected response from Partner Center: {}: {}").format(type(exc).__name__, first_line),
        code="bad_response",
    )
