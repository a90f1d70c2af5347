"""Registering Waybill's custom search attributes on a Temporal namespace (idempotent)."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.search_attributes import KEYWORD_ATTRIBUTES

log = logging.getLogger(__name__)
KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Add whichever attributes are missing and return their names.

    Raises if one exists with a type other than Keyword."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = dict(listed.custom_attributes)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = {}  # the time-skipping test server can add attributes but not list them
    wrong = [n for n in KEYWORD_ATTRIBUTES if n in existing and existing[n] != KEYWORD]
    if wrong:
        raise RuntimeError(f"search attributes {', '.join(wrong)} exist with a type other than Keyword")
    missing = [n for n in KEYWORD_ATTRIBUTES if n not in existing]
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=dict.fromkeys(missing, KEYWORD))
        )
        log.info("registered search attributes", extra={"names": missing})
    return missing
