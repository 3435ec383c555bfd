"""The Partner Center client against recorded responses and scripted HTTP (httpx.MockTransport):
paging, headers, error mapping at one boundary, etags, tokens."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from helpers import PARTNER

from controller.errors import PermanentProviderError, ProviderError, TemporaryProviderError
from controller.providers.auth import SCOPE, token_source
from controller.providers.base import logical_request
from controller.providers.partnercenter import PartnerCenterProvider, Settings
from controller.retry import RetryPolicy

RECORDINGS = Path(__file__).resolve().parent / "recordings"  # from ../shared/reference/
TODAY = RECORDINGS / "today"  # from ../shared/reference/partner-center-today/
TOKEN = "sekrit-token-0e1ef465"
CUSTOMER = "46a62ece-10ad-42e5-b3f1-b2ed53e6fc08"


def recording(name: str) -> dict:
    return json.loads((RECORDINGS / name).read_text())


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, token: Callable[[], str] = lambda: TOKEN) -> PartnerCenterProvider:
    settings = Settings(base_url="https://pc.test", tenant_id=PARTNER)
    quick = RetryPolicy(attempts=3, base_delay=0, max_delay=0)
    return PartnerCenterProvider(
        settings, token, transport=httpx.MockTransport(handler), retry=quick
    )


def test_observe_reads_the_recorded_customers_and_subscriptions() -> None:
    customers = recording("GetCustomers.json")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json=customers)
        if request.url.path.endswith("/subscriptions"):
            return httpx.Response(200, json=recording("GetCustomerSubscription.json"))
        if request.url.path.endswith("/entitlements"):  # a legacy Azure subscription: read them
            return httpx.Response(200, content=(TODAY / "ps_GetEntitlement.json").read_bytes())
        return httpx.Response(404)

    current = client(handler).observe()
    assert current.partner.id == PARTNER
    assert [c.id for c in current.customers] == [
        "b44bb1fb-c595-45b0-9e09-d657365580bf",
        "45c44870-ef77-4fdd-b6fe-3dacb075cff2",
    ]
    first = current.customers[0]
    assert first.relationship == "reseller" and first.name == "companyName"
    assert [(s.id, s.status, s.offer) for s in first.subscriptions] == [
        (
            "4f26a5ca-c468-4715-8fc5-a14f28bcc29b",
            "active",
            "MS-AZR-0145P",
        ),  # upper case, read lower
        (
            "b34024c7-9258-4841-bd0b-1e2a5d5c9d8d",
            "suspended",
            "BD938F12-058F-4927-BBA3-AE36B1D2501C",
        ),
    ]
    assert seen[0] == "/v1/customers" and first.azure_reservations_open == 1
    assert "/v1/customers/45c44870-ef77-4fdd-b6fe-3dacb075cff2/subscriptions" in seen


def test_suspension_patches_the_resource_as_read_with_its_etag() -> None:
    subscriptions = recording("GetCustomerSubscription.json")
    patches: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            patches.append(request)
            return httpx.Response(200, json=recording("SuspendSubscription.json"))  # PascalCase
        if request.url.path == "/v1/customers":
            return httpx.Response(
                200, json={"items": [{"id": CUSTOMER.upper(), "relationshipToPartner": "reseller"}]}
            )
        return httpx.Response(200, json=subscriptions)

    provider = client(handler)
    provider.observe()
    provider.suspend_subscription(CUSTOMER, "4f26a5ca-c468-4715-8fc5-a14f28bcc29b")
    [patch] = patches
    body = json.loads(patch.content)
    assert body["status"] == "suspended"
    assert (
        body["offerId"] == "MS-AZR-0145P" and body["billingCycle"] == "monthly"
    )  # the full resource
    assert patch.headers["If-Match"] == "removed"  # the etag as recorded
    assert (
        patch.url.path
        == f"/v1/customers/{CUSTOMER}/subscriptions/4f26a5ca-c468-4715-8fc5-a14f28bcc29b"
    )


def test_a_stale_etag_is_read_again_once() -> None:
    calls: list[str] = []
    resource = {
        "id": "11111111-1111-4111-8111-111111111111",
        "status": "active",
        "quantity": 3,
        "attributes": {"etag": "v1"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.headers.get('If-Match', '')}".strip())
        if request.method == "GET":
            return httpx.Response(200, json={**resource, "attributes": {"etag": "v2"}})
        if request.headers["If-Match"] != "v2":
            return httpx.Response(412, json={"code": 412, "description": "etag mismatch"})
        return httpx.Response(200, json=json.loads(request.content))

    client(handler).update_quantity(CUSTOMER, resource["id"], 5)  # never read: GET first
    assert calls == ["GET", "PATCH v2"]


def test_removal_of_the_relationship_and_a_second_removal() -> None:
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # read again after a 3000: gone
            return httpx.Response(200, json={"id": CUSTOMER, "relationshipToPartner": "none"})
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(200, json=recording("RemoveResellerRelationship.json"))
        return httpx.Response(
            400, json={"code": 3000, "description": "Relationship does not exist"}
        )

    provider = client(handler)
    provider.remove_relationship(CUSTOMER)
    provider.remove_relationship(CUSTOMER)  # 3000, and the customer shows none: removed
    assert bodies[0] == {"relationshipToPartner": "none", "attributes": {"objectType": "Customer"}}


def test_request_returns_the_unescaped_invitation_link() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/customers/relationshiprequests"
        return httpx.Response(200, json=recording("GetResellerRelationshipLink.json"))

    url = client(handler).request_relationship(CUSTOMER)
    assert url == (
        "https://portal.office.com/partner/partnersignup.aspx?type=ResellerRelationship"
        "&id=3b33e682-00c3-41ee-9dd2-a548adf56438&csp=1&msppid=0"
    )


def test_paging_follows_links_next_with_its_headers() -> None:
    pages = {
        None: {
            "items": [
                {"id": "11111111-1111-4111-8111-000000000001", "relationshipToPartner": "none"}
            ],
            "links": {
                "next": {
                    "uri": "/customers?size=500&seekOperation=Next",
                    "method": "GET",
                    "headers": [{"key": "MS-ContinuationToken", "value": "page-2"}],
                }
            },
        },
        "page-2": {
            "items": [
                {"id": "11111111-1111-4111-8111-000000000002", "relationshipToPartner": "none"}
            ],
            "links": {
                "next": {
                    "uri": "/v1/customers?size=500&seekOperation=Next",
                    "headers": [{"key": "MS-ContinuationToken", "value": "page-3"}],
                }
            },
        },
        "page-3": {"items": [], "links": {}},
    }
    asked: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("MS-ContinuationToken")
        asked.append(
            (str(request.url.copy_with(scheme="https", host="pc.test").raw_path.decode()), token)
        )
        return httpx.Response(200, json=pages[token])

    current = client(handler).observe()
    assert [c.id[-1] for c in current.customers] == ["1", "2"]
    assert all(c.relationship == "none" for c in current.customers)  # no subscription calls made
    assert asked == [
        ("/v1/customers?size=500", None),
        ("/v1/customers?size=500&seekOperation=Next", "page-2"),
        ("/v1/customers?size=500&seekOperation=Next", "page-3"),
    ]


def test_a_customer_that_ended_the_relationship_is_observed_as_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/customers":
            return httpx.Response(
                200, json={"items": [{"id": CUSTOMER, "relationshipToPartner": "reseller"}]}
            )
        return httpx.Response(
            403, json={"code": 20002, "description": "No relationship between caller and account"}
        )

    [customer] = client(handler).observe().customers
    assert customer.relationship == "none" and customer.subscriptions == ()


def test_headers_and_the_request_id_kept_only_while_no_answer_came_back() -> None:
    seen: list[httpx.Headers] = []
    replies = iter([httpx.Response(503), httpx.Response(504)])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        if len(seen) == 3:
            raise httpx.ReadTimeout("lost")
        return next(replies, httpx.Response(200, json={"url": "https://x"}))

    provider = client(handler)
    key = logical_request.set("run1/a1")
    try:
        for _attempt in range(4):  # the executor's retries of one action
            with contextlib.suppress(TemporaryProviderError):
                provider.request_relationship(CUSTOMER)
        provider.request_relationship(CUSTOMER)  # a new request of the same action
    finally:
        logical_request.reset(key)
    provider.request_relationship(CUSTOMER)  # no logical request: a fresh id
    ids = [h["MS-RequestId"] for h in seen]
    assert ids[0] == ids[1] == ids[2] == ids[3]  # 503, 504, timeout: no answer, same request
    assert len({ids[3], ids[4], ids[5]}) == 3  # answered (200): the next one is new
    assert all(
        h["Authorization"] == f"Bearer {TOKEN}"
        and h["Accept"] == "application/json"
        and h["MS-Contract-Version"] == "v1"
        and h["MS-PartnerCenter-Application"].startswith("partner-reconciler/")
        for h in seen
    )
    assert len({h["MS-CorrelationId"] for h in seen}) == len(seen)  # new per call


@pytest.mark.parametrize(
    ("response", "error", "check"),
    [
        (
            httpx.Response(
                429, headers={"Retry-After": "7"}, json={"code": 429, "description": "slow down"}
            ),
            TemporaryProviderError,
            lambda e: e.retry_after == 7.0,
        ),
        (
            httpx.Response(503, text="unavailable"),
            TemporaryProviderError,
            lambda e: e.retry_after is None,
        ),
        (
            httpx.Response(400, json={"code": 800002, "description": "Subscription is not active"}),
            PermanentProviderError,
            lambda e: e.code == "800002" and "Subscription is not active" in str(e),
        ),
        (
            httpx.Response(404, text="<html>not json</html>"),
            PermanentProviderError,
            lambda e: e.code == "404",
        ),
        (
            httpx.Response(
                409,
                json={"code": 800082, "description": "Subscription is not ready to be updated."},
            ),
            TemporaryProviderError,
            lambda e: "800082" in str(e),
        ),
        (
            httpx.Response(409, headers={"Retry-After": "120"}, text=""),
            TemporaryProviderError,
            lambda e: e.retry_after == 120.0,
        ),
        (
            httpx.Response(409, json={"code": 27009, "description": "parent isn't Active"}),
            PermanentProviderError,
            lambda e: e.code == "27009",
        ),
    ],
    ids=[
        "429 with Retry-After",
        "503",
        "400 with a service code",
        "404 without JSON",
        "409 not ready to be updated (800082): try again",
        "409 while a renewal is processed: try again",
        "409 27009 (add-on of a base not active): waiting does not end it",
    ],
)
def test_http_errors_are_mapped_at_one_boundary(
    response: httpx.Response, error: type, check
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        client(lambda request: response).request_relationship(CUSTOMER)
    assert check(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_timeouts_and_connection_failures_are_temporary(failure: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(TemporaryProviderError, match="gave up after 3 attempts"):
        client(handler).observe()


def test_observation_retries_temporary_errors() -> None:
    replies = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(503),
            httpx.Response(200, json={"items": []}),
        ]
    )
    assert client(lambda request: next(replies)).observe().customers == ()


def test_an_expired_token_is_replaced_once() -> None:
    tokens = iter(["old", "new"])
    auth: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auth.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer old":
            return httpx.Response(401, json={"code": 401, "description": "expired"})
        return httpx.Response(200, json={"url": "https://x"})

    client(handler, token=lambda: next(tokens)).request_relationship(CUSTOMER)
    assert auth == ["Bearer old", "Bearer new"]


class FakeEntra:
    """Answers MSAL's discovery and token requests, recording what it was sent."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.token_requests: list[dict] = []

    class Reply:
        def __init__(self, status: int, body: dict) -> None:
            self.status_code, self.text, self.headers = status, json.dumps(body), {}

        def raise_for_status(self) -> None:
            if self.status_code >= 400:
                raise RuntimeError(self.status_code)

    def get(self, url: str, **_kw: object) -> FakeEntra.Reply:
        if "discovery/instance" in url:
            return self.Reply(
                200,
                {
                    "tenant_discovery_endpoint": f"https://login.microsoftonline.com/{PARTNER}/v2.0/.well-known/openid-configuration",
                    "metadata": [],
                },
            )
        base = f"https://login.microsoftonline.com/{PARTNER}"
        return self.Reply(
            200,
            {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{base}/v2.0",
            },
        )

    def post(self, url: str, data: dict | None = None, **_kw: object) -> FakeEntra.Reply:
        self.token_requests.append(dict(data or {}))
        if self.fail:
            return self.Reply(
                400,
                {"error": "invalid_grant", "error_description": "AADSTS70000: bad grant\nTrace"},
            )
        return self.Reply(
            200,
            {
                "access_token": "msal-token",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": SCOPE,
            },
        )

    def close(self) -> None:
        pass


ENV = {
    "PARTNER_CENTER_CLIENT_ID": "app-id",
    "PARTNER_CENTER_CLIENT_SECRET": "client-secret-value",
    "PARTNER_CENTER_REFRESH_TOKEN": "refresh-token-value",
    "PARTNER_CENTER_TENANT_ID": PARTNER,
}


def test_a_refresh_token_is_exchanged_through_msal_for_the_user_impersonation_scope() -> None:
    entra = FakeEntra()
    assert token_source(ENV, http_client=entra)() == "msal-token"
    [sent] = entra.token_requests
    assert sent["grant_type"] == "refresh_token" and sent["refresh_token"] == "refresh-token-value"
    assert SCOPE in sent["scope"]


def test_a_refused_exchange_says_why_without_any_secret() -> None:
    with pytest.raises(PermanentProviderError) as caught:
        token_source(ENV, http_client=FakeEntra(fail=True))()
    message = str(caught.value)
    assert "invalid_grant" in message and "AADSTS70000" in message
    assert all(secret not in message for secret in ("client-secret-value", "refresh-token-value"))


def test_missing_credentials_are_named_not_shown() -> None:
    with pytest.raises(ProviderError.__mro__[1]) as caught:  # ReconcileError
        token_source({"PARTNER_CENTER_CLIENT_ID": "app-id"})
    assert "PARTNER_CENTER_CLIENT_SECRET" in str(caught.value) and "app-id" not in str(caught.value)
    assert token_source({"PARTNER_CENTER_ACCESS_TOKEN": "ready"})() == "ready"


def test_every_recording_is_read() -> None:
    from controller.providers.partnercenter import (
        camel_keys,
        invitation_link,
        parse_customer,
        parse_subscription,
    )

    suspended = parse_subscription(recording("SuspendSubscription.json"))  # PascalCase
    assert (suspended.id, suspended.status, suspended.quantity, suspended.name) == (
        "83ef9d05-4169-4ef9-9657-0e86b1eab1de",
        "suspended",
        2,
        "nickname",
    )
    removed = camel_keys(recording("RemoveResellerRelationship.json"))
    assert (
        removed["relationshipToPartner"] == "none"
        and removed["attributes"]["objectType"] == "Customer"
    )
    listed = [
        parse_customer(c, ()) for c in recording("GetCustomers.json")["items"]
    ]  # "<guid>" tenantId
    assert [c.domain for c in listed] == ["domain", "domain"]
    statuses = [
        parse_subscription(s).status for s in recording("GetCustomerSubscription.json")["items"]
    ]
    assert statuses == ["active", "suspended"]
    assert "&amp;" not in invitation_link(recording("GetResellerRelationshipLink.json"))
    assert (
        parse_subscription({"id": CUSTOMER, "status": "none"}).status == "disabled"
    )  # never changed


def test_an_unexpected_response_is_a_provider_error_not_a_crash() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json={"items": [{"relationshipToPartner": "reseller"}]})
        return httpx.Response(200, json={"items": []})

    with pytest.raises(PermanentProviderError, match="unexpected response from Partner Center"):
        client(handler).observe()


class UnreachableEntra(FakeEntra):
    """Microsoft Entra ID out of reach: what requests raises (an OSError) on a network failure."""

    def get(self, url: str, **_kw: object) -> FakeEntra.Reply:
        raise ConnectionError("Max retries exceeded with url: /common/discovery/instance")


def test_msal_failures_are_one_line_provider_errors_not_tracebacks() -> None:
    source = token_source(ENV, http_client=UnreachableEntra())  # nothing is contacted yet
    with pytest.raises(TemporaryProviderError, match="could not reach Microsoft Entra ID"):
        source()


REMOTE_PLAIN_HTTP = ["http://pc.example.com", "http://10.0.0.5:8400", "http://127.0.0.1.evil.test"]


@pytest.mark.parametrize("url", REMOTE_PLAIN_HTTP)
def test_a_plain_http_api_root_off_this_machine_gets_no_request_at_all(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: PARTNER_CENTER_BASE_URL pointed at a plain-http host received the bearer
    token with every request. Now it is refused at start-up, before any request is made."""
    sent: list[httpx.Request] = []

    def record(_transport: object, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"items": []})

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", record)
    env = {"PARTNER_CENTER_BASE_URL": url, "PARTNER_CENTER_TENANT_ID": PARTNER}
    env["PARTNER_CENTER_ACCESS_TOKEN"] = TOKEN
    with pytest.raises(ProviderError, match="must be https") as caught:
        PartnerCenterProvider.from_env(env).observe()
    assert sent == [] and TOKEN not in str(caught.value)
    # https to the same host is fine, and so is plain http to this machine (the emulator).
    for good in (url.replace("http:", "https:"), "http://127.0.0.1:8400", "http://[::1]:8400"):
        PartnerCenterProvider.from_env({**env, "PARTNER_CENTER_BASE_URL": good}).observe()
    assert {r.url.scheme for r in sent} == {"https", "http"}
    assert all(r.url.scheme == "https" or r.url.host in ("127.0.0.1", "::1") for r in sent)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:hunter2@pc.example.com", "must not hold credentials"),
        ("https://pc.example.com/?token=1", "must not have a query or a fragment"),
        ("https://pc.example.com/#x", "must not have a query or a fragment"),
        ("ftp://pc.example.com", "must be an https:// URL with a host"),
        ("https://", "must be an https:// URL with a host"),
        ("pc.example.com", "must be an https:// URL with a host"),
    ],
)
def test_the_api_root_is_checked_at_start_up(url: str, why: str) -> None:
    env = {"PARTNER_CENTER_BASE_URL": url, "PARTNER_CENTER_TENANT_ID": PARTNER}
    with pytest.raises(ProviderError, match=why) as caught:
        Settings.from_env(env)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_tenant_id_is_refused_at_start_up() -> None:
    with pytest.raises(ProviderError, match="PARTNER_CENTER_TENANT_ID"):
        Settings.from_env({"PARTNER_CENTER_TENANT_ID": "contoso.onmicrosoft.com"})


def test_the_cli_refuses_plain_http_in_one_line(example: Path) -> None:
    from helpers import run

    env = {
        **os.environ,
        "PARTNER_CENTER_BASE_URL": "http://pc.example.com",
        "PARTNER_CENTER_TENANT_ID": PARTNER,
        "PARTNER_CENTER_ACCESS_TOKEN": TOKEN,
    }
    result = run("--dry-run", "--provider", "partner-center", cwd=example, env=env)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: PARTNER_CENTER_BASE_URL http://pc.example.com: must be https")
