"""Status items of messages: ingestion and the transitions of a message's life (claim before sending,
outcome, suspension, deletion). The due index, the report outbox and the queries have their own modules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from mailproxy.dal.contents import ContentStore
from mailproxy.dal.dynamo import DynamoDBClient, batch_get, write_if
from mailproxy.dal.items import from_item, to_item, values
from mailproxy.dal.keys import (
    CONTENT_SK,
    STATUS_SK,
    created_key,
    due_pk,
    message_pk,
    report_pk,
    report_sk,
    shard_of,
)
from mailproxy.dal.records import ClaimedMessage
from mailproxy.models import MessageStatus

RETENTION_SECONDS = 30 * 24 * 3600  # ended and reported messages expire (TTL) after this
HOLD_SECONDS = 300  # a message being replaced cannot be claimed for this long (`MessageStore.replace`)
HISTORY_LIMIT = 12  # events kept on the status item: enough for a message's life, small enough for 1 WRU


def with_event(history: list[dict[str, Any]], event: str, ts: int, **details: Any) -> list[dict[str, Any]]:
    """The history with one more event, oldest dropped beyond the limit."""
    entry = {"event": event, "ts": ts, **{k: v for k, v in details.items() if v is not None}}
    return [*history, entry][-HISTORY_LIMIT:]


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


@dataclass(frozen=True)
class Stored:
    """What `put_batch` wrote: new ids, and known never-claimed ids replaced."""

    created: list[NewMessage]
    replaced: list[NewMessage]

    @property
    def queued(self) -> list[NewMessage]:
        return [*self.created, *self.replaced]


def never_claimed(item: dict[str, Any]) -> bool:
    """Queued and no sender ever took it (a claim counts in `claims`, before any attempt or deferral): the
    only state in which re-submitting its id replaces it."""
    return item.get("status") == MessageStatus.QUEUED.value and int(item.get("claims") or 0) == 0


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
    def __init__(self, dynamodb: DynamoDBClient, table: str, contents: ContentStore) -> None:
        self._db = dynamodb
        self._table = table
        self.contents = contents

    def ping(self) -> None:
        """Raise the AWS error when the table cannot be reached (the /status probe)."""
        self._db.describe_table(TableName=self._table)

    # -- ingestion -------------------------------------------------------------------------------------
    def _known(self, messages: list[NewMessage]) -> dict[tuple[str, str], dict[str, Any]]:
        keys = [{"pk": {"S": message_pk(m.tenant_id, m.id)}, "sk": {"S": STATUS_SK}} for m in messages]
        return {(i["tenant_id"], i["id"]): i for i in batch_get(self._db, self._table, keys, consistent=True)}

    def put_batch(self, messages: list[NewMessage], *, now: int, enqueue_grace: int) -> Stored:
        """Store new messages (content, then status); return those created or replaced. A known id that was
        never claimed (`never_claimed`) is replaced (`replace`); any other known id is left untouched."""
        if not messages:
            return Stored([], [])
        known = self._known(messages)
        fresh = [m for m in messages if m.key not in known]
        self.contents.put_items(
            [self.contents.item(m.tenant_id, m.id, m.content, expires_at=content_expiry(m, now)) for m in fresh]
        )
        created = [m for m in fresh if self._create_status(m, now=now, enqueue_grace=enqueue_grace)]
        replaced = [
            m
            for m in messages
            if m.key in known
            and never_claimed(known[m.key])
            and self.replace(m, known[m.key], now=now, enqueue_grace=enqueue_grace)
        ]
        return Stored(created, replaced)

    def replace(self, message: NewMessage, current: dict[str, Any], *, now: int, enqueue_grace: int) -> bool:
        """Replace a never-claimed message (content and schedule); False when a sender claimed it first.
        1. hold it: `not_before` moved past now, so that no claim can start (and read a half-written content)
           while it is replaced; the write is conditional on it being still queued and never claimed;
        2. write the new content; 3. write the new status, conditional on the hold still being ours.
        A crash after 1 leaves the message held for HOLD_SECONDS at most, then sendable again as it was or as
        its new content. A queue record of the old version finds the new status item (the claim reads it)."""
        token = uuid.uuid4().hex
        held = write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": message_pk(message.tenant_id, message.id)}, "sk": {"S": STATUS_SK}},
            UpdateExpression="SET not_before = :hold, replace_token = :token",
            ConditionExpression="#s = :queued AND claims = :zero",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values(
                hold=max(int(current.get("not_before") or 0), now + HOLD_SECONDS),
                token=token,
                queued=MessageStatus.QUEUED.value,
                zero=0,
            ),
        ).held
        if not held:
            return False
        self.contents.put_items(
            [
                self.contents.item(
                    message.tenant_id, message.id, message.content, expires_at=content_expiry(message, now)
                )
            ]
        )
        return write_if(
            self._db.put_item,
            TableName=self._table,
            Item=to_item(self._status_item(message, now=now, enqueue_grace=enqueue_grace)),
            ConditionExpression="#s = :queued AND claims = :zero AND replace_token = :token",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values(token=token, queued=MessageStatus.QUEUED.value, zero=0),
        ).held

    def _status_item(self, message: NewMessage, *, now: int, enqueue_grace: int) -> dict[str, Any]:
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
        return item

    def _create_status(self, message: NewMessage, *, now: int, enqueue_grace: int) -> bool:
        return write_if(
            self._db.put_item,
            TableName=self._table,
            Item=to_item(self._status_item(message, now=now, enqueue_grace=enqueue_grace)),
            ConditionExpression="attribute_not_exists(pk)",
        ).held

    # -- sending ---------------------------------------------------------------------------------------
    def claim(self, tenant_id: str, message_id: str, *, now: int, lease_seconds: int) -> ClaimedMessage | None:
        """queued/deferred (or sending with an expired lease) -> sending; None when not claimable now.
        The due time is left as it is (moving it would rewrite the sweep's index on every send): should
        this sender die, the sweep brings the message back once that time and the lease have passed."""
        lease_until = now + lease_seconds
        written = write_if(
            self._db.update_item,
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
        return ClaimedMessage.from_item(written.attributes) if written.held else None

    def record(self, claimed: ClaimedMessage, outcome: Outcome) -> bool:
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
            "rpk": report_pk(claimed.tenant_id, shard_of(claimed.tenant_id, claimed.id)),
            "rsk": report_sk(outcome.ts * 1000, claimed.tenant_id, claimed.id),
            "sending": MessageStatus.SENDING.value,
            "claims": claimed.claims,
            "history": with_event(
                claimed.history,
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
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": claimed.pk}, "sk": {"S": STATUS_SK}},
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression="#s = :sending AND claims = :claims",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values(**named),
        ).held

    def get(self, tenant_id: str, message_id: str) -> dict[str, Any] | None:
        answer = self._db.get_item(
            TableName=self._table,
            Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": STATUS_SK}},
            ConsistentRead=True,
        )
        return from_item(answer["Item"]) if "Item" in answer else None

    # -- campaign control ------------------------------------------------------------------------------
    def delete_unsent(self, tenant_id: str, message_id: str) -> str:
        """Remove a message not yet sent: "removed", "not_found", or its status when it cannot be removed."""
        deleted = write_if(
            self._db.delete_item,
            TableName=self._table,
            Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": STATUS_SK}},
            ConditionExpression="attribute_exists(pk) AND #s IN (:queued, :deferred)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values(queued=MessageStatus.QUEUED.value, deferred=MessageStatus.DEFERRED.value),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not deleted.held:
            return str(deleted.attributes["status"]) if deleted.attributes else "not_found"
        self._db.delete_item(
            TableName=self._table, Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": CONTENT_SK}}
        )
        return "removed"

    def set_suspended(self, item: dict[str, Any], suspended: bool, *, now: int) -> bool:
        """Hold a message back (out of the sweep, unclaimable) or release it; False if it moved on meanwhile."""
        named: dict[str, Any]
        if suspended:
            update, named = "SET suspended = :yes REMOVE due_pk, due_ts", {"yes": True}
        else:
            update = "SET due_pk = :dpk, due_ts = :due REMOVE suspended"
            named = {"dpk": due_pk(shard_of(item["tenant_id"], item["id"])), "due": now + 900}
        moved = write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
            UpdateExpression=update,
            ConditionExpression="#s IN (:queued, :deferred)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values(
                queued=MessageStatus.QUEUED.value, deferred=MessageStatus.DEFERRED.value, **named
            ),
        )
        if not moved.held:
            return False
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
            deleted = write_if(
                self._db.delete_item,
                TableName=self._table,
                Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
                ConditionExpression=(
                    "#s IN (:sent, :error) AND attribute_exists(reported_ts) AND attribute_not_exists(rpt_pk)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(sent=MessageStatus.SENT.value, error=MessageStatus.ERROR.value),
            )
            if not deleted.held:
                continue
            self._db.delete_item(TableName=self._table, Key={"pk": {"S": item["pk"]}, "sk": {"S": CONTENT_SK}})
            removed += 1
        return removed
