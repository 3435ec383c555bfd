"""Identifier types: tenant and subscription ids are GUIDs, compared in lower case."""

from __future__ import annotations

import re
from typing import Annotated, NewType

from pydantic import StrictStr, StringConstraints, WithJsonSchema

CustomerId = NewType("CustomerId", str)
SubscriptionId = NewType("SubscriptionId", str)

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID = re.compile(GUID_PATTERN)


def normalize_guid(value: str) -> str:
    """Return ``value`` as a lower-case GUID, so that ids never differ only by case."""
    if not _GUID.match(value):
        raise ValueError(f"must be a GUID like 7d3c1a52-0b0e-4c1e-9f5e-2a1c3b4d5e6f, got {value!r}")
    return value.lower()


# Checked and lower-cased by pydantic-core itself: ids are validated by the hundred thousand.
Guid = Annotated[
    StrictStr,
    StringConstraints(pattern=GUID_PATTERN, to_lower=True),
    WithJsonSchema({"type": "string", "pattern": GUID_PATTERN, "description": "a GUID"}),
]
