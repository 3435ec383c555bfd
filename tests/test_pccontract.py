"""The Partner Center client against the service's documented contract: the reference bodies of
tests/recordings/today/ (recorded, documented and constructed; see its README) replayed byte for
byte through httpx.MockTransport, and scripted answers for what no body shows (202, Retry-After,
lost responses)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from helpers import PARTNER

from controller.errors import (
    PermanentProviderError,
    ProviderError,
    ReconcileError,
    TemporaryProviderError,
)
from controller.providers.base import logical_request
from controller.providers.partnercenter import PartnerCenterProvider, Polling, Settings
from controller.providers.pcapi import retry_after_seconds
from controller.ratelimit import RateLimiter
from controller.retry import RetryPolicy

TODAY = Path(__file__).resolve().parent / "recordings" / "today"
TOKEN = "sekrit-token-7d2c91"
CUSTOMER = "4d3cf487-70f4-4e1e-9ff1-b2bfce8d9f04"
NCE_ITEM = "a4c1340d-6911-4758-bba3-0c4c6007d161"

Handler = Callable[[httpx.Request], httpx.Response]


def body(name: str) -> bytes:
    """A reference body exactly as stored (recordings keep the service's byte-order mark)."""
    return (TODAY / name).read_bytes()


def parsed(name: str) -> dict:
    return json.loads(body(name).decode("utf-8-sig"))


def replay(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body(name), headers=headers)


class Counting(RateLimiter):
    def __init__(self) -> None:
        super().__init__(0)
        self.count = 0

    def acquire(self) -> float:
        self.count += 1
        return 0.0


def client(
    handler: Handler,
    *,
    sleeps: list[float] | None = None,
    limiter: RateLimiter | None = None,
    retry: RetryPolicy | None = None,
    polling: Polling | None = None,
) -> PartnerCenterProvider:
    waits = sleeps if sleeps is not None else []
    return PartnerCenterProvider(
        Settings(base_url="https://pc.test", tenant_id=PARTNER),
        lambda: TOKEN,
        transport=httpx.MockTransport(handler),
        retry=retry or RetryPolicy(attempts=3, base_delay=0, max_delay=0),
        polling=polling or Polling(attempts=5, interval=1.0, max_wait=60),
        sleep=waits.append,
        rate_limiter=limiter,
    )


def one_customer(items: httpx.Response, **extra: Handler) -> Handler:
    """A tenant of one reseller customer whose subscriptions are ``items``."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        for suffix, answer in extra.items():
            if path.endswith(suffix.replace("_", "/")):
                return answer(request)
        if path == "/v1/customers":
            return httpx.Response(
                200, json={"items": [{"id": CUSTOMER, "relationshipToPartner": "reseller"}]}
            )
        if path.endswith("/subscriptions"):
            return items
        if path.endswith("/entitlements"):
            return replay("ps_GetEntitlement.json")
        if path.lower().endswith("/azureentitlements"):
            return httpx.Response(200, json={"items": [{"status": "active"}] * 2})
        return httpx.Response(404, json={"code": 1000, "description": "Not found"})

    return handler


# --- observation: the reference bodies, parsed ------------------------------------------------


def test_the_real_items_are_read_with_their_commerce_kind_and_dates() -> None:
    current = client(one_customer(replay("derived_subscriptions_real_items.json"))).observe()
    [customer] = current.customers
    by_id = {s.id: s for s in customer.subscriptions}
    assert "a67afaf0-2f79-4c12-8fd1-6005ed24bb28" not in by_id  # the savings plan: a commitment
    assert customer.azure_reservations_open == 2  # the savings plan + the recorded reservation
    nce = by_id[NCE_ITEM]
    assert (nce.commerce, nce.status, nce.auto_renew, nce.refundable_quantity) == (
        "nce",
        "expired",
        False,
        10,
    )
    assert nce.term_end == datetime(2022, 1, 13, tzinfo=UTC)
    assert nce.cancel_until == datetime(2021, 1, 15, tzinfo=UTC)
    addon = by_id["968ba1cf-c146-4adf-a300-308dcf718eee"]
    assert addon.parent_id == "1c2b75c1-74a5-472a-a729-7f8cefc477f9"
    suspended = by_id["b34024c7-9258-4841-bd0b-1e2a5d5c9d8d"]  # CustomerCancellation
    assert (suspended.status, suspended.suspended_by) == ("suspended", "partner")
    legacy_azure = by_id["a356ac8c-e310-44f4-bf85-c7f29044af99"]
    assert legacy_azure.commerce == "legacy" and legacy_azure.term_end is None
    assert current.now is not None and current.unobserved in (None, {})


def test_the_observation_time_is_the_services_clock() -> None:
    date = "Sun, 01 Mar 2026 12:00:00 GMT"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": []}, headers={"Date": date})

    assert client(handler).observe().now == datetime(2026, 3, 1, 12, tzinfo=UTC)
    undated = client(lambda request: httpx.Response(200, json={"items": []})).observe().now
    assert undated is not None and abs(undated - datetime.now(UTC)) < timedelta(minutes=1)


def test_every_status_is_read_and_only_a_partner_suspension_may_be_undone() -> None:
    items = parsed("constructed_subscriptions_all_statuses.json")
    current = client(one_customer(httpx.Response(200, json=items))).observe()
    statuses = [(s.status, s.suspended_by) for s in current.customers[0].subscriptions]
    assert statuses == [
        ("disabled", None),  # "none": nothing the controller would change
        ("active", None),
        ("pending", None),
        ("suspended", "partner"),
        ("expired", None),
        ("disabled", None),
        ("deleted", None),
    ]
    items["items"][3]["suspensionReasons"] = ["Fraud"]  # any reason but the partner's own
    current = client(one_customer(httpx.Response(200, json=items))).observe()
    assert current.customers[0].subscriptions[3].suspended_by == "microsoft"


@pytest.mark.parametrize(
    ("reasons", "by"),
    [
        (["CustomerCancellation"], "partner"),
        (["customercancellation"], "partner"),
        (["CreditCheck"], "microsoft"),
        (["Fraud"], "microsoft"),
        (["CustomerCancellation", "CreditCheck"], "microsoft"),  # Microsoft's too: not undone
        (["SomethingNew"], "microsoft"),  # the list is not documented: the safe side
        ([], None),
    ],
)
def test_who_suspended_follows_the_reasons_the_safe_side_for_any_unknown(
    reasons: list[str], by: str | None
) -> None:
    from controller.providers.pcresources import parse_subscription

    item = {"id": NCE_ITEM, "status": "suspended", "suspensionReasons": reasons}
    assert parse_subscription(item).suspended_by == by


def test_the_azure_plan_counts_its_active_azure_subscriptions() -> None:
    plan = {
        "id": "11111111-2222-4333-8444-555555555555",
        "offerId": "DZH318Z0BPS6:0001:DZH318Z0BPS6",
        "productType": {"id": "Azure", "displayName": "Azure"},
        "status": "active",
        "quantity": 1,
        "attributes": {"etag": "e1"},
    }
    asked: list[str] = []

    def azure(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json={"items": [{"status": "active"}, {"status": "deleted"}]})

    handler = one_customer(httpx.Response(200, json={"items": [plan]}), azureEntitlements=azure)
    [customer] = client(handler).observe().customers
    [subscription] = customer.subscriptions
    assert (subscription.commerce, subscription.azure_subscriptions_active) == ("azure_plan", 1)
    assert asked == [f"/v1/customers/{CUSTOMER}/subscriptions/{plan['id']}/azureEntitlements"]
    assert customer.azure_reservations_open == 1  # the recorded reserved instance


def test_entitlements_are_read_only_for_customers_with_azure() -> None:
    paths: list[str] = []
    nce_only = one_customer(replay("doc_subscription_nce_expired.json"))

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/subscriptions"):
            return httpx.Response(
                200, json={"items": [parsed("doc_subscription_nce_expired.json")]}
            )
        return nce_only(request)

    client(handler).observe()
    assert not any("entitlements" in p.lower() for p in paths)  # the rate limit is precious


def test_the_customer_list_follows_the_continuation_token() -> None:
    sent: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("MS-ContinuationToken")
        sent.append((request.url.raw_path.decode(), token))
        if request.url.path.endswith("/subscriptions"):
            return httpx.Response(200, json={"items": []})
        return replay(
            "constructed_customers_page2.json" if token else "constructed_customers_page1.json"
        )

    current = client(handler).observe()
    expected = parsed("constructed_customers_page1.json")["links"]["next"]["headers"][0]["value"]
    assert len(current.customers) == 5 and current.customers[0].id.islower()
    customer_pages = [s for s in sent if "subscriptions" not in s[0]]
    assert customer_pages == [
        ("/v1/customers?size=500", None),
        ("/v1/customers?size=500&seekOperation=Next", expected),  # relative uri, without /v1
    ]


def test_subscription_lists_follow_links_next() -> None:
    first = parsed("constructed_subscriptions_with_next_link.json")
    second = {"items": [parsed("doc_subscription_nce_expired.json")], "links": {}}
    pages = iter([first, second])
    seen: list[str] = []

    def subscriptions(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json=next(pages))

    handler = one_customer(httpx.Response(500), subscriptions=subscriptions)
    [customer] = client(handler).observe().customers
    assert [s.commerce for s in customer.subscriptions] == ["legacy", "nce"]
    assert seen == [
        f"/v1/customers/{CUSTOMER}/subscriptions",
        f"/v1/customers/{CUSTOMER}/subscriptions?seekOperation=Next",
    ]


def test_advisor_and_syndication_customers_are_observed_as_such_and_never_read() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/v1/customers":
            return replay("constructed_customers_relationships.json")
        return httpx.Response(200, json={"items": []})

    customers = client(handler).observe().customers
    assert [c.relationship for c in customers] == [
        "reseller",
        "advisor",
        "syndication",
        "none",  # microsoft_support: not the partner's to manage
        "none",
    ]
    assert paths[1:] == [f"/v1/customers/{customers[0].id}/subscriptions"]  # the reseller only


def test_one_customers_failure_is_that_customers_not_the_observations() -> None:
    customers = {"items": [{"id": CUSTOMER, "relationshipToPartner": "reseller"}]}
    broken = "5e6f7081-92a3-4b4c-8d5e-6f708192a3b4"
    customers["items"].append({"id": broken, "relationshipToPartner": "reseller"})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json=customers)
        if broken in request.url.path:
            return httpx.Response(500, json={"code": 800003, "description": "Unexpected"})
        return replay("ps_GetCustomerSubscription.json")

    current = client(handler).observe()
    assert list(current.unobserved or {}) == [broken]
    assert "800003" in (current.unobserved or {})[broken] and TOKEN not in str(current.unobserved)
    assert len(current.customers_by_id[CUSTOMER].subscriptions) == 2

    def everyone_fails(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json=customers)
        return httpx.Response(500)

    with pytest.raises(TemporaryProviderError):  # nobody could be read: the run fails
        client(everyone_fails).observe()


def test_an_unobserved_customer_is_left_out_of_the_plan_never_planned_as_empty() -> None:
    from helpers import customer, desired, records, sub, want, world

    from controller.plan import plan
    from controller.targeting import leave_out_unobserved

    current = world(customer(99), customer(1, sub(101)), customer(2, sub(201)))
    failed = current.customers[2].id
    current = current.model_copy(update={"unobserved": {failed: "HTTP 500"}})
    made = plan(desired(want(99)), current, records(managed=(1, 2)))  # both would be removed
    kept = leave_out_unobserved(made, current.unobserved)
    assert failed in {a.customer_id for a in made.actions}
    assert {a.customer_id for a in kept.actions} == {current.customers[1].id}
    assert any("could not be observed" in w and "HTTP 500" in w for w in kept.warnings)


def test_customers_that_could_not_be_observed_are_never_imported() -> None:
    from helpers import customer, world

    from controller.reconcile import check_observed

    current = world(customer(1), customer(2))
    failed = current.customers[1].id
    current = current.model_copy(update={"unobserved": {failed: "HTTP 500 800003"}})
    check_observed(current, {current.customers[0].id})  # the one observed: fine
    with pytest.raises(ProviderError, match="nothing imported") as caught:
        check_observed(current, {c.id for c in current.customers})
    assert failed in str(caught.value) and "800003" in str(caught.value)


# --- changes -------------------------------------------------------------------------------------


def test_a_stale_etag_answered_2055_is_read_again_and_sent_as_a_new_request() -> None:
    patches: list[httpx.Request] = []
    resource = {"id": NCE_ITEM, "status": "active", "quantity": 3, "attributes": {"etag": "v1"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={**resource, "attributes": {"etag": "v2"}})
        patches.append(request)
        if request.headers["If-Match"] != "v2":
            return replay("constructed_error_2055_etag_no_longer_valid.json", 400)
        return httpx.Response(200, json=json.loads(request.content))

    provider = client(handler)
    provider._resources[(CUSTOMER, NCE_ITEM)] = resource  # as observed, now stale
    key = logical_request.set("run/a1")
    try:
        provider.update_quantity(CUSTOMER, NCE_ITEM, 5)
    finally:
        logical_request.reset(key)
    assert [p.headers["If-Match"] for p in patches] == ["v1", "v2"]
    assert patches[0].headers["MS-RequestId"] != patches[1].headers["MS-RequestId"]


def test_a_resource_without_an_etag_is_patched_without_if_match() -> None:
    patches: list[httpx.Request] = []

    def patch(request: httpx.Request) -> httpx.Response:
        patches.append(request)
        answer = parsed("doc_subscription_nce_active_patch_response.json")
        return httpx.Response(200, json={**answer, **json.loads(request.content)})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return patch(request)
        return replay("doc_subscription_nce_active_patch_response.json")  # no etag

    client(handler).set_auto_renew(CUSTOMER, NCE_ITEM, False)
    [sent] = patches
    assert "If-Match" not in sent.headers
    assert json.loads(sent.content)["autoRenewEnabled"] is False
    assert json.loads(sent.content)["productType"]["id"] == "OnlineServicesNCE"  # full resource


def test_cancel_is_a_patch_to_status_deleted() -> None:
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            sent.append(json.loads(request.content))
            return replay("doc_subscription_nce_cancelled_deleted.json")
        return replay("doc_subscription_nce_active_patch_response.json")

    client(handler).cancel_subscription(CUSTOMER, "6e7aa601-629e-461b-8933-0898c3cc3c7c")
    assert sent[0]["status"] == "deleted"


def slow_quantity(shown_after: int) -> tuple[Handler, list[str]]:
    """A quantity change answered 202 + Location with an empty body, shown after some reads."""
    reads: list[str] = []
    quantity = {"now": 1}

    def handler(request: httpx.Request) -> httpx.Response:
        resource = {**parsed("doc_subscription_nce_active_patch_response.json")}
        if request.method == "PATCH":
            quantity["wanted"] = json.loads(request.content)["quantity"]
            location = f"/customers/{CUSTOMER}/subscriptions/{NCE_ITEM}"
            return httpx.Response(202, headers={"Location": location})
        reads.append(request.url.path)
        if "wanted" in quantity and len(reads) > shown_after:
            quantity["now"] = quantity["wanted"]
        return httpx.Response(200, json={**resource, "quantity": quantity["now"]})

    return handler, reads


def test_a_change_answered_202_is_awaited_until_it_shows() -> None:
    handler, reads = slow_quantity(shown_after=3)
    sleeps: list[float] = []
    client(handler, sleeps=sleeps).update_quantity(CUSTOMER, NCE_ITEM, 4)
    assert len(reads) == 4 and sleeps == [1.0, 1.0, 1.0]  # the first read, then three polls


def test_a_change_that_never_shows_is_pending_not_applied() -> None:
    handler, _reads = slow_quantity(shown_after=100)
    provider = client(handler, polling=Polling(attempts=4, interval=2.0, max_wait=60))
    with pytest.raises(PermanentProviderError) as caught:
        provider.update_quantity(CUSTOMER, NCE_ITEM, 4)
    assert caught.value.code == "pending"
    assert "202" in str(caught.value) and "quantity 4" in str(caught.value)


def located_quantity(location: str, *, shows: bool) -> tuple[Handler, list[str]]:
    """A quantity change answered 202 with ``location``: read there, it shows the subscription
    (the new quantity from the second read on) when ``shows``, else an operation's status."""
    reads: list[str] = []
    resource = {**parsed("doc_subscription_nce_active_patch_response.json")}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(202, headers={"Location": location})
        reads.append(f"{request.url.host}{request.url.path}")
        if request.url.path.endswith("/operations/7"):
            if not shows:
                return httpx.Response(200, json={"id": "7", "status": "inProgress"})
            return httpx.Response(200, json={**resource, "quantity": 4 if len(reads) > 2 else 1})
        return httpx.Response(200, json={**resource, "quantity": 4})

    return handler, reads


def test_a_202_is_polled_at_its_location_kept_under_the_api_root() -> None:
    operation = f"/customers/{CUSTOMER}/subscriptions/{NCE_ITEM}/operations/7"
    handler, reads = located_quantity(f"https://elsewhere.example{operation}", shows=True)
    client(handler).update_quantity(CUSTOMER, NCE_ITEM, 4)
    at = f"pc.test/v1{operation}"
    assert reads == [f"pc.test/v1/customers/{CUSTOMER}/subscriptions/{NCE_ITEM}", at, at]


def test_a_location_that_is_not_the_subscription_falls_back_to_reading_it() -> None:
    operation = f"/customers/{CUSTOMER}/subscriptions/{NCE_ITEM}/operations/7"
    handler, reads = located_quantity(operation, shows=False)
    client(handler).update_quantity(CUSTOMER, NCE_ITEM, 4)
    subscription = f"pc.test/v1/customers/{CUSTOMER}/subscriptions/{NCE_ITEM}"
    assert reads == [subscription, f"pc.test/v1{operation}", subscription]


def removal(answer: httpx.Response, after: httpx.Response) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return answer if request.method == "PATCH" else after

    return handler


def test_removal_answered_3000_is_not_success_while_the_relationship_stands() -> None:
    still = httpx.Response(200, json={"id": CUSTOMER, "relationshipToPartner": "reseller"})
    answer = replay("constructed_error_3000_relationship_does_not_exist.json", 400)
    with pytest.raises(PermanentProviderError) as caught:
        client(removal(answer, still)).remove_relationship(CUSTOMER)
    assert caught.value.code == "3000" and "still shows relationship reseller" in str(caught.value)


@pytest.mark.parametrize(
    "after",
    [
        httpx.Response(200, json={"id": CUSTOMER, "relationshipToPartner": "none"}),
        replay("issue_error_20002_no_relationship.json", 403),
    ],
    ids=["shows none", "answers 20002"],
)
def test_removal_answered_3000_counts_once_the_relationship_is_gone(after: httpx.Response) -> None:
    answer = replay("constructed_error_3000_relationship_does_not_exist.json", 400)
    client(removal(answer, after)).remove_relationship(CUSTOMER)


def test_removal_of_a_customer_that_answers_20002_is_done() -> None:
    answer = replay("issue_error_20002_no_relationship.json", 403)
    client(removal(answer, httpx.Response(500))).remove_relationship(CUSTOMER)


def test_the_documented_removal_answers_are_read() -> None:
    for name in ("doc_remove_relationship_response.json", "ps_RemoveResellerRelationship.json"):
        client(removal(replay(name), httpx.Response(500))).remove_relationship(CUSTOMER)


def test_the_documented_invitation_link_is_returned_as_is() -> None:
    url = client(lambda request: replay("doc_relationship_request.json")).request_relationship(
        CUSTOMER
    )
    assert url == parsed("doc_relationship_request.json")["url"] and "&DAP=false" in url


def test_every_other_reference_body_is_replayed_through_the_client() -> None:
    """The bodies no other test replays: the documented customers page, a link whose
    continuation token holds , / and =, the documented removal request, the add-on, legacy
    Azure and savings-plan items one by one, the recorded invitation link and the recorded
    (PascalCase) answer to a suspension."""
    customers = client(lambda request: replay("doc_get_customers.json")).observe().customers
    assert [(c.id, c.relationship, c.domain) for c in customers] == [
        ("b44bb1fb-c595-45b0-9e09-d657365580bf", "reseller", "domain"),
        ("45c44870-ef77-4fdd-b6fe-3dacb075cff2", "reseller", "domain"),
    ]

    excerpt = parsed("doc_invoice_lineitems_next_link_excerpt.json")
    first_page = {"items": [parsed("doc_subscription_addon.json")], **excerpt}
    items = iter([first_page, {"items": [parsed("doc_subscription_azure_legacy.json")]}])
    asked: list[httpx.Request] = []

    def pages(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=next(items))

    entitlements: list[str] = []

    def reserved(request: httpx.Request) -> httpx.Response:
        entitlements.append(request.url.path)
        return replay("ps_GetEntitlement.json")

    handler = one_customer(
        httpx.Response(500), subscriptions=pages, lineitems=pages, entitlements=reserved
    )
    [customer] = client(handler).observe().customers
    token = excerpt["links"]["next"]["headers"][0]["value"]
    assert asked[1].headers["MS-ContinuationToken"] == token  # sent as given
    assert asked[1].url.path == "/v1/invoices/G000773581/lineitems"
    addon, azure = customer.subscriptions
    assert (addon.parent_id, addon.commerce) == ("1c2b75c1-74a5-472a-a729-7f8cefc477f9", "legacy")
    assert (azure.offer, azure.commerce, customer.azure_reservations_open) == (
        "MS-AZR-0145P",
        "legacy",
        1,  # a legacy Azure offer: its reserved instances are read
    )
    assert entitlements == [f"/v1/customers/{CUSTOMER}/entitlements"]

    savings = one_customer(
        httpx.Response(200, json={"items": [parsed("doc_subscription_azure_savings_plan.json")]})
    )
    [committed] = client(savings).observe().customers
    assert (committed.subscriptions, committed.azure_reservations_open) == ((), 2)

    sent: list[httpx.Request] = []

    def answers(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("relationshiprequests"):
            return replay("ps_GetResellerRelationshipLink.json")
        if request.method == "GET":
            return replay("doc_subscription_azure_legacy.json")
        if request.url.path == f"/v1/customers/{CUSTOMER}":
            return replay("doc_remove_relationship_response.json")
        return replay("ps_SuspendSubscription.json")  # PascalCase, as recorded

    provider = client(answers)
    link = provider.request_relationship(CUSTOMER)
    assert link.startswith("https://portal.office.com/") and "&amp;" not in link
    provider.suspend_subscription(CUSTOMER, "a356ac8c-e310-44f4-bf85-c7f29044af99")
    etag = parsed("doc_subscription_azure_legacy.json")["attributes"]["etag"]
    assert [r.method for r in sent[1:]] == ["GET", "PATCH"]  # the answer shows the change
    assert sent[2].headers["If-Match"] == etag
    provider.remove_relationship(CUSTOMER)
    assert json.loads(sent[-1].content) == parsed("doc_remove_relationship_request.json")


# --- errors: codes a person understands, ids for Microsoft support, throttling ------------------


@pytest.mark.parametrize(
    ("name", "status", "code", "says"),
    [
        ("doc_error_800090_quantity_decrease.json", 400, "800090", "168 hours"),
        ("constructed_error_900115_azure_plan_active_subscriptions.json", 403, "900115", "Azure"),
        ("constructed_error_800091_suspended_cannot_update.json", 400, "800091", "reactivate"),
        ("constructed_error_3000_invalid_property.json", 400, "3000", "Invalid property"),
    ],
)
def test_service_errors_are_one_line_with_their_code_and_ids(
    name: str, status: int, code: str, says: str
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return replay("doc_subscription_nce_active_patch_response.json")
        sent.append(request)
        return replay(name, status)

    with pytest.raises(PermanentProviderError) as caught:
        client(handler).update_quantity(CUSTOMER, NCE_ITEM, 1)
    message = str(caught.value)
    assert caught.value.code == code and says in message and "\n" not in message
    assert sent[0].headers["MS-RequestId"] in message
    assert sent[0].headers["MS-CorrelationId"] in message
    assert TOKEN not in message


def test_900117_says_the_cancellation_window_has_passed() -> None:
    error = {"code": 900117, "description": "You have passed your 7-day cancellation window."}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return replay("doc_subscription_nce_active_patch_response.json")
        return httpx.Response(400, json=error)

    with pytest.raises(PermanentProviderError) as caught:
        client(handler).cancel_subscription(CUSTOMER, NCE_ITEM)
    assert caught.value.code == "900117" and "auto_renew: false" in str(caught.value)


def test_the_throttling_body_and_its_retry_after_are_honoured_in_full() -> None:
    replies = iter([replay("doc_error_429_throttled.json", 429, **{"Retry-After": "57"})])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return next(replies, httpx.Response(200, json={"items": []}))

    client(handler, sleeps=sleeps).observe()
    assert sleeps == [57.0]  # not capped at the 30 s of computed backoff


def test_a_wait_longer_than_the_budget_fails_saying_so() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return replay("doc_error_429_throttled.json", 429, **{"Retry-After": "57"})

    provider = client(handler, retry=RetryPolicy(attempts=5, budget=30))
    with pytest.raises(TemporaryProviderError) as caught:
        provider.observe()
    message = str(caught.value)
    assert "Rate limit is exceeded" in message and "HTTP 429 429" in message
    assert "asked to wait 57 s" in message and "retry budget" in message
    assert caught.value.retry_after == 57.0


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert (
        retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now)
        == 90
    )
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0  # past: now
    assert retry_after_seconds("57", now=now) == 57.0
    assert retry_after_seconds("soon", now=now) is None


def test_the_byte_order_mark_of_the_live_service_is_accepted() -> None:
    assert body("ps_GetCustomerSubscription.json").startswith(b"\xef\xbb\xbf")
    [customer] = client(one_customer(replay("ps_GetCustomerSubscription.json"))).observe().customers
    assert len(customer.subscriptions) == 2


# --- the rate limit: one token per HTTP request, charged by the client only ---------------------


def test_each_http_request_costs_one_token_retries_included() -> None:
    requests: list[str] = []
    replies = iter([httpx.Response(503), httpx.Response(429, headers={"Retry-After": "0"})])

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.method)
        answer = next(replies, None)
        if answer is not None:
            return answer
        return one_customer(replay("ps_GetCustomerSubscription.json"))(request)

    limiter = Counting()
    client(handler, limiter=limiter).observe()
    assert limiter.count == len(requests) == 5  # 2 refused + customers, subscriptions, entitlements


def test_an_apply_through_the_client_charges_one_token_per_request_not_per_action() -> None:
    from helpers import customer, desired, records, sub, want, world

    from controller.apply import Executor
    from controller.plan import plan
    from controller.records import MemoryStore

    requests: list[str] = []
    legacy = sub(101)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/subscriptions/" + legacy.id):
            status = "active" if request.method == "GET" else "suspended"
            return httpx.Response(200, json={"id": legacy.id, "status": status})
        return replay("ps_RemoveResellerRelationship.json")

    limiter = Counting()
    current = world(customer(99), customer(1, legacy))
    made = plan(desired(want(99)), current, records(managed=(1,)))
    results = Executor(client(handler, limiter=limiter), MemoryStore(records(managed=(1,)))).run(
        made
    )
    assert {r.status for r in results} == {"applied"} and len(results) == 2
    assert limiter.count == len(requests) == 3  # GET + PATCH, then PATCH: one token each


# --- credentials -------------------------------------------------------------------------------


def test_options_give_the_client_parallelism_and_the_documented_rate_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.reconcile import Options, open_provider

    assert Options(state_dir=tmp_path).requests_per_minute == 0  # the local world: no limit
    assert Options(state_dir=tmp_path, provider="partner-center").requests_per_minute == 500
    assert Options(state_dir=tmp_path, provider="local", rate_limit=60).requests_per_minute == 60
    monkeypatch.setenv("PARTNER_CENTER_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("PARTNER_CENTER_TENANT_ID", PARTNER)
    provider = open_provider(Options(state_dir=tmp_path, provider="partner-center", parallelism=3))
    assert isinstance(provider, PartnerCenterProvider) and provider._parallelism == 3


def test_an_unthrottled_local_world_takes_no_time(tmp_path: Path) -> None:
    import shutil
    import time

    from controller.providers.local import LocalProvider

    shutil.copytree(Path(__file__).resolve().parent.parent / "state", tmp_path / "state")
    limiter = Counting()
    provider = LocalProvider(tmp_path / "state", rate_limiter=limiter)
    started = time.monotonic()
    for _ in range(20):
        provider.observe()
    assert limiter.count == 20 and time.monotonic() - started < 5


def rotating_entra(run: str = "run1", lifetime: int = 1) -> object:
    import base64

    from test_partnercenter import FakeEntra

    class Rotating(FakeEntra):
        issued = 0

        def post(self, url: str, data: dict | None = None, **_kw: object) -> FakeEntra.Reply:
            self.token_requests.append(dict(data or {}))
            Rotating.issued += 1
            info = {"uid": "user", "utid": PARTNER}
            client_info = base64.urlsafe_b64encode(json.dumps(info).encode()).decode()
            return self.Reply(
                200,
                {
                    "access_token": f"{run}-access-{Rotating.issued}",
                    "token_type": "Bearer",
                    "expires_in": lifetime,
                    "refresh_token": f"{run}-refresh-{Rotating.issued}",
                    "client_info": client_info.rstrip("="),
                    "scope": "https://api.partnercenter.microsoft.com/user_impersonation",
                },
            )

    return Rotating()


def test_the_rotated_refresh_token_is_kept_for_the_next_run(tmp_path: Path) -> None:
    from test_partnercenter import ENV

    from controller.providers.auth import token_source

    cache = tmp_path / "cache" / "tokens.json"
    env = {**ENV, "PARTNER_CENTER_TOKEN_CACHE": str(cache)}
    first = rotating_entra("run1")
    assert token_source(env, http_client=first)() == "run1-access-1"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    second = rotating_entra("run2")  # the next run: its token expired, the refresh token rotated
    assert token_source(env, http_client=second)() == "run2-access-1"
    [sent] = second.token_requests  # type: ignore[attr-defined]
    assert sent["refresh_token"] == "run1-refresh-1"  # not the one in the environment
    kept = cache.read_text()
    assert "run2-refresh-1" in kept and "run1-refresh-1" not in kept


def test_authority_and_scope_are_configurable_for_sovereign_clouds(tmp_path: Path) -> None:
    from test_partnercenter import ENV

    from controller.providers.auth import token_source

    entra = rotating_entra()
    scope = "https://api.partnercenter.microsoftonline.cn/user_impersonation"
    env = {
        **ENV,
        "PARTNER_CENTER_TOKEN_CACHE": str(tmp_path / "c.json"),
        "PARTNER_CENTER_AUTHORITY": "https://login.microsoftonline.com/",
        "PARTNER_CENTER_SCOPE": scope,
    }
    token_source(env, http_client=entra)()
    [sent] = entra.token_requests  # type: ignore[attr-defined]
    assert scope in sent["scope"]


def test_a_token_cache_inside_the_state_directory_is_refused(tmp_path: Path) -> None:
    from test_partnercenter import ENV

    from controller.providers.auth import token_source

    env = {**ENV, "PARTNER_CENTER_TOKEN_CACHE": str(tmp_path / "state" / "tokens.json")}
    with pytest.raises(ReconcileError, match="inside the state directory"):
        token_source(env, http_client=rotating_entra(), state_dir=tmp_path / "state")


def test_an_expired_refresh_token_says_to_consent_again_without_secrets(tmp_path: Path) -> None:
    from test_partnercenter import ENV, FakeEntra

    from controller.providers.auth import token_source

    env = {**ENV, "PARTNER_CENTER_TOKEN_CACHE": str(tmp_path / "c.json")}
    with pytest.raises(PermanentProviderError) as caught:
        token_source(env, http_client=FakeEntra(fail=True))()
    message = str(caught.value)
    assert "90 days" in message and "consent" in message
    assert all(secret not in message for secret in ENV.values() if "value" in secret)


def test_no_token_or_secret_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from test_partnercenter import ENV

    from controller.providers.auth import token_source

    caplog.set_level(logging.DEBUG)
    env = {**ENV, "PARTNER_CENTER_TOKEN_CACHE": str(tmp_path / "c.json")}
    replies = iter([httpx.Response(401), httpx.Response(503)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(replies, httpx.Response(400, json={"code": 3000, "description": "no"}))

    provider = PartnerCenterProvider(
        Settings(base_url="https://pc.test", tenant_id=PARTNER),
        token_source(env, http_client=rotating_entra("logged")),
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=3, base_delay=0, max_delay=0),
    )
    with pytest.raises(PermanentProviderError) as caught:
        provider.observe()
    secrets = ["client-secret-value", "refresh-token-value", "logged-access-", "logged-refresh-"]
    assert caplog.records  # something was logged (MSAL, httpx)
    for text in (caplog.text, str(caught.value)):
        assert not [s for s in secrets if s in text]
