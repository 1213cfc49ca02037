"""Status items of messages: ingestion and the transitions of a message's life (claim before sending,
outcome, suspension, deletion). The due index, the report outbox and the queries have their own modules."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mailproxy.dal.contents import ContentStore
from mailproxy.dal.dynamo import DynamoDBClient, batch_get, write_if
from mailproxy.dal.items import from_item, to_item, values
from mailproxy.dal.keys import CONTENT_SK, STATUS_SK, due_pk, due_shard, message_pk
from mailproxy.dal.records import ClaimedMessage
from mailproxy.dal.tenant_index import TenantIndex
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
    # On the status item, not in the content: GET /messages and every report entry show them.
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None

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
class Claim:
    """The answer of `MessageStore.attempt_claim`: the claimed message, or None, whether a status item is
    stored and whether a live claim of another sender holds it."""

    message: ClaimedMessage | None
    stored: bool = True
    in_flight: bool = False


@dataclass(frozen=True)
class Outcome:
    """What the sender records after an attempt; exactly one of the three kinds."""

    status: MessageStatus
    ts: int
    error: str | None = None
    not_before: int | None = None  # deferred: the earliest next attempt
    reason: str | None = None  # deferred: why
    smtp_attempt: bool = True  # False when no SMTP transaction was tried (rate limit, missing account)
    sandbox: bool = False  # sent by a sandbox account: built, recorded, delivered to nobody


class MessageStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, contents: ContentStore) -> None:
        self._db = dynamodb
        self._table = table
        self.contents = contents
        self.index = TenantIndex(dynamodb, table)

    def ping(self) -> None:
        """Raise the AWS error when the table cannot be reached (the /status probe)."""
        self._db.describe_table(TableName=self._table)

    # -- ingestion -------------------------------------------------------------------------------------
    def known(self, messages: list[NewMessage]) -> dict[tuple[str, str], dict[str, Any]]:
        """The status items already stored under the messages' ids (strongly consistent)."""
        if not messages:
            return {}
        keys = [{"pk": {"S": message_pk(m.tenant_id, m.id)}, "sk": {"S": STATUS_SK}} for m in messages]
        return {(i["tenant_id"], i["id"]): i for i in batch_get(self._db, self._table, keys, consistent=True)}

    def put_batch(
        self,
        messages: list[NewMessage],
        *,
        now: int,
        enqueue_grace: int,
        known: dict[tuple[str, str], dict[str, Any]] | None = None,
        enqueued: Collection[tuple[str, str]] = (),
    ) -> Stored:
        """Store new messages (content, then status); return those created or replaced. A known id that was
        never claimed (`never_claimed`) is replaced (`replace`); any other known id is left untouched.
        `known`: what `known` answered for these messages, if the caller read it already. A new message in
        `enqueued` has its queue record sent already: its status item gets no entry in the due index."""
        if not messages:
            return Stored([], [])
        known = self.known(messages) if known is None else known
        fresh = [m for m in messages if m.key not in known]
        listed_in = self._list(fresh, now=now)
        self.contents.put_items(
            [self.contents.item(m.tenant_id, m.id, m.content, expires_at=content_expiry(m, now)) for m in fresh]
        )
        created = [
            m
            for m in fresh
            if self._create_status(
                m, now=now, enqueue_grace=enqueue_grace, due=m.key not in enqueued, listed_in=listed_in[m.tenant_id]
            )
        ]
        replaced = [
            m
            for m in messages
            if m.key in known
            and never_claimed(known[m.key])
            and self.replace(m, known[m.key], now=now, enqueue_grace=enqueue_grace)
        ]
        return Stored(created, replaced)

    def _list(self, fresh: list[NewMessage], *, now: int) -> dict[str, str]:
        """One listing item per tenant naming the new messages, written before them; its reference by tenant.
        It expires well after its messages can (`content_expiry`); a message that may outlive that (suspended,
        scheduled far ahead) keeps its listing item until a walk finds it empty (`MessageQueries.tenant_page`)."""
        by_tenant: dict[str, list[NewMessage]] = {}
        for message in fresh:
            by_tenant.setdefault(message.tenant_id, []).append(message)
        references = {}
        for tenant_id, group in by_tenant.items():
            expiries = [content_expiry(m, now) for m in group]
            expires_at = None if None in expiries else max(e or 0 for e in expiries) + 2 * RETENTION_SECONDS
            references[tenant_id] = self.index.add(
                tenant_id, [m.id for m in group], created_ms=group[0].created_ms, expires_at=expires_at
            )
        return references

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
            Item=to_item(
                self._status_item(
                    message, now=now, enqueue_grace=enqueue_grace, due=True, listed_in=current.get("listed_in")
                )
            ),
            ConditionExpression="#s = :queued AND claims = :zero AND replace_token = :token",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values(token=token, queued=MessageStatus.QUEUED.value, zero=0),
        ).held

    def _status_item(
        self, message: NewMessage, *, now: int, enqueue_grace: int, due: bool, listed_in: str | None
    ) -> dict[str, Any]:
        """`due`: the message has no queue record yet (scheduled beyond the SQS delay, its enqueue failed) or
        may lose it (a replaced message's record can arrive while it is held): the sweep enqueues it then.
        A message enqueued before this write needs no entry (docs/reliability.md, "Lost enqueue")."""
        item = {
            "pk": message_pk(message.tenant_id, message.id),
            "sk": STATUS_SK,
            "id": message.id,
            "tenant_id": message.tenant_id,
            "account_id": message.account_id,
            "priority": message.priority,
            "status": MessageStatus.QUEUED.value,
            "created_ts": message.created_ms // 1000,
            "listed_in": listed_in,  # the tenant's listing item that names it (mailproxy/dal/tenant_index.py)
            "batch_code": message.batch_code,
            "message_id_header": message.message_id_header,
            "not_before": message.not_before,
            "claims": 0,
            "attempts": 0,
            "history": [{"event": "queued", "ts": message.created_ms // 1000}],
        }
        if message.metadata:
            item["metadata"] = message.metadata
        if message.tags:
            item["tags"] = message.tags
        if message.suspended:
            item["suspended"] = True  # out of the sweep's index until activated
        elif due:
            item.update(
                due_pk=due_pk(due_shard(message.tenant_id, message.id)),
                due_ts=max(now, message.not_before or 0) + enqueue_grace,
            )
        return item

    def _create_status(self, message: NewMessage, *, now: int, enqueue_grace: int, due: bool, listed_in: str) -> bool:
        return write_if(
            self._db.put_item,
            TableName=self._table,
            Item=to_item(
                self._status_item(message, now=now, enqueue_grace=enqueue_grace, due=due, listed_in=listed_in)
            ),
            ConditionExpression="attribute_not_exists(pk)",
        ).held

    # -- sending ---------------------------------------------------------------------------------------
    def claim(self, tenant_id: str, message_id: str, *, now: int, lease_seconds: int) -> ClaimedMessage | None:
        """The claimed message, or None when it is not claimable now (`attempt_claim`)."""
        return self.attempt_claim(tenant_id, message_id, now=now, lease_seconds=lease_seconds).message

    def attempt_claim(self, tenant_id: str, message_id: str, *, now: int, lease_seconds: int) -> Claim:
        """queued/deferred (or sending with an expired lease) -> sending. A refused claim says whether the
        status item exists at all (free: the failed condition returns the old item), which the sender needs
        for a queue record that arrived before its message was written (`mailproxy.logic.orphans`).
        The due entry, if any, is left as it is (moving it would rewrite the sweep's index on every send):
        should this sender die, SQS delivers the record again after its visibility timeout, which outlasts
        the lease (docs/reliability.md)."""
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
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        if not written.held:
            old = written.attributes
            in_flight = old.get("status") == MessageStatus.SENDING.value and int(old.get("lease_until") or 0) >= now
            return Claim(None, stored=bool(old), in_flight=in_flight)
        claimed = ClaimedMessage.from_item(written.attributes)
        if claimed.claims - 1 > claimed.outcomes and "due_pk" not in written.attributes:
            self._watch_after_crash(claimed, lease_until)
        return Claim(claimed)

    def _watch_after_crash(self, claimed: ClaimedMessage, lease_until: int) -> None:
        """A re-claim after a claim that never recorded its outcome (a crashed or timed-out sender): from now
        on the sweep watches the message (due at this lease's end), so that a message killing every sender
        gets fresh queue records until its claims end it, instead of one record reaching the queue's receive
        limit. A write on the crash path only; the outcome removes or moves the entry as usual."""
        write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": claimed.pk}, "sk": {"S": STATUS_SK}},
            UpdateExpression="SET due_pk = :dpk, due_ts = :due",
            ConditionExpression="#s = :sending AND claims = :claims",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values(
                dpk=due_pk(due_shard(claimed.tenant_id, claimed.id)),
                due=lease_until + 1,
                sending=MessageStatus.SENDING.value,
                claims=claimed.claims,
            ),
        )

    def record(self, claimed: ClaimedMessage, outcome: Outcome) -> bool:
        """Write the outcome of a claimed message; False when the claim was lost (lease expired, re-claimed)."""
        names = {"#s": "status"}
        sets = [
            "#s = :status",
            "updated_ts = :ts",
            # No outbox keys: the stream reporter posts the outcome (and puts it in the outbox only if that
            # fails); an item already in the outbox keeps its keys, so the outbox carries the latest state.
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
        if outcome.sandbox:
            sets.append("sandbox = :sandbox")
            named["sandbox"] = True
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
            # A message enqueued at once has no due entry yet: the sweep is the net of its re-enqueue.
            sets += [
                "deferred_ts = :nb",
                "not_before = :nb",
                "deferred_reason = :reason",
                "due_pk = :dpk",
                "due_ts = :due",
            ]
            named.update(
                nb=not_before,
                reason=(outcome.reason or "deferred")[:300],
                dpk=due_pk(due_shard(claimed.tenant_id, claimed.id)),
                due=not_before + 60,
            )
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
            named = {"dpk": due_pk(due_shard(item["tenant_id"], item["id"])), "due": now + 900}
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

    def delete_acknowledged(self, items: list[dict[str, Any]], *, settled_before: int) -> int:
        """Delete status and content of finished messages whose final outcome the client acknowledged
        (cleanup). Each status item is deleted only if it still is acknowledged by the rule of
        `mailproxy.logic.reports.reported_at` (final, out of the outbox, and this outcome marked reported
        or older than `settled_before`), so a final report owed since the read is kept with its message.
        Returns how many were removed."""
        removed = 0
        for item in items:
            deleted = write_if(
                self._db.delete_item,
                TableName=self._table,
                Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
                ConditionExpression=(
                    "#s IN (:sent, :error) AND attribute_not_exists(rpt_pk)"
                    " AND (reported_seq = rpt_seq OR updated_ts < :settled)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(
                    sent=MessageStatus.SENT.value, error=MessageStatus.ERROR.value, settled=settled_before
                ),
            )
            if not deleted.held:
                continue
            self._db.delete_item(TableName=self._table, Key={"pk": {"S": item["pk"]}, "sk": {"S": CONTENT_SK}})
            removed += 1
        return removed

    def record_bounce(
        self,
        tenant_id: str,
        message_id: str,
        *,
        event: str,
        fields: dict[str, Any],
        notice_id: str,
        report_keys: tuple[str, str],
        now: int,
    ) -> bool:
        """Record what a bounce, complaint or PEC receipt says about a sent message (mailproxy/logic/bounces):
        its `fields`, an `event` in the history, and the message in the report outbox (`report_keys`:
        rpt_pk, rpt_sk) as a new outcome. Once per notice: False when the message does not exist or
        `notice_id` was recorded before (a mail polled again, a run that died before flagging it)."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        named: dict[str, Any] = {f"f{i}": value for i, value in enumerate(fields.values())}
        sets = [f"#f{i} = :f{i}" for i in range(len(fields))] + [
            "history = list_append(if_not_exists(history, :none), :event)",
            "rpt_seq = if_not_exists(rpt_seq, :zero) + :one",
            "rpt_pk = if_not_exists(rpt_pk, :rpk)",
            "rpt_sk = if_not_exists(rpt_sk, :rsk)",
            "updated_ts = :now",
        ]
        named.update(
            none=[],
            event=[{"event": event, "ts": now}],
            zero=0,
            one=1,
            rpk=report_keys[0],
            rsk=report_keys[1],
            now=now,
            notice={notice_id},
        )
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": STATUS_SK}},
            UpdateExpression=f"SET {', '.join(sets)} ADD notice_ids :notice",
            ConditionExpression="attribute_exists(pk) AND NOT contains(notice_ids, :notice_id)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values(notice_id=notice_id, **named),
        ).held
