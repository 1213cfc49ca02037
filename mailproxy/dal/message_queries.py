"""Reading messages through the by_tenant index, whose partitions are a tenant's shards
(`keys.tenant_index_pk`): a page of a tenant's messages newest first over every shard, merged, with an
opaque cursor that holds each shard's position; a walk over all of them shard by shard, resumable from a
`WalkPosition` (bulk jobs and campaign control)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient, batch_get
from mailproxy.dal.items import values
from mailproxy.dal.keys import BY_TENANT_INDEX, STATUS_SK, message_pk, tenant_index_partition, tenant_index_shards

_MAX_INDEX_ROUNDS_PER_PAGE = 20  # a page of filtered results stops after this many rounds of index reads
WALK_PAGE_SIZE = 100  # index entries per page of a walk: one BatchGetItem of status items


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class WalkPosition:
    """Where a walk over a tenant's shards stands: the shard being read and the last key read in it
    (None: from its start). JSON-safe, so that a job stores it as its checkpoint."""

    shard: int = 0
    after: str | None = None  # created_key of the last entry read
    after_id: str | None = None  # its message id, which with the tenant rebuilds the table key

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "after": self.after, "after_id": self.after_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WalkPosition:
        return cls(**data) if data else cls()


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
        tag: str | None = None,
        bounced: bool | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first over every shard. Each round reads up to the entries still wanted from each shard
        not exhausted, keeps the newest of them all and moves each shard's position past what it kept:
        the next page starts exactly after this one's last message, shard by shard."""
        positions = decode_cursor(cursor, tenant_id)

        def wanted(item: dict[str, Any]) -> bool:
            return (
                (status is None or item["status"] == status)
                and (statuses is None or item["status"] in statuses)
                and (account_id is None or item["account_id"] == account_id)
                and (tag is None or tag in item.get("tags", ()))
                and (bounced is None or ("bounce_type" in item) == bounced)
            )

        collected: list[dict[str, Any]] = []
        for _ in range(_MAX_INDEX_ROUNDS_PER_PAGE):
            room = limit - len(collected)
            heads: list[tuple[str, int, dict[str, Any]]] = []
            exhausted: set[int] = set()
            for shard in tenant_index_shards():
                position = positions.get(shard, "")
                if position is None:
                    continue
                entries, more = self._newest(tenant_id, shard, position or None, room)
                heads += [(entry["created_key"]["S"], shard, entry) for entry in entries]
                if not more:
                    exhausted.add(shard)
            heads.sort(key=lambda head: head[0], reverse=True)
            kept = heads[:room]
            for key, shard, _entry in kept:
                positions[shard] = key  # newest first: each shard's last kept entry is its oldest kept
            # A shard all of whose entries were kept and that has none beyond them is done.
            for shard in exhausted:
                if all(head[1] != shard for head in heads[room:]):
                    positions[shard] = None
            collected.extend(item for item in self._status_items([entry for _, _, entry in kept]) if wanted(item))
            if len(collected) >= limit or all(positions.get(s, "") is None for s in tenant_index_shards()):
                break
        done = all(positions.get(shard, "") is None for shard in tenant_index_shards())
        return collected, None if done else encode_cursor(tenant_id, positions)

    def _newest(
        self, tenant_id: str, shard: int, before_key: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` entries of one shard older than `before_key`, newest first; and whether more follow."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": "tenant_index_pk = :p",
            "ExpressionAttributeValues": values(p=tenant_index_partition(tenant_id, shard)),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if before_key is not None:
            request["KeyConditionExpression"] += " AND created_key < :before"
            request["ExpressionAttributeValues"].update(values(before=before_key))
        answer = self._db.query(**request)
        return answer["Items"], "LastEvaluatedKey" in answer

    def tenant_page(
        self,
        tenant_id: str,
        position: WalkPosition,
        *,
        created_before_ms: int | None = None,
        limit: int = WALK_PAGE_SIZE,
    ) -> tuple[list[dict[str, Any]], WalkPosition | None]:
        """One page of a tenant's status items from `position`, shard by shard, oldest first within a shard;
        the position after it, None once every shard has been read."""
        shard = position.shard
        while shard in tenant_index_shards():
            partition = tenant_index_partition(tenant_id, shard)
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": BY_TENANT_INDEX,
                "KeyConditionExpression": "tenant_index_pk = :p",
                "ExpressionAttributeValues": values(p=partition),
                "Limit": limit,
            }
            if created_before_ms is not None:
                request["KeyConditionExpression"] += " AND created_key < :before"
                request["ExpressionAttributeValues"].update(values(before=f"{created_before_ms:013d}"))
            if shard == position.shard and position.after is not None and position.after_id is not None:
                request["ExclusiveStartKey"] = {
                    "pk": {"S": message_pk(tenant_id, position.after_id)},
                    "sk": {"S": STATUS_SK},
                    "tenant_index_pk": {"S": partition},
                    "created_key": {"S": position.after},
                }
            answer = self._db.query(**request)
            last = answer.get("LastEvaluatedKey")
            if answer["Items"] or last:
                if last:
                    next_position: WalkPosition | None = WalkPosition(
                        shard, last["created_key"]["S"], last["pk"]["S"].removeprefix(message_pk(tenant_id, ""))
                    )
                else:
                    next_position = WalkPosition(shard + 1) if shard + 1 in tenant_index_shards() else None
                return self._status_items(answer["Items"]), next_position
            shard += 1
            position = WalkPosition(shard)
        return [], None

    def tenant_messages(self, tenant_id: str, *, created_before_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Every status item of a tenant, shard by shard."""
        position: WalkPosition | None = WalkPosition()
        while position is not None:
            items, position = self.tenant_page(tenant_id, position, created_before_ms=created_before_ms)
            yield from items

    def _status_items(self, index_entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The status items named by index entries, in the index's order; those deleted meanwhile left out."""
        keys = [{"pk": entry["pk"], "sk": entry["sk"]} for entry in index_entries]
        found = {item["pk"]: item for item in batch_get(self._db, self._table, keys)}
        return [found[key["pk"]["S"]] for key in keys if key["pk"]["S"] in found]


# A cursor: the tenant and, per shard, the created_key of the last entry listed from it ("" for a shard not
# read yet, null for one read to its end). A created_key names its message, so it alone resumes a shard.
Positions = dict[int, str | None]


def encode_cursor(tenant_id: str, positions: Positions) -> str:
    document = {"t": tenant_id, "s": {str(shard): key for shard, key in positions.items()}}
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None, tenant_id: str) -> Positions:
    if not cursor:
        return {}
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise BadCursor("cursor: not a cursor returned by this API") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"t", "s"}
        or not isinstance(document["s"], dict)
        or not all(key.isdigit() and (value is None or isinstance(value, str)) for key, value in document["s"].items())
    ):
        raise BadCursor("cursor: not a cursor returned by this API")
    if document["t"] != tenant_id:
        raise BadCursor("cursor: belongs to another query")
    return {int(shard): key for shard, key in document["s"].items()}
