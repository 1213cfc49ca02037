"""Where each polled IMAP mailbox got to (`pk = MAILBOX`, `sk = <mailbox key>`): its UIDVALIDITY, the last
UID handled and the last poll, so that each mail is read once and a mailbox is polled at its own interval;
and the PEC messages still waiting for their acceptance receipt (`pk = PECWAIT#<tenant>`,
`sk = <sent ts, 10 digits>#<message id>`), which the poller reads oldest first with one Query per tenant,
never a scan; and each sent PEC message's Message-ID (`pk = PECREF#<tenant>`, `sk = <Message-ID>`, expiring),
by which a receipt that quotes no X-Genro-Mail-ID finds it."""

from __future__ import annotations

from mailproxy.dal.dynamo import DynamoDBClient, all_items, write_if
from mailproxy.dal.items import from_item, values
from mailproxy.dal.records import Record

MAILBOX_PK = "MAILBOX"
# How long a sent PEC message can be found by its Message-ID: delivery receipts come within hours; a
# non-delivery (mancata consegna) within a day or so of the provider's retries.
PEC_REFERENCE_SECONDS = 30 * 86400


class MailboxState(Record):
    key: str
    uidvalidity: int | None = None
    last_uid: int = 0
    last_poll_ts: int | None = None


def pec_wait_pk(tenant_id: str) -> str:
    return f"PECWAIT#{tenant_id}"


def pec_reference_pk(tenant_id: str) -> str:
    return f"PECREF#{tenant_id}"


def pec_wait_sk(sent_ts: int, message_id: str) -> str:
    return f"{sent_ts:010d}#{message_id}"


class MailboxStateStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def get(self, key: str) -> MailboxState:
        answer = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": MAILBOX_PK}, "sk": {"S": key}}, ConsistentRead=True
        )
        if "Item" not in answer:
            return MailboxState(key=key)
        return MailboxState.from_item({**from_item(answer["Item"]), "key": key})

    def advance(self, key: str, *, uidvalidity: int, last_uid: int, now: int) -> None:
        """Remember the last UID handled; never moves back within one UIDVALIDITY (two overlapping runs)."""
        write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": MAILBOX_PK}, "sk": {"S": key}},
            UpdateExpression="SET uidvalidity = :v, last_uid = :uid, last_poll_ts = :now",
            ConditionExpression="attribute_not_exists(last_uid) OR uidvalidity <> :v OR last_uid <= :uid",
            ExpressionAttributeValues=values(v=uidvalidity, uid=last_uid, now=now),
        )

    def polled(self, key: str, *, now: int) -> None:
        self._db.update_item(
            TableName=self._table,
            Key={"pk": {"S": MAILBOX_PK}, "sk": {"S": key}},
            UpdateExpression="SET last_poll_ts = :now",
            ExpressionAttributeValues=values(now=now),
        )

    # -- PEC messages waiting for acceptance -------------------------------------------------------------
    def await_acceptance(self, tenant_id: str, message_id: str, *, sent_ts: int, message_id_header: str) -> None:
        """The sender calls this when a PEC message was sent: its acceptance receipt is now due, and any receipt
        that names it only by its Message-ID (`X-Riferimento-Message-ID`, a short receipt without the original)
        finds it for `PEC_REFERENCE_SECONDS`."""
        self._db.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": pec_wait_pk(tenant_id)},
                "sk": {"S": pec_wait_sk(sent_ts, message_id)},
                "id": {"S": message_id},
            },
        )
        self._db.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": pec_reference_pk(tenant_id)},
                "sk": {"S": message_id_header},
                "id": {"S": message_id},
                "expires_at": {"N": str(sent_ts + PEC_REFERENCE_SECONDS)},
            },
        )

    def referenced(self, tenant_id: str, message_id_header: str) -> str | None:
        """The id of the tenant's PEC message sent with this Message-ID, while its reference lives."""
        answer = self._db.get_item(
            TableName=self._table,
            Key={"pk": {"S": pec_reference_pk(tenant_id)}, "sk": {"S": message_id_header.strip()}},
            ConsistentRead=True,
        )
        return str(answer["Item"]["id"]["S"]) if "Item" in answer else None

    def accepted(self, tenant_id: str, message_id: str, *, sent_ts: int) -> None:
        self._db.delete_item(
            TableName=self._table,
            Key={"pk": {"S": pec_wait_pk(tenant_id)}, "sk": {"S": pec_wait_sk(sent_ts, message_id)}},
        )

    def overdue(self, tenant_id: str, *, sent_before: int) -> list[tuple[int, str]]:
        """(sent ts, message id) of the tenant's PEC messages sent before `sent_before` and not accepted."""
        items = all_items(
            self._db,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk < :before",
            ExpressionAttributeValues=values(pk=pec_wait_pk(tenant_id), before=f"{sent_before:010d}"),
        )
        return [(int(item["sk"].split("#", 1)[0]), str(item["id"])) for item in items]
