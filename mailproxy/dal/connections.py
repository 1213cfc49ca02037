"""A per-account cap on the SMTP connections open at once across every sender invocation (`max_concurrent`):
a semaphore of lease items in the config table, `pk = CONN#<tenant>#<account>`, `sk = slot#<n>` for
n < max_concurrent. A slot is taken by a conditional put (free, or its lease ran out) with a holder token and
given back by a delete conditional on that token; a holder that dies never gives it back, and its slot is free
again once its lease runs out (the sender's claim lease: no invocation outlives it)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from mailproxy.dal.dynamo import DynamoDBClient, write_if
from mailproxy.dal.items import to_item, values
from mailproxy.dal.keys import connection_pk

LEASE_TTL_MARGIN_SECONDS = 3600  # expired leases are only read by the condition; TTL removes them later


@dataclass(frozen=True)
class ConnectionSlot:
    tenant_id: str
    account_id: str
    number: int
    holder: str


def _slot_key(tenant_id: str, account_id: str, number: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": connection_pk(tenant_id, account_id)}, "sk": {"S": f"slot#{number}"}}


class ConnectionSlots:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def acquire(
        self, tenant_id: str, account_id: str, max_concurrent: int, *, now: float, lease_seconds: int
    ) -> ConnectionSlot | None:
        """One of the account's `max_concurrent` slots, held until `now + lease_seconds`; None when all are held."""
        holder = secrets.token_hex(16)
        now_ms = int(now * 1000)
        lease_until = now_ms + lease_seconds * 1000
        for number in range(max_concurrent):
            item = {
                "holder": holder,
                "lease_until": lease_until,
                "expires_at": lease_until // 1000 + LEASE_TTL_MARGIN_SECONDS,
            }
            written = write_if(
                self._db.put_item,
                TableName=self._table,
                Item={**_slot_key(tenant_id, account_id, number), **to_item(item)},
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now",
                ExpressionAttributeValues=values(now=now_ms),
            )
            if written.held:
                return ConnectionSlot(tenant_id, account_id, number, holder)
        return None

    def release(self, slot: ConnectionSlot) -> bool:
        """Give the slot back; False when it was no longer this holder's (its lease ran out and was taken)."""
        return write_if(
            self._db.delete_item,
            TableName=self._table,
            Key=_slot_key(slot.tenant_id, slot.account_id, slot.number),
            ConditionExpression="holder = :holder",
            ExpressionAttributeValues=values(holder=slot.holder),
        ).held
