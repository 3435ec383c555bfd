"""Partner Center's resources as the controller sees them: pure functions from the service's
JSON (camelCase, or PascalCase where a client re-serialised it) to the models of ``current``.

Commerce kinds (contract section 7; Microsoft's subscription resource, ``productType``):
``OnlineServicesNCE`` is new commerce; ``Azure`` without a ``subType`` is the Azure plan
(offer DZH318Z0BPS6); ``Azure`` with a ``subType`` (a savings plan, a reservation) is a
commitment that only Azure support ends: it is not kept as a subscription the controller could
change, it is counted into the customer's ``azure_reservations_open``; anything else is legacy.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..current import Commerce, Customer, Subscription
from ..ids import normalize_guid
from .pcapi import camel_keys

KNOWN_STATUSES = {"active", "suspended", "deleted", "expired", "pending", "disabled"}
RELATIONSHIPS = {"reseller", "advisor", "syndication"}  # anything else is none
# Who suspended a subscription, from its ``suspensionReasons``. Microsoft documents the field only
# as "Read-only. If the subscription was suspended, indicates why." (an array of strings: the
# Subscription resource, learn.microsoft.com/partner-center/developer/subscription-resources;
# the .NET SDK's Subscription.SuspensionReasons is an IEnumerable<string>, no enumeration): it
# publishes no list of values. The one value known to come from the partner's own suspension is
# "CustomerCancellation" (recorded in Microsoft's Partner Center PowerShell session records, see
# tests/recordings/today/ps_GetCustomerSubscription.json). So a suspension counts as the
# partner's only when every reason is one of those; any other reason (fraud, a credit check,
# non-payment, one Microsoft adds later) is taken for Microsoft's, and the controller never
# reactivates it: the safe side of an undocumented list. No reason at all: unknown (None), and
# the service decides whether it may be reactivated.
PARTNER_SUSPENSION_REASONS = {"customercancellation"}
ENDED_ENTITLEMENT_STATUSES = {"cancelled", "canceled", "expired", "refunded", "failed"}
ENDED_STATUSES = {"deleted", "expired"}


def commerce_of(item: Mapping[str, Any]) -> tuple[Commerce, bool]:
    """The commerce kind, and whether it is an Azure commitment (``Azure`` with a subType)."""
    product = item.get("productType") or {}
    kind = str(product.get("id") or "").lower()
    if kind == "onlineservicesnce":
        return "nce", False
    if kind == "azure":
        return "azure_plan", bool(product.get("subType"))
    return "legacy", False


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else None  # the model refuses naive times: leave them out


def _cancel_until(item: Mapping[str, Any]) -> datetime | None:
    """The end of the cancellation window: the latest ``refundOptions[].expiresAt``."""
    ends = [_moment(o.get("expiresAt")) for o in item.get("refundOptions") or []]
    known = [e for e in ends if e is not None]
    return max(known) if known else None


def _refundable(item: Mapping[str, Any]) -> int | None:
    refundable = item.get("refundableQuantity")
    if isinstance(refundable, Mapping):
        total = refundable.get("totalQuantity")
        return int(total) if total is not None else None
    return int(refundable) if isinstance(refundable, int) else None


def _suspended_by(item: Mapping[str, Any], status: str) -> str | None:
    reasons = {str(r).lower() for r in item.get("suspensionReasons") or []}
    if status != "suspended" or not reasons:
        return None
    return "partner" if reasons <= PARTNER_SUSPENSION_REASONS else "microsoft"


def parse_subscription(raw: Mapping[str, Any]) -> Subscription:
    """A subscription resource; statuses it does not know (``none``) count as ``disabled``:
    something the controller never changes."""
    item = camel_keys(raw)
    status = str(item.get("status", "")).lower()
    status = status if status in KNOWN_STATUSES else "disabled"
    commerce, _commitment = commerce_of(item)
    auto_renew = item.get("autoRenewEnabled")
    parent = item.get("parentSubscriptionId")
    return Subscription(
        id=normalize_guid(item["id"]),
        offer=item.get("offerId"),
        name=item.get("friendlyName") or item.get("offerName"),
        quantity=int(item.get("quantity") or 0),
        status=status,
        commerce=commerce,
        term_end=_moment(item.get("commitmentEndDate")) if commerce == "nce" else None,
        cancel_until=_cancel_until(item) if commerce == "nce" else None,
        auto_renew=bool(auto_renew) if commerce == "nce" and auto_renew is not None else None,
        refundable_quantity=_refundable(item) if commerce == "nce" else None,
        suspended_by=_suspended_by(item, status),
        parent_id=normalize_guid(parent) if parent else None,
    )


def is_azure_commitment(raw: Mapping[str, Any]) -> bool:
    """An Azure savings plan or reservation (productType Azure with a subType)."""
    return commerce_of(camel_keys(raw))[1]


def open_commitments(raw_subscriptions: Iterable[Mapping[str, Any]]) -> int:
    """Azure savings plans and reservations among the subscriptions that have not ended."""
    return sum(
        1
        for raw in raw_subscriptions
        if is_azure_commitment(raw)
        and str(camel_keys(raw).get("status", "")).lower() not in ENDED_STATUSES
    )


def open_reserved_instances(raw_entitlements: Iterable[Mapping[str, Any]]) -> int:
    """Reserved-instance entitlements (``GET /v1/customers/{id}/entitlements``) not yet ended:
    each blocks removing the relationship until Azure support cancels it."""
    count = 0
    for raw in raw_entitlements:
        item = camel_keys(raw)
        if "reserved" not in str(item.get("entitlementType", "")).lower():
            continue
        statuses = {str(d.get("status", "")).lower() for d in item.get("quantityDetails") or []}
        if not statuses or not statuses <= ENDED_ENTITLEMENT_STATUSES:
            count += 1
    return count


def active_azure_subscriptions(raw_entitlements: Iterable[Mapping[str, Any]]) -> int:
    """Active Azure subscriptions under an Azure plan (``.../azureEntitlements``)."""
    statuses = (str(camel_keys(raw).get("status", "")).lower() for raw in raw_entitlements)
    return sum(status == "active" for status in statuses)


def relationship_of(raw: Mapping[str, Any]) -> str:
    """``reseller``, ``advisor``, ``syndication``, or ``none`` for anything else."""
    value = str(camel_keys(raw).get("relationshipToPartner", "")).lower()
    return value if value in RELATIONSHIPS else "none"


def parse_customer(
    raw: Mapping[str, Any],
    subscriptions: tuple[Subscription, ...] = (),
    *,
    refused: bool = False,
    reservations_open: int = 0,
) -> Customer:
    """A customer; ``refused`` when its own calls answer 20002 (it ended the relationship from
    its side), which makes its relationship ``none``."""
    item = camel_keys(raw)
    profile = item.get("companyProfile") or {}
    return Customer(
        id=normalize_guid(item["id"]),
        name=profile.get("companyName") or "",
        domain=profile.get("domain"),
        relationship="none" if refused else relationship_of(item),
        subscriptions=subscriptions,
        azure_reservations_open=reservations_open,
    )


def invitation_link(raw: Mapping[str, Any]) -> str:
    """The invitation URL of a relationship request (the service HTML-escapes it)."""
    return html.unescape(str(camel_keys(raw)["url"]))


def api_path(uri: str) -> str:
    """A link's uri as a path under the API root: the service gives them without ``/v1``."""
    if uri.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        parts = urlsplit(uri)
        uri = parts.path + (f"?{parts.query}" if parts.query else "")
    if uri.startswith("/v1/"):
        return uri
    return "/v1" + ("" if uri.startswith("/") else "/") + uri
