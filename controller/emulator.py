"""A Partner Center emulator: the REST endpoints the controller uses, served on 127.0.0.1 from a
local world file, enforcing Partner Center's rules from the same code as the local provider.

It answers as the service does (its reference bodies and error-code page): a UTF-8 byte-order
mark before the JSON, error bodies ``{code, description, data, source}`` with the service's HTTP
status for each code, a stale or missing etag refused with 400 code 2055, new-commerce items
without etags, ``{statusCode, message}`` with Retry-After when throttling, 3000 when removing a
relationship that is gone. Every change goes through ``providers.rules``, never restated here.

Knobs make it behave like the real service on a bad day: latency, a share of 429s (with
Retry-After), of 503s, and of lost responses (the change is made, the answer is a 504: the client
retries with the same MS-RequestId, which the emulator de-duplicates as the service does), slow
quantity changes (202 + Location, shown after some reads), and small pages so that paging is
exercised.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from .current import CurrentState, Customer, Subscription
from .errors import PermanentProviderError, StateError
from .providers import rules
from .providers.local import LocalProvider

Reply = tuple[int, Any, dict[str, str]]
Item = TypeVar("Item")

_GUID = "([0-9a-fA-F-]{36})"
_CUSTOMER = re.compile(rf"^/v1/customers/{_GUID}$")
_ENTITLEMENTS = re.compile(rf"^/v1/customers/{_GUID}/entitlements$")
_SUBSCRIPTIONS = re.compile(rf"^/v1/customers/{_GUID}/subscriptions$")
_SUBSCRIPTION = re.compile(rf"^/v1/customers/{_GUID}/subscriptions/{_GUID}$")
_AZURE_ENTITLEMENTS = re.compile(
    rf"^/v1/customers/{_GUID}/subscriptions/{_GUID}/azureentitlements$", re.IGNORECASE
)
# The HTTP status Partner Center answers each error code with (its error-code page); 400 else.
_STATUS_OF_CODE = {
    "customer_not_found": 404,
    "20002": 403,
    "20003": 404,
    "900115": 403,
    "900263": 403,  # "This API method is not supported for legacy subscriptions."
}
_DESCRIPTION_OF_CODE = {
    "20002": "No relationship between caller and account.",
    "2055": "Etag is no longer valid",
    "3000": "The relationship between the partner and customer does not exist",
}
BOM = "\ufeff".encode()
COMPACT_WHEN_QUIET = 1.0  # seconds without a change before the log is folded into world.json
AZURE_PLAN_PRODUCT = {"id": "Azure", "displayName": "Azure"}
NCE_PRODUCT = {"id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE"}
# suspensionReasons: the partner's own suspension as the service records it, and one of
# Microsoft's (the controller never reactivates those).
_SUSPENSION_REASONS = {"partner": ["CustomerCancellation"], "microsoft": ["Fraud"]}


@dataclass(frozen=True)
class Knobs:
    latency: float = 0.0
    throttle: float = 0.0  # share of requests answered 429 with Retry-After
    server_errors: float = 0.0  # share answered 503
    lost_responses: float = 0.0  # share of changes made, then answered 504
    retry_after: int = 1
    page_size: int = 100
    subscription_page_size: int = 0  # subscriptions per page (0: one page, as usual)
    slow_changes: int = 0  # quantity changes answered 202, shown after this many reads
    bom: bool = True  # a UTF-8 byte-order mark before every JSON body, as the live service
    token: str | None = None  # when set, the only bearer token accepted
    seed: int | None = None


def _moment(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def etag_of(subscription: Subscription) -> str | None:
    """A legacy subscription's etag; new-commerce items carry none (as the service)."""
    if subscription.commerce == "nce":
        return None
    return hashlib.sha256(subscription.model_dump_json().encode()).hexdigest()[:16]


def _commerce_fields(subscription: Subscription) -> dict[str, Any]:
    if subscription.commerce == "azure_plan":
        return {"productType": AZURE_PLAN_PRODUCT}
    if subscription.commerce != "nce":
        return {}
    fields: dict[str, Any] = {
        "productType": NCE_PRODUCT,
        "commitmentEndDate": _moment(subscription.term_end),
        "refundOptions": (
            [{"type": "Full", "expiresAt": _moment(subscription.cancel_until)}]
            if subscription.cancel_until
            else []
        ),
    }
    if subscription.auto_renew is not None:  # unknown in the world: not shown
        fields["autoRenewEnabled"] = subscription.auto_renew
    if subscription.refundable_quantity is not None:
        fields["refundableQuantity"] = {
            "totalQuantity": subscription.refundable_quantity,
            "details": [],
        }
    return fields


def subscription_resource(customer_id: str, subscription: Subscription) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": subscription.id,
        "offerId": subscription.offer,
        "offerName": subscription.name,
        "friendlyName": subscription.name,
        "quantity": subscription.quantity,
        "status": subscription.status,
        **_commerce_fields(subscription),
        "links": {
            "self": {
                "uri": f"/customers/{customer_id}/subscriptions/{subscription.id}",
                "method": "GET",
                "headers": [],
            }
        },
        "attributes": {"objectType": "Subscription"},
    }
    if subscription.suspended_by and subscription.status == "suspended":
        resource["suspensionReasons"] = _SUSPENSION_REASONS[subscription.suspended_by]
    if subscription.parent_id:
        resource["parentSubscriptionId"] = subscription.parent_id
    etag = etag_of(subscription)
    if etag:
        resource["attributes"]["etag"] = etag
    return resource


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


def reserved_instance(customer_id: str, number: int) -> dict[str, Any]:
    """An open reserved-instance entitlement, in the recorded shape."""
    resource_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer_id}/reservation/{number}"))
    return {
        "includedEntitlements": [],
        "referenceOrder": {"id": resource_id.replace("-", "")[:24], "lineItemId": "0"},
        "productId": "DZH318Z0BQ4C",
        "quantity": 1,
        "quantityDetails": [{"quantity": 1, "status": "Fulfilled"}],
        "entitledArtifacts": [
            {"resourceId": resource_id, "artifactType": "virtual_machine_reserved_instance"}
        ],
        "skuId": "00BD",
        "entitlementType": "virtual_machine_reserved_instance",
    }


def _has_azure(customer: Customer) -> bool:
    """Whether a customer's reservations show as reserved-instance entitlements (it has Azure:
    an Azure plan or a legacy Azure offer, where the client looks for them) or, without Azure, as
    Azure commitments (``productType`` Azure with a ``subType``) in its subscription list. Either
    way, a client counts each open reservation once."""
    return any(
        s.commerce == "azure_plan" or (s.offer or "").upper().startswith("MS-AZR-")
        for s in customer.subscriptions
    )


def _reservations(customer: Customer) -> range:
    return range(customer.azure_reservations_open)


def azure_reservation(customer_id: str, number: int) -> dict[str, Any]:
    """An open Azure reservation as a subscription: productType Azure with a subType."""
    reservation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer_id}/reservation/{number}"))
    return {
        "id": reservation_id,
        "offerId": "DZH318Z0BQ4C:00BD:DZH318Z0BQ4C",
        "offerName": "Reserved VM Instance",
        "friendlyName": f"Reservation {number + 1}",
        "productType": {
            "id": "Azure",
            "displayName": "Azure",
            "subType": {"id": "Reservation", "displayName": "Reservation"},
        },
        "quantity": 1,
        "status": "active",
        "billingType": "benefit",
        "attributes": {"objectType": "Subscription"},
    }


def azure_entitlement(plan_id: str, number: int) -> dict[str, Any]:
    entitlement_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{plan_id}/azure/{number}"))
    return {
        "id": entitlement_id,
        "friendlyName": f"Azure subscription {number + 1}",
        "status": "active",
        "subscriptionId": plan_id,
        "attributes": {"objectType": "AzureEntitlement"},
    }


def _collection(items: list[dict[str, Any]], links: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"totalCount": len(items), "items": items}
    if links is not None:
        body["links"] = links
    body["attributes"] = {"objectType": "Collection"}
    return body


def _error(status: int, code: str | int, description: str) -> Reply:
    body: dict[str, Any] = {"code": code, "description": description}
    return status, {**body, "data": [], "source": "PartnerFD"}, {}


def _refused(exc: PermanentProviderError) -> Reply:
    code = exc.code or "400"
    description = _DESCRIPTION_OF_CODE.get(code, str(exc))
    return _error(
        _STATUS_OF_CODE.get(code, 400), int(code) if code.isdigit() else code, description
    )


def _throttled(retry_after: int) -> Reply:
    """The throttling answer: ``{statusCode, message}``, not the usual error body."""
    message = f"Rate limit is exceeded. Try again in {retry_after} seconds."
    return 429, {"statusCode": 429, "message": message}, {"Retry-After": str(retry_after)}


class Emulator:
    """The service's behaviour, independent of HTTP plumbing (``handle`` is easy to test)."""

    def __init__(self, state_dir: Path, knobs: Knobs | None = None) -> None:
        # Its changes are appended to the world's change log, folded into world.json once
        # a second passes without one, so that the file a person opens is seldom behind.
        self.world = LocalProvider(state_dir, compact_when_quiet=COMPACT_WHEN_QUIET)
        self.knobs = knobs or Knobs()
        self._random = random.Random(self.knobs.seed)
        self._random_lock = threading.Lock()
        self._draws: dict[str, int] = {}  # fault, method and target -> draws made so far
        self._answered: dict[str, Reply] = {}  # MS-RequestId of a change -> its reply
        # Slow changes accepted with 202: (customer, subscription) -> [reads left, quantity].
        self._in_progress: dict[tuple[str, str], list[int]] = {}
        self._progress_lock = threading.Lock()

    def close(self) -> None:
        """Fold the world's change log into world.json (on shutdown)."""
        self.world.close()

    def clock(self) -> datetime:
        """The service's clock, sent as each answer's ``Date``: the world's own (``now``) when
        it keeps one, so that the client observes the world at its time, else the wall clock."""
        try:
            return self.world.world_clock()
        except StateError:
            return datetime.now(UTC)

    def _draw(self, fault: str, method: str, target: str) -> float:
        """A fault's draw for this request. With a seed it depends only on the request and how
        many times it was drawn before, not on the order concurrent requests arrive in, so a
        seeded run meets the same faults every time."""
        with self._random_lock:
            if self.knobs.seed is None:
                return self._random.random()
            key = f"{fault} {method} {target}"
            seen = self._draws[key] = self._draws.get(key, 0) + 1
            return random.Random(f"{self.knobs.seed} {key} {seen}").random()

    def handle(self, method: str, target: str, headers: dict[str, str], body: Any) -> Reply:
        """The answer, given ``latency`` seconds after the request at the earliest: the work
        of answering (writing the world included) is part of that time, as the service's own is
        part of its latency."""
        due = time.monotonic() + self.knobs.latency
        try:
            reply = self._answer(method, target, headers, body)
        except StateError as exc:  # its world was damaged or replaced meanwhile: say so, in one
            reply = _error(500, 500, str(exc))  # line, rather than drop the connection
        if (left := due - time.monotonic()) > 0:
            time.sleep(left)
        return reply

    def _answer(self, method: str, target: str, headers: dict[str, str], body: Any) -> Reply:
        authorization = headers.get("authorization", "")
        expected = f"Bearer {self.knobs.token}" if self.knobs.token else None
        if not authorization.startswith("Bearer ") or (expected and authorization != expected):
            return _error(401, 401, "Unauthorized")
        if self._draw("throttle", method, target) < self.knobs.throttle:
            return _throttled(self.knobs.retry_after)
        if self._draw("error", method, target) < self.knobs.server_errors:
            return _error(503, 503, "Service unavailable")
        request_id = headers.get("ms-requestid", "")
        if method == "PATCH" and request_id in self._answered:
            return self._answered[request_id]  # a retry of a change already made
        reply = self._route(method, target, headers, body)
        if method == "PATCH" and request_id and reply[0] < 300:
            self._answered[request_id] = reply
            if self._draw("lost", method, target) < self.knobs.lost_responses:
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
            return self._list_subscriptions(match[1].lower(), query, headers)
        if (match := _ENTITLEMENTS.match(path)) and method == "GET":
            return self._list_entitlements(match[1].lower())
        if (match := _AZURE_ENTITLEMENTS.match(path)) and method == "GET":
            return self._list_azure_entitlements(match[1].lower(), match[2].lower())
        if match := _SUBSCRIPTION.match(path):
            customer_id, subscription_id = match[1].lower(), match[2].lower()
            if method == "GET":
                return self._get_subscription(customer_id, subscription_id)
            if method == "PATCH":
                return self._patch_subscription(customer_id, subscription_id, headers, body)
        if match := _CUSTOMER.match(path):
            if method == "GET":
                return self._get_customer(match[1].lower())
            if method == "PATCH":
                return self._patch_customer(match[1].lower(), body)
        return _error(404, 404, f"no route for {method} {path}")

    def _list_customers(self, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        customers = self.world.observe().customers
        asked = int(query["size"][0]) if query.get("size") else self.knobs.page_size
        size = max(1, min(asked, self.knobs.page_size))
        page, links = _page(
            customers,
            size,
            headers.get("ms-continuationtoken"),
            f"/customers?size={size}&seekOperation=Next",
        )
        links["self"] = {"uri": f"/customers?size={size}", "method": "GET", "headers": []}
        return 200, _collection([customer_resource(c) for c in page], links), {}

    def _related(self, customer_id: str) -> Customer:
        return rules.related_customer(self._settle(customer_id), customer_id)

    def _get_customer(self, customer_id: str) -> Reply:
        try:
            customer = rules.find_customer(self.world.observe(), customer_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        if customer.relationship == "none":
            return _refused(PermanentProviderError("no relationship", code="20002"))
        return 200, customer_resource(customer), {}

    def _list_subscriptions(
        self, customer_id: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Reply:
        try:
            customer = self._related(customer_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        resources = [subscription_resource(customer.id, s) for s in customer.subscriptions]
        if not _has_azure(customer):  # its reservations show as Azure commitments
            resources += [azure_reservation(customer.id, n) for n in _reservations(customer)]
        size = self.knobs.subscription_page_size
        if not size:
            return 200, _collection(resources), {}
        items, links = _page(
            resources,
            size,
            headers.get("ms-continuationtoken"),
            f"/customers/{customer.id}/subscriptions?seekOperation=Next",
        )
        return 200, _collection(list(items), links), {}

    def _list_entitlements(self, customer_id: str) -> Reply:
        try:
            customer = self._related(customer_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        shown = _reservations(customer) if _has_azure(customer) else range(0)
        return 200, _collection([reserved_instance(customer.id, n) for n in shown]), {}

    def _list_azure_entitlements(self, customer_id: str, subscription_id: str) -> Reply:
        try:
            plan = rules.find_subscription(self._related(customer_id), subscription_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        items = [azure_entitlement(plan.id, n) for n in range(plan.azure_subscriptions_active)]
        return 200, _collection(items), {}

    def _get_subscription(self, customer_id: str, subscription_id: str) -> Reply:
        try:
            customer = self._related(customer_id)
            subscription = rules.find_subscription(customer, subscription_id)
        except PermanentProviderError as exc:
            return _refused(exc)
        return 200, subscription_resource(customer_id, subscription), {}

    def _settle(self, customer_id: str) -> CurrentState:
        """The world after one more read of a customer: a slow change completes after
        ``slow_changes`` reads (made through the rules, as any change)."""
        with self._progress_lock:
            done: list[tuple[str, int]] = []
            for key, progress in list(self._in_progress.items()):
                if key[0] == customer_id:
                    progress[0] -= 1
                    if progress[0] <= 0:
                        done.append((key[1], progress[1]))
                        del self._in_progress[key]
        # Outside the progress lock: a change takes the world's lock, under which a PATCH
        # takes the progress lock.
        for subscription_id, quantity in done:
            self.world.change(_quantity_change(customer_id, subscription_id, quantity))
        return self.world.observe()

    def _patch_subscription(
        self, customer_id: str, subscription_id: str, headers: dict[str, str], body: Any
    ) -> Reply:
        replies: list[Reply] = []
        slow = self.knobs.slow_changes

        def change(world: CurrentState) -> CurrentState:
            customer = rules.related_customer(world, customer_id)
            current = rules.find_subscription(customer, subscription_id)
            if headers.get("if-match") != etag_of(current):  # none expected when it has none
                replies.append(_refused(PermanentProviderError("stale", code="2055")))
                return world
            updated = _apply_subscription_change(world, customer_id, current, body or {})
            after = rules.find_subscription(
                rules.related_customer(updated, customer_id), current.id
            )
            if slow and after.quantity != current.quantity:  # checked now, shown later
                with self._progress_lock:
                    self._in_progress[(customer_id, current.id)] = [slow, after.quantity]
                location = f"/customers/{customer_id}/subscriptions/{current.id}"
                replies.append((202, None, {"Location": location}))
                return world
            replies.append((200, subscription_resource(customer_id, after), {}))
            return updated

        try:
            self.world.change(change)
        except PermanentProviderError as exc:
            return _refused(exc)
        return replies[0]

    def _patch_customer(self, customer_id: str, body: Any) -> Reply:
        if str((body or {}).get("relationshipToPartner", "")).lower() != "none":
            return _error(400, 400, "only relationshipToPartner: none is supported")
        try:
            customer = rules.find_customer(self.world.observe(), customer_id)
            if customer.relationship != "reseller":
                return _refused(PermanentProviderError("gone", code="3000"))
            self.world.change(lambda w: rules.remove_relationship(w, customer_id))
        except PermanentProviderError as exc:
            return _refused(exc)
        removed = {
            "id": None,
            "relationshipToPartner": "none",
            "attributes": {"objectType": "Customer"},
        }
        return 200, removed, {}


def _quantity_change(
    customer_id: str, subscription_id: str, quantity: int
) -> Callable[[CurrentState], CurrentState]:
    return lambda world: rules.update_quantity(world, customer_id, subscription_id, quantity)


def _page(
    items: Sequence[Item], size: int, token: str | None, next_uri: str
) -> tuple[Sequence[Item], dict[str, Any]]:
    """One page of ``items`` from the continuation token, and its links (``next`` when more)."""
    start = int(base64.b64decode(token).decode()) if token else 0
    links: dict[str, Any] = {}
    if start + size < len(items):
        next_token = base64.b64encode(str(start + size).encode()).decode()
        links["next"] = {
            "uri": next_uri,
            "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": next_token}],
        }
    return items[start : start + size], links


def _apply_subscription_change(
    world: CurrentState, customer_id: str, current: Subscription, body: dict[str, Any]
) -> CurrentState:
    """The PATCHed resource's differences from the current one, each made through the rules."""
    status = str(body.get("status", current.status)).lower()
    if status != current.status:
        set_status = {
            "suspended": rules.suspend_subscription,
            "active": rules.reactivate_subscription,
            "deleted": rules.cancel_subscription,
        }.get(status)
        if set_status is None:
            raise PermanentProviderError(f"status {status!r} cannot be set", code="800096")
        world = set_status(world, customer_id, current.id)
    renew = body.get("autoRenewEnabled")
    if renew is None and current.commerce == "nce":
        # "If these attributes are not provided, autoRenewEnabled will inadvertently get set to
        # false" (learn.microsoft.com/partner-center/developer/update-a-subscription-by-id):
        # a client must send the full resource as read.
        after = rules.find_subscription(rules.related_customer(world, customer_id), current.id)
        if after.auto_renew and after.parent_id is None and not rules.has_ended(after):
            world = rules.set_auto_renew(world, customer_id, current.id, False)
    elif current.commerce == "nce" and bool(renew) != bool(current.auto_renew):
        world = rules.set_auto_renew(world, customer_id, current.id, bool(renew))
    quantity = body.get("quantity", current.quantity)
    if quantity != current.quantity:
        world = rules.update_quantity(world, customer_id, current.id, int(quantity))
    return world


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.format_datetime(self.emulator.clock(), usegmt=True)

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm holds the body
        # until the client's delayed ACK, about 40 ms per response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
        data = b"" if payload is None else json.dumps(payload).encode()
        if data and self.emulator.knobs.bom:
            data = BOM + data
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


class EmulatorServer(ThreadingHTTPServer):
    """The HTTP server of one emulator; closing it folds the world's log into world.json."""

    daemon_threads = True

    def __init__(self, port: int, emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(("127.0.0.1", port), type("Handler", (_Handler,), {"emulator": emulator}))

    def server_close(self) -> None:
        super().server_close()
        self.emulator.close()


def make_server(state_dir: Path, *, port: int = 0, knobs: Knobs | None = None) -> EmulatorServer:
    """An emulator bound to 127.0.0.1 (port 0: any free port); call serve_forever() to run it."""
    return EmulatorServer(port, Emulator(state_dir, knobs))
