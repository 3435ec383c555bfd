"""A Partner Center emulator: the REST endpoints the controller uses, served on 127.0.0.1 from a
local world file, enforcing Partner Center's rules from the same code as the local provider.

Knobs make it behave like the real service on a bad day: latency, a share of 429s (with
Retry-After), of 503s, and of lost responses (the change is made, the answer is a 504: the client
retries with the same MS-RequestId, which the emulator de-duplicates as the service does), and a
small page size so that paging is exercised.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .current import CurrentState, Customer, Subscription
from .errors import PermanentProviderError
from .providers import rules
from .providers.local import LocalProvider

Reply = tuple[int, Any, dict[str, str]]

_CUSTOMER = re.compile(r"^/v1/customers/([0-9a-fA-F-]{36})$")
_SUBSCRIPTIONS = re.compile(r"^/v1/customers/([0-9a-fA-F-]{36})/subscriptions$")
_SUBSCRIPTION = re.compile(r"^/v1/customers/([0-9a-fA-F-]{36})/subscriptions/([0-9a-fA-F-]{36})$")
_STATUS_OF_CODE = {"customer_not_found": 404, "subscription_not_found": 404, "20002": 403}


@dataclass(frozen=True)
class Knobs:
    latency: float = 0.0
    throttle: float = 0.0  # share of requests answered 429 with Retry-After
    server_errors: float = 0.0  # share answered 503
    lost_responses: float = 0.0  # share of changes made, then answered 504
    retry_after: int = 1
    page_size: int = 100
    token: str | None = None  # when set, the only bearer token accepted
    seed: int | None = None


def etag_of(subscription: Subscription) -> str:
    return hashlib.sha256(subscription.model_dump_json().encode()).hexdigest()[:16]


def subscription_resource(customer_id: str, subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "offerId": subscription.offer,
        "offerName": subscription.name,
        "friendlyName": subscription.name,
        "quantity": subscription.quantity,
        "status": subscription.status,
        "links": {
            "self": {
                "uri": f"/customers/{customer_id}/subscriptions/{subscription.id}",
                "method": "GET",
                "headers": [],
            }
        },
        "attributes": {"etag": etag_of(subscription), "objectType": "Subscription"},
    }


def customer_resource(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "companyProfile": {
            "tenantId": customer.id,
            "domain": customer.domain,
            "companyName": customer.name,
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "relationshipToPartner": customer.relationship,
        "attributes": {"objectType": "Customer"},
    }


def _error(status: int, code: str | int, description: str) -> Reply:
    return status, {"code": code, "description": description}, {}


def _refused(exc: PermanentProviderError) -> Reply:
    code = exc.code or "400"
    description = "No relationship between caller and account" if code == "20002" else str(exc)
    return _error(
        _STATUS_OF_CODE.get(code, 400), int(code) if code.isdigit() else code, description
    )


class Emulator:
    """The service's behaviour, independent of HTTP plumbing (``handle`` is easy to test)."""

    def __init__(self, state_dir: Path, knobs: Knobs | None = None) -> None:
        self.world = LocalProvider(state_dir)
        self.knobs = knobs or Knobs()
        self._random = random.Random(self.knobs.seed)
        self._random_lock = threading.Lock()
        self._answered: dict[str, Reply] = {}  # MS-RequestId of a change -> its reply

    def _draw(self) -> float:
        with self._random_lock:
            return self._random.random()

    def handle(self, method: str, target: str, headers: dict[str, str], body: Any) -> Reply:
        if self.knobs.latency:
            time.sleep(self.knobs.latency)
        authorization = headers.get("authorization", "")
        expected = f"Bearer {self.knobs.token}" if self.knobs.token else None
        if not authorization.startswith("Bearer ") or (expected and authorization != expected):
            return _error(401, 401, "Unauthorized")
        if self._draw() < self.knobs.throttle:
            status, payload, _ = _error(429, 429, "Too many requests")
            return status, payload, {"Retry-After": str(self.knobs.retry_after)}
        if self._draw() < self.knobs.server_errors:
            return _error(503, 503, "Service unavailable")
        request_id = headers.get("ms-requestid", "")
        if method == "PATCH" and request_id in self._answered:
            return self._answered[request_id]  # a retry of a change already made
        reply = self._route(method, target, headers, body)
        if method == "PATCH" and request_id and reply[0] < 300:
            self._answered[request_id] = reply
            if self._draw() < self.knobs.lost_responses:
                return _error(504, 504, "Gateway timeout")
        return reply

    def _route(self, method: str, target: str, headers: dict[str, str], body: Any) -> Reply:
        url = urlsplit(target)
        path, query = url.path.rstrip("/"), parse_qs(url.query)
        if method == "GET" and path == "/v1/customers":
            return self._list_customers(query, headers)
        if method == "GET" and path == "/v1/customers/relationshiprequests":
            link = rules.invitation_url(self.world.observe().partner.id).replace("&", "&amp;")
            return 200, {"url": link, "attributes": {"objectType": "RelationshipRequest"}}, {}
        if (match := _SUBSCRIPTIONS.match(path)) and method == "GET":
            return self._list_subscriptions(match[1].lower())
        if match := _SUBSCRIPTION.match(path):
            customer_id, subscription_id = match[1].lower(), match[2].lower()
            if method == "GET":
                return self._get_subscription(customer_id, subscription_id)
            if method == "PATCH":
                return self._patch_subscription(customer_id, subscription_id, headers, body)
        if (match := _CUSTOMER.match(path)) and method == "PATCH":
            return self._patch_customer(match[1].lower(), body)
        return _error(404, 404, f"no route for {method} {path}")

    def _list_customers(self, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        customers = self.world.observe().customers
        asked = int(query["size"][0]) if query.get("size") else self.knobs.page_size
        size = max(1, min(asked, self.knobs.page_size))
        token = headers.get("ms-continuationtoken")
        start = int(base64.b64decode(token).decode()) if token else 0
        page = customers[start : start + size]
        links: dict[str, Any] = {
            "self": {"uri": f"/v1/customers?size={size}", "method": "GET", "headers": []}
        }
        if start + size < len(customers):
            next_token = base64.b64encode(str(start + size).encode()).decode()
            links["next"] = {
                "uri": f"/customers?size={size}&seekOperation=Next",
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": next_token}],
            }
        payload = {
            "totalCount": len(page),
            "items": [customer_resource(c) for c in page],
            "links": links,
            "attributes": {"objectType": "Collection"},
        }
        return 200, payload, {}

    def _related(self, customer_id: str) -> Customer:
        world = self.world.observe()
        return rules.related_customer(world, customer_id)

    def _list_subscriptions(self, customer_id: str) -> Reply:
        try:
            customer = self._related(customer_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        items = [subscription_resource(customer.id, s) for s in customer.subscriptions]
        return (
            200,
            {"totalCount": len(items), "items": items, "attributes": {"objectType": "Collection"}},
            {},
        )

    def _get_subscription(self, customer_id: str, subscription_id: str) -> Reply:
        try:
            customer = self._related(customer_id)
            subscription = rules.find_subscription(customer, subscription_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        return 200, subscription_resource(customer_id, subscription), {}

    def _patch_subscription(
        self, customer_id: str, subscription_id: str, headers: dict[str, str], body: Any
    ) -> Reply:
        replies: list[Reply] = []

        def change(world: CurrentState) -> CurrentState:
            customer = rules.related_customer(world, customer_id)
            current = rules.find_subscription(customer, subscription_id)
            if headers.get("if-match") != etag_of(current):
                replies.append(_error(412, 412, "The resource was changed since it was read"))
                return world
            updated = self._apply_subscription_change(world, customer_id, current, body or {})
            after = rules.find_subscription(
                rules.related_customer(updated, customer_id), current.id
            )
            replies.append((200, subscription_resource(customer_id, after), {}))
            return updated

        try:
            self.world.change(change)
        except PermanentProviderError as exc:
            return _refused(exc)
        return replies[0]

    @staticmethod
    def _apply_subscription_change(
        world: CurrentState, customer_id: str, current: Subscription, body: dict[str, Any]
    ) -> CurrentState:
        status = str(body.get("status", current.status)).lower()
        quantity = body.get("quantity", current.quantity)
        if status != current.status:
            set_status = {
                "suspended": rules.suspend_subscription,
                "active": rules.reactivate_subscription,
            }.get(status)
            if set_status is None:
                raise PermanentProviderError(f"status {status!r} cannot be set", code="bad_status")
            world = set_status(world, customer_id, current.id)
        if quantity != current.quantity:
            world = rules.update_quantity(world, customer_id, current.id, int(quantity))
        return world

    def _patch_customer(self, customer_id: str, body: Any) -> Reply:
        if str((body or {}).get("relationshipToPartner", "")).lower() != "none":
            return _error(400, 400, "only relationshipToPartner: none is supported")
        try:
            customer = rules.find_customer(self.world.observe(), customer_id)
            if customer.relationship != "reseller":
                return _error(400, 3000, "Relationship does not exist")
            self.world.change(lambda w: rules.remove_relationship(w, customer_id))
        except PermanentProviderError as exc:
            return _refused(exc)
        removed = {
            "id": None,
            "relationshipToPartner": "none",
            "attributes": {"objectType": "Customer"},
        }
        return 200, removed, {}


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            status, payload, extra = _error(400, 400, "body is not JSON")
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, extra = self.emulator.handle(self.command, self.path, headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: requests carry bearer tokens in headers, and tests run many


def make_server(
    state_dir: Path, *, port: int = 0, knobs: Knobs | None = None
) -> ThreadingHTTPServer:
    """An emulator bound to 127.0.0.1 (port 0: any free port); call serve_forever() to run it."""
    handler = type("Handler", (_Handler,), {"emulator": Emulator(state_dir, knobs)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server
