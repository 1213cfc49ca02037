"""Per-tenant state of the report sync protocol (docs/tenants.md, "The client's reply"): when the proxy last
reached the tenant's endpoint, the client's do-not-disturb (`next_sync_after`) and a pending run-now.

One item per tenant in the config table (`pk = SYNC`, `sk = <tenant id>`), apart from the tenant item, so
that the reporter's writes never race an edit of the tenant. Every write renews the item's TTL: the item of
a deleted tenant goes by itself, a live tenant's is rewritten at each sync."""

from __future__ import annotations

from mailproxy.dal.dynamo import DynamoDBClient, all_items, write_if
from mailproxy.dal.items import values
from mailproxy.dal.records import Record

SYNC_PK = "SYNC"
KEEP_SECONDS = 30 * 86400


class SyncState(Record):
    tenant_id: str
    last_sync_ts: int | None = None  # the last call the client answered 2xx (unix seconds)
    last_call_ts: int | None = None  # the last call tried, answered or not
    next_sync_after: int | None = None  # the client's do-not-disturb: no call before it
    requested_ms: int | None = None  # a run-now named this tenant (unix ms): sync it at the next run


class SyncStateStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def all(self) -> dict[str, SyncState]:
        """Every tenant's state, by tenant id (one partition: a Query, paginated)."""
        items = all_items(
            self._db,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=SYNC_PK),
            ConsistentRead=True,  # a run-now just written must be seen by the run it triggers
        )
        return {state.tenant_id: state for state in (SyncState.from_item(item) for item in items)}

    def synced(self, tenant_id: str, *, at: int, next_sync_after: int | None) -> None:
        """The client answered a call made at `at` with 2xx; `next_sync_after` as its reply set it (None:
        no do-not-disturb)."""
        named = {"tid": tenant_id, "at": at, "exp": at + KEEP_SECONDS}
        update = "SET tenant_id = :tid, last_sync_ts = :at, last_call_ts = :at, expires_at = :exp"
        if next_sync_after is None:
            update += " REMOVE next_sync_after"
        else:
            update += ", next_sync_after = :nsa"
            named["nsa"] = next_sync_after
        self._db.update_item(
            TableName=self._table,
            Key=self._key(tenant_id),
            UpdateExpression=update,
            ExpressionAttributeValues=values(**named),
        )

    def called(self, tenant_id: str, *, at: int) -> None:
        """A call was tried at `at` and not answered 2xx: the next periodic call waits its interval."""
        self._db.update_item(
            TableName=self._table,
            Key=self._key(tenant_id),
            UpdateExpression="SET tenant_id = :tid, last_call_ts = :at, expires_at = :exp",
            ExpressionAttributeValues=values(tid=tenant_id, at=at, exp=at + KEEP_SECONDS),
        )

    def request_sync(self, tenant_id: str, *, now_ms: int) -> None:
        """run-now for this tenant: its do-not-disturb ends and the next run calls it."""
        self._db.update_item(
            TableName=self._table,
            Key=self._key(tenant_id),
            UpdateExpression="SET tenant_id = :tid, requested_ms = :req, expires_at = :exp REMOVE next_sync_after",
            ExpressionAttributeValues=values(tid=tenant_id, req=now_ms, exp=now_ms // 1000 + KEEP_SECONDS),
        )

    def request_served(self, tenant_id: str, *, started_ms: int) -> bool:
        """A call that started at `started_ms` was answered: it served every run-now made before it. A
        run-now made after the call started stays (its condition fails), so the next run calls again."""
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key=self._key(tenant_id),
            UpdateExpression="REMOVE requested_ms",
            ConditionExpression="requested_ms <= :started",
            ExpressionAttributeValues=values(started=started_ms),
        ).held

    @staticmethod
    def _key(tenant_id: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": SYNC_PK}, "sk": {"S": tenant_id}}
