"""The audit (command) log: one item per state-changing API call, in the config table, removed by its TTL.

Layout (docs/operations.md, "Audit log"): `pk = AUDIT#<shard>`, `sk = <entry id>`, the entry id being
`<unix ms, 13 digits>-<12 random hex>`, so that the sort key orders entries by time and the shard follows
from the id (`get` is one GetItem). The shard is a hash of the id over `AUDIT_SHARDS` partitions: every
write of the moment goes to the newest end of the log, whatever the time bucketing, so it is the shards
that spread a burst (a partition takes ~1,000 writes/s; the stage's default throttle is 50 requests/s).
Reads query each shard over the asked time range and merge them in time order; no Scan."""

from __future__ import annotations

import builtins
import heapq
import re
import secrets
import zlib
from collections.abc import Iterator
from itertools import islice
from typing import Any, Literal

from mailproxy.dal.dynamo import DynamoDBClient, all_items, batch_write
from mailproxy.dal.items import from_item, to_item, values
from mailproxy.dal.message_queries import BadCursor
from mailproxy.dal.records import Record

AUDIT_SHARDS = 4
AUDIT_PK_PREFIX = "AUDIT#"
MAX_PAGE = 1000
_ID = re.compile(r"^\d{13}-[0-9a-f]{12}$")
_FIRST = "0" * 13
_LAST = "9" * 14  # above every id: "9999999999999-..." is the year 2286


class AuditEntry(Record):
    """Who did what, when, with what result; `summary` holds ids and counts only, never a secret or a body."""

    id: str
    ts: int  # unix ms
    method: str
    route: str  # the route's path template, e.g. /tenant/{tenant_id}/api-key
    endpoint: str  # "<method> <route>": what `endpoint_filter` matches
    status: int
    caller: Literal["admin", "tenant", "anonymous"]
    caller_tenant_id: str | None = None
    key_id: str | None = None  # the first 8 hex of the key's SHA-256
    tenant_id: str | None = None  # the tenant the call acted on, when it named or resolved one
    summary: dict[str, Any] = {}


def new_entry_id(ts_ms: int) -> str:
    return f"{ts_ms:013d}-{secrets.token_hex(6)}"


def _pk(entry_id: str) -> str:
    return f"{AUDIT_PK_PREFIX}{zlib.crc32(entry_id.encode()) % AUDIT_SHARDS}"


def _ms_key(seconds: int) -> str:
    return f"{seconds * 1000:013d}"


class AuditLog:
    def __init__(self, dynamodb: DynamoDBClient, table: str, retention_days: int) -> None:
        self._db = dynamodb
        self._table = table
        self._retention_seconds = retention_days * 86_400

    def record(self, entry: AuditEntry) -> None:
        item = {"pk": _pk(entry.id), "sk": entry.id, **entry.model_dump()}
        item["expires_at"] = entry.ts // 1000 + self._retention_seconds  # the table's TTL attribute
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def get(self, entry_id: str) -> AuditEntry | None:
        if not _ID.match(entry_id):
            return None
        answer = self._db.get_item(TableName=self._table, Key={"pk": {"S": _pk(entry_id)}, "sk": {"S": entry_id}})
        return AuditEntry.from_item(from_item(answer["Item"])) if "Item" in answer else None

    def list(
        self,
        *,
        tenant_id: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        endpoint_filter: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[builtins.list[AuditEntry], str | None]:
        """Oldest first, at most `limit` (≤ 1,000) entries, and the cursor of the next page (None at the end).
        `since_ts` ≤ entry time ≤ `until_ts` (unix seconds), `tenant_id` exact, `endpoint_filter` a
        substring of "<METHOD> <route>"."""
        if cursor is not None and not _ID.match(cursor):
            raise BadCursor("cursor: not one this log handed out")
        limit = max(1, min(limit, MAX_PAGE))
        found = list(
            islice(
                self._entries(tenant_id, since_ts, until_ts, endpoint_filter, after=cursor, page=limit + 1), limit + 1
            )
        )
        more = len(found) > limit
        return found[:limit], found[limit - 1].id if more else None

    def export(
        self,
        *,
        tenant_id: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        endpoint_filter: str | None = None,
    ) -> Iterator[AuditEntry]:
        """Every matching entry, oldest first, read page by page as the caller iterates."""
        return self._entries(tenant_id, since_ts, until_ts, endpoint_filter, after=None, page=500)

    def purge(self, threshold_ts: int) -> int:
        """Delete the entries older than `threshold_ts` (unix seconds); the number deleted."""
        deleted = 0
        for shard in range(AUDIT_SHARDS):
            keys = [
                {"DeleteRequest": {"Key": {"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}}}}
                for item in all_items(
                    self._db,
                    "query",
                    TableName=self._table,
                    KeyConditionExpression="pk = :pk AND sk < :before",
                    ExpressionAttributeValues=values(pk=f"{AUDIT_PK_PREFIX}{shard}", before=_ms_key(threshold_ts)),
                    ProjectionExpression="pk, sk",
                )
            ]
            batch_write(self._db, self._table, keys)
            deleted += len(keys)
        return deleted

    def _entries(
        self,
        tenant_id: str | None,
        since_ts: int | None,
        until_ts: int | None,
        endpoint_filter: str | None,
        *,
        after: str | None,
        page: int,
    ) -> Iterator[AuditEntry]:
        low = _FIRST if since_ts is None else _ms_key(since_ts)
        if after is not None and after > low:
            low = after
        high = _LAST if until_ts is None else _ms_key(until_ts + 1)  # until_ts is inclusive, to the second
        filters: builtins.list[str] = []
        named: dict[str, Any] = {}
        if tenant_id is not None:
            filters.append("tenant_id = :tenant")
            named["tenant"] = tenant_id
        if endpoint_filter:
            filters.append("contains(endpoint, :endpoint)")
            named["endpoint"] = endpoint_filter
        shards = [self._shard(shard, low, high, " AND ".join(filters), named, page) for shard in range(AUDIT_SHARDS)]
        for item in heapq.merge(*shards, key=lambda item: str(item["sk"])):
            if after is not None and item["sk"] <= after:
                continue
            yield AuditEntry.from_item(item)

    def _shard(
        self, shard: int, low: str, high: str, filters: str, named: dict[str, Any], page: int
    ) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": values(pk=f"{AUDIT_PK_PREFIX}{shard}", low=low, high=high, **named),
            "PaginationConfig": {"PageSize": page},
        }
        if filters:
            request["FilterExpression"] = filters
        return all_items(self._db, "query", **request)
