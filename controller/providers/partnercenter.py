"""The Partner Center provider: a client of the Partner Center REST API (httpx).

HTTP and API errors are mapped to the project's own errors at one boundary, ``_send``:
timeouts, connection failures, 429 (with Retry-After) and 5xx are temporary; other 4xx are
permanent, with the service's error code. Tokens never appear in errors or logs.
"""

from __future__ import annotations

import html
import ipaddress
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from ..current import CurrentState, Customer, Subscription
from ..errors import PermanentProviderError, ProviderError, TemporaryProviderError
from ..i18n import _
from ..ids import normalize_guid
from ..ratelimit import RateLimiter
from ..retry import RetryPolicy
from .auth import TokenSource, token_source
from .base import logical_request

DEFAULT_BASE_URL = "https://api.partnercenter.microsoft.com"
PAGE_SIZE = 500
NO_RELATIONSHIP = "20002"  # "No relationship between caller and account"
RELATIONSHIP_GONE = "3000"  # "relationship does not exist": a second removal
KNOWN_STATUSES = {"active", "suspended", "deleted", "expired", "pending", "disabled"}
_REQUEST_NAMESPACE = uuid.UUID("6f1d8e52-3c1a-4b8e-9a57-9d0f3c2b7a10")


def camel_keys(value: Any) -> Any:
    """Property names as the service writes them (camelCase), also from re-serialised PascalCase."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:] if k else k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def parse_subscription(raw: Mapping[str, Any]) -> Subscription:
    """A subscription resource as the controller sees it; statuses it does not know (``none``)
    count as ``disabled``: something the controller never changes."""
    item = camel_keys(raw)
    status = str(item.get("status", "")).lower()
    return Subscription(
        id=normalize_guid(item["id"]),
        offer=item.get("offerId"),
        name=item.get("friendlyName") or item.get("offerName"),
        quantity=int(item.get("quantity") or 0),
        status=status if status in KNOWN_STATUSES else "disabled",
    )


def parse_customer(
    raw: Mapping[str, Any], subscriptions: tuple[Subscription, ...] | None
) -> Customer:
    """A customer; ``subscriptions`` None means it is not a reseller customer, or its own calls
    are refused: relationship ``none`` (anything but ``reseller``, e.g. ``advisor``, is none)."""
    item = camel_keys(raw)
    profile = item.get("companyProfile") or {}
    return Customer(
        id=normalize_guid(item["id"]),
        name=profile.get("companyName") or "",
        domain=profile.get("domain"),
        relationship="reseller" if subscriptions is not None else "none",
        subscriptions=subscriptions or (),
    )


def invitation_link(raw: Mapping[str, Any]) -> str:
    """The invitation URL of a relationship request (the service HTML-escapes it)."""
    return html.unescape(str(camel_keys(raw)["url"]))


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
    ) -> None:
        self.settings = settings
        self._token = token
        self._bearer: str | None = None
        self._limiter = rate_limiter or RateLimiter(0)
        self._client = httpx.Client(
            base_url=settings.base_url,
            transport=transport,
            timeout=timeout,
            headers={"Accept": "application/json"},
        )
        self._parallelism = observe_parallelism
        self._retry = retry or RetryPolicy()
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}  # as last read, with etag
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, rate_limiter: RateLimiter | None = None
    ) -> PartnerCenterProvider:
        return cls(Settings.from_env(env), token_source(env), rate_limiter=rate_limiter)

    # --- the one boundary -----------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        counted: bool = True,
    ) -> Any:
        """One request; returns the decoded JSON body or raises the project's own error."""
        if counted:
            self._limiter.acquire()
        for attempt in (1, 2):  # a second attempt only after a 401, with a fresh token
            response = self._exchange(method, path, json=json, headers=headers)
            if response.status_code != 401 or attempt == 2:
                break
            self._bearer = None
        return self._decode(method, path, response)

    def _exchange(
        self, method: str, path: str, *, json: Any, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        if self._bearer is None:
            self._bearer = self._token()
        key = logical_request.get()
        request_id = (
            uuid.uuid5(_REQUEST_NAMESPACE, f"{key}|{method}|{path}") if key else uuid.uuid4()
        )
        all_headers = {
            "Authorization": f"Bearer {self._bearer}",
            "MS-CorrelationId": str(uuid.uuid4()),
            "MS-RequestId": str(request_id),
            **(headers or {}),
        }
        try:
            return self._client.request(method, path, json=json, headers=all_headers)
        except httpx.TimeoutException as exc:
            raise TemporaryProviderError(_("{} {}: timed out").format(method, path)) from exc
        except httpx.TransportError as exc:
            raise TemporaryProviderError(
                _("{} {}: connection failed: {}").format(method, path, type(exc).__name__)
            ) from exc

    def _decode(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if status < 400:
            return camel_keys(body)
        error = camel_keys(body) if isinstance(body, dict) else {}
        code = str(error.get("code", status))
        description = str(error.get("description") or response.reason_phrase)
        message = f"{method} {path}: HTTP {status} {code}: {description}"
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After")
            seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise TemporaryProviderError(message, retry_after=seconds)
        raise PermanentProviderError(message, code=code)

    # --- observe -----------------------------------------------------------------------------

    def _read(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        """A GET while observing: safe to repeat, so temporary errors are retried here."""
        return self._retry.call(lambda: self._send("GET", path, headers=headers))

    def _customer_pages(self) -> list[dict[str, Any]]:
        customers: list[dict[str, Any]] = []
        page = self._read(f"/v1/customers?size={PAGE_SIZE}")
        while True:
            customers.extend(page.get("items") or [])
            following = (page.get("links") or {}).get("next")
            if not following:
                return customers
            uri = str(following["uri"])
            uri = (
                uri
                if uri.startswith("/v1/")
                else "/v1" + ("" if uri.startswith("/") else "/") + uri
            )
            headers = {h["key"]: h["value"] for h in following.get("headers") or []}
            page = self._read(uri, headers=headers)

    def _subscriptions(self, raw_customer: Mapping[str, Any]) -> tuple[Subscription, ...] | None:
        """A reseller customer's subscriptions, or None when its calls are refused (20002)."""
        customer_id = normalize_guid(raw_customer["id"])
        if str(raw_customer.get("relationshipToPartner", "")).lower() != "reseller":
            return None
        try:
            body = self._read(f"/v1/customers/{customer_id}/subscriptions")
        except PermanentProviderError as exc:
            if exc.code == NO_RELATIONSHIP:  # it ended the relationship from its side
                return None
            raise
        items = body.get("items") or []
        with self._lock:
            for item in items:
                self._resources[(customer_id, normalize_guid(item["id"]))] = item
        return tuple(parse_subscription(item) for item in items)

    def observe(self) -> CurrentState:
        try:
            raw_customers = self._customer_pages()
            with ThreadPoolExecutor(max_workers=self._parallelism) as pool:
                subscriptions = list(pool.map(self._subscriptions, raw_customers))
            customers = tuple(
                parse_customer(raw, subs)
                for raw, subs in zip(raw_customers, subscriptions, strict=True)
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # incl. pydantic's
            first_line = next(iter(str(exc).splitlines()), "")
            raise PermanentProviderError(
                _("unexpected response from Partner Center: {}: {}").format(
                    type(exc).__name__, first_line
                ),
                code="bad_response",
            ) from exc
        return CurrentState(
            partner={"id": self.settings.tenant_id, "name": ""},
            customers=customers,
            now=datetime.now(UTC),
        )

    # --- actions ---------------------------------------------------------------------------

    def _patch_subscription(self, customer_id: str, subscription_id: str, **change: Any) -> None:
        """PATCH the full resource as last read, with ``change`` applied and its etag in
        If-Match; read it afresh first if it was never read, or once if the etag went stale."""
        key = (customer_id.lower(), subscription_id.lower())
        path = f"/v1/customers/{key[0]}/subscriptions/{key[1]}"
        with self._lock:
            resource = self._resources.get(key)
        for attempt in (1, 2):
            if resource is None or attempt == 2:
                resource = self._send("GET", path)
            etag = str((resource.get("attributes") or {}).get("etag", ""))
            body = {**resource, **change}
            try:
                updated = self._send("PATCH", path, json=body, headers={"If-Match": etag})
            except PermanentProviderError as exc:
                if exc.code in ("412", "PreconditionFailed") and attempt == 1:
                    continue
                raise
            with self._lock:
                self._resources[key] = updated if isinstance(updated, dict) else body
            return

    def suspend_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._patch_subscription(customer_id, subscription_id, status="suspended")

    def reactivate_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._patch_subscription(customer_id, subscription_id, status="active")

    def update_quantity(self, customer_id: str, subscription_id: str, quantity: int) -> None:
        self._patch_subscription(customer_id, subscription_id, quantity=quantity)

    def cancel_subscription(self, customer_id: str, subscription_id: str) -> None:
        self._patch_subscription(customer_id, subscription_id, status="deleted")

    def set_auto_renew(self, customer_id: str, subscription_id: str, enabled: bool) -> None:
        self._patch_subscription(customer_id, subscription_id, autoRenewEnabled=enabled)

    def remove_relationship(self, customer_id: str) -> None:
        body = {"relationshipToPartner": "none", "attributes": {"objectType": "Customer"}}
        try:
            self._send("PATCH", f"/v1/customers/{customer_id.lower()}", json=body)
        except PermanentProviderError as exc:
            if exc.code != RELATIONSHIP_GONE:  # already removed: what was wanted
                raise

    def request_relationship(self, customer_id: str) -> str:
        return invitation_link(self._send("GET", "/v1/customers/relationshiprequests"))

    def close(self) -> None:
        self._client.close()
