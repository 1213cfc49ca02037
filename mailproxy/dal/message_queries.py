"""Reading messages: a tenant's messages page by page (newest first, with an opaque cursor), all of a
tenant's messages (campaign control)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient, batch_get, pages
from mailproxy.dal.items import values
from mailproxy.dal.keys import BY_TENANT_INDEX

_MAX_INDEX_READS_PER_PAGE = 20  # a page of filtered results stops after this many index reads


class BadCursor(ValueError):
    pass


class MessageQueries:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def list_page(
        self,
        tenant_id: str,
        *,
        status: str | None,
        account_id: str | None,
        limit: int,
        cursor: str | None,
        statuses: frozenset[str] | set[str] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. Reads keys from the tenant index and the small status items they name."""
        start_key = decode_cursor(cursor)
        if start_key and start_key["tenant_id"]["S"] != tenant_id:
            raise BadCursor("cursor: belongs to another query")

        def wanted(item: dict[str, Any]) -> bool:
            return (
                (status is None or item["status"] == status)
                and (statuses is None or item["status"] in statuses)
                and (account_id is None or item["account_id"] == account_id)
            )

        collected: list[dict[str, Any]] = []
        for _ in range(_MAX_INDEX_READS_PER_PAGE):
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": BY_TENANT_INDEX,
                "KeyConditionExpression": "tenant_id = :t",
                "ExpressionAttributeValues": values(t=tenant_id),
                "ScanIndexForward": False,
                "Limit": limit - len(collected),
            }
            if start_key:
                request["ExclusiveStartKey"] = start_key
            answer = self._db.query(**request)
            collected.extend(item for item in self._status_items(answer["Items"]) if wanted(item))
            start_key = answer.get("LastEvaluatedKey")
            if not start_key or len(collected) >= limit:
                break
        return collected, encode_cursor(start_key)

    def tenant_messages(self, tenant_id: str, *, created_before_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Every status item of a tenant, oldest first (keys from the tenant index, then the items)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": "tenant_id = :t",
            "ExpressionAttributeValues": values(t=tenant_id),
        }
        if created_before_ms is not None:
            request["KeyConditionExpression"] += " AND created_key < :before"
            request["ExpressionAttributeValues"].update(values(before=f"{created_before_ms:013d}"))
        for page in pages(self._db, "query", **request):
            yield from self._status_items(page["Items"])

    def _status_items(self, index_entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The status items named by index entries, in the index's order; those deleted meanwhile left out."""
        keys = [{"pk": entry["pk"], "sk": entry["sk"]} for entry in index_entries]
        found = {item["pk"]: item for item in batch_get(self._db, self._table, keys)}
        return [found[key["pk"]["S"]] for key in keys if key["pk"]["S"] in found]


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise BadCursor("cursor: not a cursor returned by this API") from None
    if (
        not isinstance(key, dict)
        or not all(
            isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v.values())), str) for v in key.values()
        )
        or set(key) != {"pk", "sk", "tenant_id", "created_key"}
    ):
        raise BadCursor("cursor: not a cursor returned by this API")
    return key
