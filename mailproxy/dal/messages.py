"""Status items of messages: ingestion, the claim before sending, outcomes, the sweep, reports, listing."""

from __future__ import annotations

import base64
import heapq
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mailproxy.dal.contents import ContentStore
from mailproxy.dal.items import conditional_failed, from_item, to_item, values
from mailproxy.dal.keys import (
    BY_TENANT_INDEX,
    CONTENT_SK,
    DUE_INDEX,
    PENDING_REPORTS_INDEX,
    SHARDS,
    STATUS_SK,
    created_key,
    due_pk,
    message_pk,
    report_pk,
    report_sk,
    shard_of,
)
from mailproxy.models import MessageStatus

RETENTION_SECONDS = 30 * 24 * 3600  # ended and reported messages expire (TTL) after this
HISTORY_LIMIT = 12  # events kept on the status item: enough for a message's life, small enough for 1 WRU


def with_event(item: dict[str, Any], event: str, ts: int, **details: Any) -> list[dict[str, Any]]:
    """The item's history with one more event, oldest dropped beyond the limit."""
    entry = {"event": event, "ts": ts, **{k: v for k, v in details.items() if v is not None}}
    return [*item.get("history", []), entry][-HISTORY_LIMIT:]


@dataclass(frozen=True)
class NewMessage:
    tenant_id: str
    id: str
    account_id: str
    priority: int
    created_ms: int
    not_before: int | None
    batch_code: str | None
    message_id_header: str
    content: dict[str, Any]
    suspended: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.id)


def content_expiry(message: NewMessage, now: int) -> int | None:
    """A content lives as long as its message can still be sent: a suspended message, or one due after
    the retention would have run out, keeps its content without expiry until it is released or ends."""
    due = max(now, message.not_before or 0)
    if message.suspended or due > now + RETENTION_SECONDS // 2:
        return None
    return due + RETENTION_SECONDS


@dataclass(frozen=True)
class Outcome:
    """What the sender records after an attempt; exactly one of the three kinds."""

    status: MessageStatus
    ts: int
    error: str | None = None
    not_before: int | None = None  # deferred: the earliest next attempt
    reason: str | None = None  # deferred: why
    smtp_attempt: bool = True  # False when no SMTP transaction was tried (rate limit, missing account)


class MessageStore:
    def __init__(self, dynamodb: Any, table: str, contents: ContentStore) -> None:
        self._db = dynamodb
        self._table = table
        self.contents = contents

    def ping(self) -> None:
        """Raise the AWS error when the table cannot be reached (the /status probe)."""
        self._db.describe_table(TableName=self._table)

    # -- ingestion -------------------------------------------------------------------------------------
    def known_ids(self, tenant_id: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 100):
            keys = [
                {"pk": {"S": message_pk(tenant_id, i)}, "sk": {"S": STATUS_SK}} for i in unique[start : start + 100]
            ]
            pending: dict[str, Any] = {self._table: {"Keys": keys, "ProjectionExpression": "id"}}
            while pending:
                answer = self._db.batch_get_item(RequestItems=pending)
                found.update(item["id"]["S"] for item in answer["Responses"].get(self._table, []))
                pending = answer.get("UnprocessedKeys") or {}
        return found

    def put_batch(self, messages: list[NewMessage], *, now: int, enqueue_grace: int) -> list[NewMessage]:
        """Store new messages (content, then status); return those created. A known id is left untouched."""
        if not messages:
            return []
        known = set()
        for tenant_id in {m.tenant_id for m in messages}:
            known |= {
                (tenant_id, i) for i in self.known_ids(tenant_id, [m.id for m in messages if m.tenant_id == tenant_id])
            }
        fresh = [m for m in messages if m.key not in known]
        self.contents.put_items(
            [self.contents.item(m.tenant_id, m.id, m.content, expires_at=content_expiry(m, now)) for m in fresh]
        )
        return [m for m in fresh if self._create_status(m, now=now, enqueue_grace=enqueue_grace)]

    def _create_status(self, message: NewMessage, *, now: int, enqueue_grace: int) -> bool:
        # The sweep re-enqueues the message if its queue record never arrives (a crash after this write).
        due = max(now, message.not_before or 0) + enqueue_grace
        item = {
            "pk": message_pk(message.tenant_id, message.id),
            "sk": STATUS_SK,
            "id": message.id,
            "tenant_id": message.tenant_id,
            "account_id": message.account_id,
            "priority": message.priority,
            "status": MessageStatus.QUEUED.value,
            "created_ts": message.created_ms // 1000,
            "created_key": created_key(message.created_ms, message.id),
            "batch_code": message.batch_code,
            "message_id_header": message.message_id_header,
            "not_before": message.not_before,
            "claims": 0,
            "attempts": 0,
            "history": [{"event": "queued", "ts": message.created_ms // 1000}],
        }
        if message.suspended:
            item["suspended"] = True  # out of the sweep's index until activated
        else:
            item.update(due_pk=due_pk(shard_of(message.tenant_id, message.id)), due_ts=due)
        try:
            self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    # -- sending ---------------------------------------------------------------------------------------
    def claim(self, tenant_id: str, message_id: str, *, now: int, lease_seconds: int) -> dict[str, Any] | None:
        """queued/deferred (or sending with an expired lease) -> sending; None when not claimable now.
        The due time is left as it is (moving it would rewrite the sweep's index on every send): should
        this sender die, the sweep brings the message back once that time and the lease have passed."""
        lease_until = now + lease_seconds
        try:
            answer = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": STATUS_SK}},
                UpdateExpression=("SET #s = :sending, claims = claims + :one, lease_until = :lease, updated_ts = :now"),
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(not_before) OR not_before <= :now) "
                    "AND (#s IN (:queued, :deferred) OR (#s = :sending AND lease_until < :now)) "
                    "AND attribute_not_exists(suspended)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(
                    sending=MessageStatus.SENDING.value,
                    queued=MessageStatus.QUEUED.value,
                    deferred=MessageStatus.DEFERRED.value,
                    one=1,
                    lease=lease_until,
                    now=now,
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return None
            raise
        return from_item(answer["Attributes"])

    def record(self, claimed: dict[str, Any], outcome: Outcome) -> bool:
        """Write the outcome of a claimed message; False when the claim was lost (lease expired, re-claimed)."""
        names = {"#s": "status"}
        sets = [
            "#s = :status",
            "updated_ts = :ts",
            "rpt_pk = :rpk",
            "rpt_sk = :rsk",
            "rpt_seq = if_not_exists(rpt_seq, :zero) + :one",
            "outcomes = if_not_exists(outcomes, :zero) + :one",
            "history = :history",
        ]
        removes = ["lease_until"]
        named: dict[str, Any] = {
            "status": outcome.status.value,
            "ts": outcome.ts,
            "zero": 0,
            "one": 1,
            "rpk": report_pk(claimed["tenant_id"], shard_of(claimed["tenant_id"], claimed["id"])),
            "rsk": report_sk(outcome.ts * 1000, claimed["tenant_id"], claimed["id"]),
            "sending": MessageStatus.SENDING.value,
            "claims": claimed["claims"],
            "history": with_event(
                claimed,
                outcome.status.value,
                outcome.ts,
                reason=(outcome.error or outcome.reason or "")[:120] or None,
                next_ts=outcome.not_before if outcome.status is MessageStatus.DEFERRED else None,
            ),
        }
        if outcome.smtp_attempt:
            sets.append("attempts = attempts + :one")
        if outcome.status is MessageStatus.SENT:
            sets.append("sent_ts = :ts")
            removes += ["due_pk", "due_ts", "not_before"]
        elif outcome.status is MessageStatus.ERROR:
            sets += ["error_ts = :ts", "#e = :error"]
            names["#e"] = "error"
            named["error"] = (outcome.error or "error")[:500]
            removes += ["due_pk", "due_ts", "not_before"]
        else:
            not_before = outcome.not_before or outcome.ts
            sets += ["deferred_ts = :nb", "not_before = :nb", "deferred_reason = :reason", "due_ts = :due"]
            named.update(nb=not_before, reason=(outcome.reason or "deferred")[:300], due=not_before + 60)
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": claimed["pk"]}, "sk": {"S": STATUS_SK}},
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression="#s = :sending AND claims = :claims",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values(**named),
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    def get(self, tenant_id: str, message_id: str) -> dict[str, Any] | None:
        answer = self._db.get_item(
            TableName=self._table,
            Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": STATUS_SK}},
            ConsistentRead=True,
        )
        return from_item(answer["Item"]) if "Item" in answer else None

    # -- the sweep -------------------------------------------------------------------------------------
    def due(self, now: int, limit: int = 500) -> list[dict[str, Any]]:
        """Non-final messages whose due time has come (their queue record may be lost), oldest first."""
        found: list[dict[str, Any]] = []
        for shard in range(SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": DUE_INDEX,
                "KeyConditionExpression": "due_pk = :dpk AND due_ts <= :now",
                "ExpressionAttributeValues": values(dpk=due_pk(shard), now=now),
                "Limit": limit,
            }
            answer = self._db.query(**kwargs)
            found.extend(from_item(i) for i in answer["Items"])
        found.sort(key=lambda item: item["due_ts"])
        return found[:limit]

    def postpone(self, item: dict[str, Any], until: int) -> bool:
        """Move a swept message's due time, so the next sweep does not enqueue it again meanwhile."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
                UpdateExpression="SET due_ts = :until",
                ConditionExpression="due_ts = :seen",
                ExpressionAttributeValues=values(until=until, seen=item["due_ts"]),
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    # -- reports ---------------------------------------------------------------------------------------
    def pending_reports(self, limit: int, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Outcomes not yet acknowledged by the client, oldest first, read from the sparse index.

        With `tenant_id` (what the reporter does): that tenant's partitions only, so that one tenant's
        backlog never fills the head of another's read. Without it: every tenant's, by a scan of the
        sparse index (tools and tests; its cost grows with the whole outbox)."""
        if tenant_id is None:
            return self._all_pending_reports(limit)
        per_shard = []
        for shard in range(SHARDS):
            answer = self._db.query(
                TableName=self._table,
                IndexName=PENDING_REPORTS_INDEX,
                KeyConditionExpression="rpt_pk = :rpk",
                ExpressionAttributeValues=values(rpk=report_pk(tenant_id, shard)),
                Limit=limit,
            )
            per_shard.append([from_item(i) for i in answer["Items"]])
        merged = heapq.merge(*per_shard, key=lambda item: item["rpt_sk"])
        return [item for _, item in zip(range(limit), merged, strict=False)]

    def _all_pending_reports(self, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "IndexName": PENDING_REPORTS_INDEX}
        while True:
            answer = self._db.scan(**kwargs)
            found.extend(from_item(i) for i in answer["Items"])
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        found.sort(key=lambda item: item["rpt_sk"])
        return found[:limit]

    def mark_reported(self, item: dict[str, Any], now: int) -> bool:
        """Take a report out of the outbox, unless the message changed since it was read."""
        final = MessageStatus(item["status"]).is_final
        # Appended, not rewritten from the image read: the outbox image may be older than the item.
        history = "history = list_append(if_not_exists(history, :none), :event)"
        update = f"SET reported_ts = :now, {history} REMOVE rpt_pk, rpt_sk"
        named: dict[str, Any] = {
            "now": now,
            "seq": item["rpt_seq"],
            "none": [],
            "event": [{"event": "reported", "ts": now, "status": item["status"]}],
        }
        if final:
            update = f"SET reported_ts = :now, {history}, expires_at = :exp REMOVE rpt_pk, rpt_sk"
            named["exp"] = now + RETENTION_SECONDS
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
                UpdateExpression=update,
                ConditionExpression="rpt_seq = :seq",
                ExpressionAttributeValues=values(**named),
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    # -- campaign control ------------------------------------------------------------------------------
    def delete_unsent(self, tenant_id: str, message_id: str) -> str:
        """Remove a message not yet sent: "removed", "not_found", or its status when it cannot be removed."""
        try:
            self._db.delete_item(
                TableName=self._table,
                Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": STATUS_SK}},
                ConditionExpression="attribute_exists(pk) AND #s IN (:queued, :deferred)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(
                    queued=MessageStatus.QUEUED.value, deferred=MessageStatus.DEFERRED.value
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            old: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            return str(old["status"]["S"]) if old else "not_found"
        self._db.delete_item(
            TableName=self._table, Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": CONTENT_SK}}
        )
        return "removed"

    def tenant_messages(self, tenant_id: str, *, created_before_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """Every status item of a tenant, oldest first (keys from the tenant index, then the items)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_TENANT_INDEX,
            "KeyConditionExpression": "tenant_id = :t",
            "ExpressionAttributeValues": values(t=tenant_id),
        }
        if created_before_ms is not None:
            kwargs["KeyConditionExpression"] += " AND created_key < :before"
            kwargs["ExpressionAttributeValues"].update(values(before=f"{created_before_ms:013d}"))
        while True:
            answer = self._db.query(**kwargs)
            keys = [{"pk": i["pk"], "sk": i["sk"]} for i in answer["Items"]]
            items = self._get_many(keys)
            yield from (items[k["pk"]["S"]] for k in keys if k["pk"]["S"] in items)
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def set_suspended(self, item: dict[str, Any], suspended: bool, *, now: int) -> bool:
        """Hold a message back (out of the sweep, unclaimable) or release it; False if it moved on meanwhile."""
        named: dict[str, Any]
        if suspended:
            update, named = "SET suspended = :yes REMOVE due_pk, due_ts", {"yes": True}
        else:
            update = "SET due_pk = :dpk, due_ts = :due REMOVE suspended"
            named = {"dpk": due_pk(shard_of(item["tenant_id"], item["id"])), "due": now + 900}
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
                UpdateExpression=update,
                ConditionExpression="#s IN (:queued, :deferred)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(
                    queued=MessageStatus.QUEUED.value, deferred=MessageStatus.DEFERRED.value, **named
                ),
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        # A suspension has no end: the content must not expire meanwhile (docs/design.md).
        if suspended:
            self.contents.hold(item["tenant_id"], item["id"])
        else:
            self.contents.release(item["tenant_id"], item["id"], expires_at=now + RETENTION_SECONDS)
        return True

    def delete_acknowledged(self, items: list[dict[str, Any]]) -> int:
        """Delete status and content of finished messages whose final outcome the client acknowledged
        (cleanup). Each status item is deleted only if it is still final and out of the report outbox,
        so a final report owed since the read is kept with its message. Returns how many were removed."""
        removed = 0
        for item in items:
            try:
                self._db.delete_item(
                    TableName=self._table,
                    Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
                    ConditionExpression=(
                        "#s IN (:sent, :error) AND attribute_exists(reported_ts) AND attribute_not_exists(rpt_pk)"
                    ),
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues=values(sent=MessageStatus.SENT.value, error=MessageStatus.ERROR.value),
                )
            except ClientError as exc:
                if conditional_failed(exc):
                    continue
                raise
            self._db.delete_item(TableName=self._table, Key={"pk": {"S": item["pk"]}, "sk": {"S": CONTENT_SK}})
            removed += 1
        return removed

    # -- reading ---------------------------------------------------------------------------------------
    def list_page(
        self,
        tenant_id: str,
        *,
        status: str | None,
        account_id: str | None,
        limit: int,
        cursor: str | None,
        statuses: set[str] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. Reads keys from the tenant index and the small status items they name."""
        start_key = decode_cursor(cursor)
        if start_key and start_key["tenant_id"]["S"] != tenant_id:
            raise BadCursor("cursor: belongs to another query")
        collected: list[dict[str, Any]] = []
        for _ in range(20):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": BY_TENANT_INDEX,
                "KeyConditionExpression": "tenant_id = :t",
                "ExpressionAttributeValues": values(t=tenant_id),
                "ScanIndexForward": False,
                "Limit": limit - len(collected),
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            answer = self._db.query(**kwargs)
            keys = [{"pk": i["pk"], "sk": i["sk"]} for i in answer["Items"]]
            items = self._get_many(keys)
            for key in keys:
                item = items.get(key["pk"]["S"])
                if (
                    item
                    and (status is None or item["status"] == status)
                    and (statuses is None or item["status"] in statuses)
                    and (account_id is None or item["account_id"] == account_id)
                ):
                    collected.append(item)
            start_key = answer.get("LastEvaluatedKey")
            if not start_key or len(collected) >= limit:
                break
        return collected, encode_cursor(start_key)

    def _get_many(self, keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self._table: {"Keys": keys[start : start + 100]}}
            while pending:
                answer = self._db.batch_get_item(RequestItems=pending)
                for raw in answer["Responses"].get(self._table, []):
                    item = from_item(raw)
                    found[item["pk"]] = item
                pending = answer.get("UnprocessedKeys") or {}
        return found

    def status_counts(self) -> Counter[tuple[str, str, str]]:
        """(tenant, account, status) -> count, read from every status item: for /metrics scrapers."""
        counts: Counter[tuple[str, str, str]] = Counter()
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "ProjectionExpression": "tenant_id, account_id, #s",
            "FilterExpression": "sk = :sk",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": values(sk=STATUS_SK),
        }
        while True:
            answer = self._db.scan(**kwargs)
            for raw in answer["Items"]:
                item = from_item(raw)
                counts[(item["tenant_id"], item["account_id"], item["status"])] += 1
            if "LastEvaluatedKey" not in answer:
                return counts
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


class BadCursor(ValueError):
    pass


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
