"""Per-tenant state of the report sync protocol (docs/tenants.md, "The client's reply"): when the proxy last
reached the tenant's endpoint, the client's do-not-disturb (`next_sync_after`) and a pending run-now.

One item per tenant in the config table (`pk = SYNC`, `sk = <tenant id>`), apart from the tenant item, so
that the reporter's writes never race an edit of the tenant. Every write renews the item's TTL: the item of
a deleted tenant goes by itself, a live tenant's is rewritten at each sync.

The item also holds the tenant's post lease: the stream reporter (several shards at once) and the scheduled
reporter post to the same endpoint, and a reply's `next_sync_after` must stop every later call, so each POST
first takes the lease, on the condition that nobody holds it and the client's quiet time is over, and the
write that keeps the reply releases it. A poster that dies holding it loses it when `post_until` passes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PostLease:
    """The right to POST to one tenant's endpoint now; `state` is the sync state the lease found."""

    tenant_id: str
    token: str
    state: SyncState


@dataclass(frozen=True)
class LeaseRefused:
    quiet: bool  # True: the client's do-not-disturb holds; False: another poster holds the lease
    state: SyncState


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

    def take_post_lease(self, tenant_id: str, *, now: float, seconds: float) -> PostLease | LeaseRefused:
        """The lease for one POST, held at most `seconds` (the POST's timeout and a margin)."""
        token = uuid.uuid4().hex
        written = write_if(
            self._db.update_item,
            TableName=self._table,
            Key=self._key(tenant_id),
            UpdateExpression="SET tenant_id = :tid, post_token = :token, post_until = :until, expires_at = :exp",
            ConditionExpression=(
                "(attribute_not_exists(post_until) OR post_until < :now) "
                "AND (attribute_not_exists(next_sync_after) OR next_sync_after <= :now)"
            ),
            ExpressionAttributeValues=values(
                tid=tenant_id, token=token, until=now + seconds, now=now, exp=int(now) + KEEP_SECONDS
            ),
            ReturnValues="ALL_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        state = SyncState.from_item({**written.attributes, "tenant_id": tenant_id})
        if written.held:
            return PostLease(tenant_id, token, state)
        quiet = state.next_sync_after is not None and now < state.next_sync_after
        return LeaseRefused(quiet=quiet, state=state)

    def synced(self, lease: PostLease, *, at: int, next_sync_after: int | None) -> None:
        """The client answered the lease's call, made at `at`, with 2xx; `next_sync_after` as its reply set it
        (None: none asked; an earlier one is never removed here, since it has passed or a run-now lifted it)."""
        named = {"tid": lease.tenant_id, "at": at, "exp": at + KEEP_SECONDS}
        update = "SET tenant_id = :tid, last_sync_ts = :at, last_call_ts = :at, expires_at = :exp"
        if next_sync_after is not None:
            update += ", next_sync_after = :nsa"
            named["nsa"] = next_sync_after
        self._release(lease, update, named)

    def called(self, lease: PostLease, *, at: int) -> None:
        """The lease's call was tried at `at` and not answered 2xx: the next periodic call waits its interval."""
        update = "SET tenant_id = :tid, last_call_ts = :at, expires_at = :exp"
        self._release(lease, update, {"tid": lease.tenant_id, "at": at, "exp": at + KEEP_SECONDS})

    def release(self, lease: PostLease) -> None:
        """Give the lease back with nothing to keep (the POST was not made)."""
        self._release(lease, "SET tenant_id = :tid", {"tid": lease.tenant_id})

    def _release(self, lease: PostLease, update: str, named: dict[str, object]) -> None:
        """`update` with the lease given back; if the lease ran out and another poster holds it now, `update`
        alone (what the reply said is still kept)."""
        released = write_if(
            self._db.update_item,
            TableName=self._table,
            Key=self._key(lease.tenant_id),
            UpdateExpression=f"{update} REMOVE post_token, post_until",
            ConditionExpression="post_token = :token",
            ExpressionAttributeValues=values(**named, token=lease.token),
        ).held
        if not released:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(lease.tenant_id),
                UpdateExpression=update,
                ExpressionAttributeValues=values(**named),
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
