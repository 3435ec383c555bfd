"""The HTTP boundary of the Partner Center client: one request in, the decoded answer or the
project's own error out.

Everything the service's documented contract asks of a client happens here, once: the headers
(``MS-Contract-Version``, ``MS-PartnerCenter-Application``, ``MS-RequestId``,
``MS-CorrelationId``), a token refreshed once on 401, one rate-limiter token per HTTP request,
the UTF-8 byte-order mark the live service puts before its JSON, and the mapping of errors:
timeouts, connection failures, 429, 409 (but 27009) and 5xx are temporary (``Retry-After`` in
seconds or as an HTTP date), other 4xx permanent with the service's code. Every error message
carries the request and correlation ids, which Microsoft support asks for; tokens never appear
in any.

Request ids: a request that got no answer (timeout, lost connection, 5xx) is retried with the
same ``MS-RequestId``, so that the service can recognise a change it already made; once an answer
came back (success, refusal, 429), the next request of the same action gets a new id.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import httpx

from ..errors import PermanentProviderError, TemporaryProviderError
from ..i18n import _
from ..metrics import count_partner_center_response
from ..ratelimit import RateLimiter
from .base import logical_request

CONTRACT_VERSION = "v1"
APPLICATION = "partner-reconciler"

# 409 Conflict is the service still busy with the resource: a new-commerce renewal being
# processed ("409: Conflict ... Partners can resubmit the request after waiting for two
# minutes", learn.microsoft.com/partner-center/create-a-new-subscription), an order or a
# transfer in progress (800060, 800064, 900101...), 800082 "Subscription is not ready to be
# updated. Try again after sometime" (learn.microsoft.com/partner-center/developer/error-codes):
# temporary, retried. Except the one conflict that waiting does not end: 27009, an add-on
# enabled while its base is not active.
LASTING_CONFLICTS = frozenset({"27009"})

# The service's codes that a person meets, said so that the person knows what to do.
EXPLAINED_CODES: Mapping[str, str] = {
    "800090": _(
        "the service refused to decrease the quantity: a new-commerce subscription's seats can "
        "only be reduced within 7 days (168 hours) of purchase or renewal, and by no more than "
        "its refundable quantity"
    ),
    "900214": _(
        "the service refused to decrease the quantity: the window for reducing seats has passed"
    ),
    "900257": _(
        "the service refused to decrease the quantity: the window for reducing seats has passed"
    ),
    "900117": _(
        "the service refused to cancel: the cancellation window has passed; turn auto-renewal "
        "off (auto_renew: false) and let the subscription expire at its term end"
    ),
    "900213": _(
        "the service refused to cancel: the 168-hour cancellation window has passed; turn "
        "auto-renewal off (auto_renew: false) and let the subscription expire at its term end"
    ),
    "900115": _(
        "the service refused to suspend the Azure plan: it still has active Azure subscriptions; "
        "disable or cancel them in the Azure portal first"
    ),
    "800091": _("the service refused to change a suspended subscription: reactivate it first"),
    "20002": _("the partner no longer has a relationship with this customer"),
}


def application_name() -> str:
    """``partner-reconciler/<version>``, as sent in MS-PartnerCenter-Application."""
    try:
        return f"{APPLICATION}/{metadata.version(APPLICATION)}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return f"{APPLICATION}/0"


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait: a number of seconds, or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def camel_keys(value: Any) -> Any:
    """Property names as the service writes them (camelCase), also from re-serialised PascalCase."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:] if k else k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def decode_body(content: bytes) -> Any:
    """The JSON body, after the UTF-8 byte-order mark the live service sends; None when empty.
    Raises ValueError when it is not JSON."""
    text = content.decode("utf-8-sig")
    return jsonlib.loads(text) if text.strip() else None


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status (200, 201, 202...), decoded body and headers."""

    status: int
    body: Any
    headers: httpx.Headers


class Session:
    """Sends requests to the Partner Center API (or the emulator) as its contract asks."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._token = token
        self._bearer: str | None = None
        self._limiter = rate_limiter or RateLimiter(0)
        self._client = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            headers={
                "Accept": "application/json",
                "MS-Contract-Version": CONTRACT_VERSION,
                "MS-PartnerCenter-Application": application_name(),
            },
        )
        self._unanswered: dict[tuple[str, str, str], str] = {}  # request ids to reuse
        self._lock = threading.Lock()
        self._service_time: datetime | None = None

    def service_time(self) -> datetime | None:
        """The service's clock: the ``Date`` of its latest answer (None before any)."""
        return self._service_time

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request (two after a 401: once more with a fresh token)."""
        for attempt in (1, 2):
            response, ids = self._exchange(method, path, json=json, headers=headers)
            count_partner_center_response(response.status_code)
            if response.status_code != 401 or attempt == 2:
                break
            self._bearer = None
        return self._decode(method, path, response, ids)

    def _request_id(self, method: str, path: str) -> tuple[tuple[str, str, str] | None, str]:
        key = logical_request.get()
        if not key:
            return None, str(uuid.uuid4())
        slot = (key, method, path)
        with self._lock:
            return slot, self._unanswered.setdefault(slot, str(uuid.uuid4()))

    def _answered(self, slot: tuple[str, str, str] | None) -> None:
        if slot is not None:
            with self._lock:
                self._unanswered.pop(slot, None)

    def _exchange(
        self, method: str, path: str, *, json: Any, headers: Mapping[str, str] | None
    ) -> tuple[httpx.Response, str]:
        if self._bearer is None:
            self._bearer = self._token()
        slot, request_id = self._request_id(method, path)
        correlation_id = str(uuid.uuid4())
        ids = f"MS-RequestId {request_id}, MS-CorrelationId {correlation_id}"
        all_headers = {
            "Authorization": f"Bearer {self._bearer}",
            "MS-CorrelationId": correlation_id,
            "MS-RequestId": request_id,
            **(headers or {}),
        }
        self._limiter.acquire()  # one token per HTTP request, charged here only
        try:
            response = self._client.request(method, path, json=json, headers=all_headers)
        except httpx.TimeoutException as exc:
            raise TemporaryProviderError(
                _("{} {}: timed out ({})").format(method, path, ids)
            ) from exc
        except httpx.TransportError as exc:
            raise TemporaryProviderError(
                _("{} {}: connection failed: {} ({})").format(method, path, type(exc).__name__, ids)
            ) from exc
        if response.status_code < 500:  # an answer: the next request is a new one
            self._answered(slot)
        self._note_date(response.headers.get("Date"))
        return response, ids

    def _note_date(self, value: str | None) -> None:
        if not value:
            return
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        self._service_time = when if when.tzinfo else when.replace(tzinfo=UTC)

    def _decode(self, method: str, path: str, response: httpx.Response, ids: str) -> Answer:
        status = response.status_code
        try:
            body = camel_keys(decode_body(response.content))
        except ValueError as exc:
            if status < 400:
                raise PermanentProviderError(
                    _("{} {}: HTTP {}: the answer is not JSON ({})").format(
                        method, path, status, ids
                    ),
                    code="bad_response",
                ) from exc
            body = None
        if status < 400:
            return Answer(status, body, response.headers)
        error = body if isinstance(body, dict) else {}
        # The throttling answer is {statusCode, message}, not the usual {code, description}.
        code = str(error.get("code") or error.get("statusCode") or status)
        description = str(
            error.get("description") or error.get("message") or response.reason_phrase
        )
        detail = f"{method} {path}: HTTP {status} {code}: {description} ({ids})"
        explained = EXPLAINED_CODES.get(code)
        message = f"{explained} [{detail}]" if explained else detail
        if status == 429 or status >= 500 or (status == 409 and code not in LASTING_CONFLICTS):
            seconds = retry_after_seconds(response.headers.get("Retry-After"))
            raise TemporaryProviderError(message, retry_after=seconds)
        raise PermanentProviderError(message, code=code)

    def close(self) -> None:
        self._client.close()
