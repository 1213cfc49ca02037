"""A tenant's index of its messages, kept in the messages table itself: one listing item per ingestion
request, naming the ids of the messages it created (docs/design.md, "Listing a tenant's messages").

A global secondary index entry per message cost a write unit per message; a listing item costs one per
started KB of ids, about 0.02 a message in requests of 100. Listing items are spread over the tenant's
partitions `LIST#<tenant>#<shard>` (`keys.tenant_index_partition`), sorted by creation time, so that one
tenant's ingestion is not capped by one partition's write rate.

A listing item is written before the status items it names, so that no stored message is ever missing
from it; an entry counts only while its status item names the same listing (`listed_in`): an entry
whose message was never stored (a crash in between) or was created by a concurrent request is skipped."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient
from mailproxy.dal.items import to_item, values
from mailproxy.dal.keys import tenant_index_partition, tenant_index_shards

# Listing items per Query page (each up to a request's ids): a first page of two serves a short listing without
# reading kilobytes of ids it will not show; the following pages read more at a time.
_FIRST_READ, _NEXT_READS = 2, 10


@dataclass(frozen=True)
class Entry:
    """One message named by a listing item: `listing` is the item's sort key, `index` the message's place
    in it, `size` the number of ids it names."""

    shard: int
    listing: str
    index: int
    size: int
    message_id: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.listing, self.index)

    @property
    def listed_in(self) -> str:
        return listed_in(self.shard, self.listing)


def listed_in(shard: int, listing: str) -> str:
    """The reference a status item keeps to the listing item that names it."""
    return f"{shard}#{listing}"


class TenantIndex:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def add(self, tenant_id: str, message_ids: list[str], *, created_ms: int, expires_at: int | None) -> str:
        """Write the listing item of new messages (before their status items); return the `listed_in`
        reference their status items keep."""
        token = uuid.uuid4().hex
        shard = zlib.crc32(token.encode()) % len(tenant_index_shards())
        listing = f"{created_ms:013d}#{token}"
        item = {
            "pk": tenant_index_partition(tenant_id, shard),
            "sk": listing,
            "ids": list(dict.fromkeys(message_ids)),
            "expires_at": expires_at,
        }
        self._db.put_item(TableName=self._table, Item=to_item(item))
        return listed_in(shard, listing)

    def newest(self, tenant_id: str, shard: int, *, before: tuple[str, int] | None) -> Iterator[Entry]:
        """The shard's entries newest first, from just before `before` (a listing and index) if given."""
        condition, named = "pk = :p", values(p=tenant_index_partition(tenant_id, shard))
        if before is not None:
            condition += " AND sk <= :listing"
            named.update(values(listing=before[0]))
        for listing, ids in self._listings(condition, named, forward=False, consistent=False):
            for index in reversed(range(len(ids))):
                if before is None or (listing, index) < before:
                    yield Entry(shard, listing, index, len(ids), ids[index])

    def oldest(
        self, tenant_id: str, shard: int, *, start: tuple[str, int] | None, created_before_ms: int | None
    ) -> Iterator[Entry]:
        """The shard's entries oldest first, from `start` (included) if given, read strongly consistent
        (bulk jobs must see every message stored before they began)."""
        condition, named = "pk = :p", values(p=tenant_index_partition(tenant_id, shard))
        if start is not None:
            condition += " AND sk >= :listing"
            named.update(values(listing=start[0]))
        elif created_before_ms is not None:
            condition += " AND sk < :before"
            named.update(values(before=f"{created_before_ms:013d}"))
        for listing, ids in self._listings(condition, named, forward=True, consistent=True):
            if created_before_ms is not None and listing >= f"{created_before_ms:013d}":
                return
            for index in range(len(ids)):
                if start is None or (listing, index) >= start:
                    yield Entry(shard, listing, index, len(ids), ids[index])

    def remove(self, tenant_id: str, shard: int, listing: str) -> None:
        self._db.delete_item(
            TableName=self._table, Key={"pk": {"S": tenant_index_partition(tenant_id, shard)}, "sk": {"S": listing}}
        )

    def _listings(
        self, condition: str, named: dict[str, Any], *, forward: bool, consistent: bool
    ) -> Iterator[tuple[str, list[str]]]:
        """(sort key, ids) of the listing items a key condition selects, read a few at a time as consumed."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": named,
            "ScanIndexForward": forward,
            "ConsistentRead": consistent,
            "Limit": _FIRST_READ,
        }
        while True:
            answer = self._db.query(**request)
            request["Limit"] = _NEXT_READS
            for raw in answer["Items"]:
                yield raw["sk"]["S"], [value["S"] for value in raw["ids"]["L"]]
            if "LastEvaluatedKey" not in answer:
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
