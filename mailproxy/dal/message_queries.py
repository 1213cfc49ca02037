"""Reading a tenant's messages through its index (mailproxy/dal/tenant_index.py), whose partitions are the
tenant's shards: a page of them newest first over every shard, merged, with an opaque cursor that holds each
shard's position; a walk over all of them shard by shard, resumable from a `WalkPosition` (bulk jobs and
campaign control)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient, batch_get
from mailproxy.dal.keys import STATUS_SK, message_pk, tenant_index_shards
from mailproxy.dal.tenant_index import Entry, TenantIndex

_MAX_INDEX_ROUNDS_PER_PAGE = 20  # a page of filtered results stops after this many rounds of index reads
WALK_PAGE_SIZE = 100  # index entries per page of a walk: one BatchGetItem of status items
# A listing item none of whose messages exists any more is removed by the walk that finds it, once older than
# this: a younger one may belong to an ingestion still writing its status items.
STALE_LISTING_MS = 24 * 3600 * 1000


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class WalkPosition:
    """Where a walk over a tenant's shards stands: the shard being read and the next entry to read in it
    (a listing item's sort key and an index in it; None: from its start). JSON-safe, so that a job stores it
    as its checkpoint."""

    shard: int = 0
    listing: str | None = None
    index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "listing": self.listing, "index": self.index}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> WalkPosition:
        return cls(**data) if data else cls()


class MessageQueries:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table
        self.index = TenantIndex(dynamodb, table)

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
        """Newest first over every shard: the shards' entries are merged one at a time, newest of their heads
        first, and each shard's position moves past what was taken: the next page starts exactly after this
        one's last message, shard by shard."""
        positions = decode_cursor(cursor, tenant_id)

        def wanted(item: dict[str, Any]) -> bool:
            return (
                (status is None or item["status"] == status)
                and (statuses is None or item["status"] in statuses)
                and (account_id is None or item["account_id"] == account_id)
                and (tag is None or tag in item.get("tags", ()))
                and (bounced is None or ("bounce_type" in item) == bounced)
            )

        streams: dict[int, Iterator[Entry]] = {}
        heads: dict[int, Entry] = {}
        for shard in tenant_index_shards():
            if shard in positions and positions[shard] is None:
                continue
            streams[shard] = self.index.newest(tenant_id, shard, before=positions.get(shard))
            self._advance(shard, streams, heads, positions)
        collected: list[dict[str, Any]] = []
        for _ in range(_MAX_INDEX_ROUNDS_PER_PAGE):
            taken: list[Entry] = []
            while heads and len(taken) < limit - len(collected):
                shard = max(heads, key=lambda s: heads[s].key)
                taken.append(heads[shard])
                positions[shard] = heads[shard].key
                self._advance(shard, streams, heads, positions)
            collected.extend(item for item in self._status_items(tenant_id, taken) if wanted(item))
            if len(collected) >= limit or not heads:
                break
        return collected, None if not heads else encode_cursor(tenant_id, positions)

    @staticmethod
    def _advance(
        shard: int, streams: dict[int, Iterator[Entry]], heads: dict[int, Entry], positions: Positions
    ) -> None:
        """The shard's next entry becomes its head; a shard read to its end is done (position None)."""
        following = next(streams[shard], None)
        if following is None:
            heads.pop(shard, None)
            positions[shard] = None
        else:
            heads[shard] = following

    def tenant_page(
        self,
        tenant_id: str,
        position: WalkPosition,
        *,
        created_before_ms: int | None = None,
        limit: int = WALK_PAGE_SIZE,
    ) -> tuple[list[dict[str, Any]], WalkPosition | None]:
        """One page of a tenant's status items from `position`, shard by shard, oldest first within a shard;
        the position after it, None once every shard has been read. Listing items the page finds empty
        (`STALE_LISTING_MS`) are removed."""
        shard = position.shard
        while shard in tenant_index_shards():
            start = (position.listing, position.index) if shard == position.shard and position.listing else None
            entries = list(
                islice(self.index.oldest(tenant_id, shard, start=start, created_before_ms=created_before_ms), limit + 1)
            )
            if entries:
                page, rest = entries[:limit], entries[limit:]
                if rest:
                    following: WalkPosition | None = WalkPosition(shard, rest[0].listing, rest[0].index)
                else:
                    following = WalkPosition(shard + 1) if shard + 1 in tenant_index_shards() else None
                items = self._status_items(tenant_id, page)
                self._remove_empty_listings(tenant_id, page, {item["listed_in"] for item in items})
                return items, following
            shard += 1
            position = WalkPosition(shard)
        return [], None

    def tenant_messages(self, tenant_id: str, *, created_before_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Every status item of a tenant, shard by shard."""
        position: WalkPosition | None = WalkPosition()
        while position is not None:
            items, position = self.tenant_page(tenant_id, position, created_before_ms=created_before_ms)
            yield from items

    def _status_items(self, tenant_id: str, entries: list[Entry]) -> list[dict[str, Any]]:
        """The status items named by index entries, in the entries' order; those never stored, deleted
        meanwhile or listed by another listing item left out."""
        keys = [{"pk": {"S": message_pk(tenant_id, e.message_id)}, "sk": {"S": STATUS_SK}} for e in entries]
        found = {item["pk"]: item for item in batch_get(self._db, self._table, keys)}
        listed = [(entry, found.get(key["pk"]["S"])) for entry, key in zip(entries, keys, strict=True)]
        return [item for entry, item in listed if item is not None and item.get("listed_in") == entry.listed_in]

    def _remove_empty_listings(self, tenant_id: str, page: list[Entry], live: set[str]) -> None:
        """Remove the listing items that this page holds whole, none of whose messages is alive."""
        stale_before = f"{int(time.time() * 1000) - STALE_LISTING_MS:013d}"
        seen: dict[str, list[Entry]] = {}
        for entry in page:
            seen.setdefault(entry.listed_in, []).append(entry)
        for reference, entries in seen.items():
            first = entries[0]
            if len(entries) == first.size and reference not in live and first.listing < stale_before:
                self.index.remove(tenant_id, first.shard, first.listing)


# A cursor: the tenant and, per shard, the entry last listed from it (listing item, index), null for a shard
# read to its end; a shard not named has not been read yet.
Positions = dict[int, tuple[str, int] | None]


def encode_cursor(tenant_id: str, positions: Positions) -> str:
    shards = {str(shard): None if key is None else list(key) for shard, key in positions.items()}
    document = {"t": tenant_id, "s": shards}
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _position(value: Any) -> bool:
    return value is None or (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


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
        or not all(key.isdigit() and _position(value) for key, value in document["s"].items())
    ):
        raise BadCursor("cursor: not a cursor returned by this API")
    if document["t"] != tenant_id:
        raise BadCursor("cursor: belongs to another query")
    return {int(shard): None if key is None else (key[0], key[1]) for shard, key in document["s"].items()}
