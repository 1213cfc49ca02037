"""Each tenant's suppression list: addresses its mail no longer goes to (a hard bounce, a complaint, an
unsubscribe, or added by hand), one config item per address, `pk = SUPPRESS#<tenant>`, `sk = <normalized
address>`.

An address is compared case-insensitively as a whole (`normalize_address`). RFC 5321 lets a server treat the
local part's case as significant, but the providers a tenant mails do not, and neither do the hosted services'
suppression lists (SES, Postmark): missing `Bob@` after `bob@` bounced costs the sender's reputation, while
suppressing a second mailbox that differs only in case is a risk nobody meets in practice."""

from __future__ import annotations

import base64
import builtins
import time
from collections.abc import Iterable

from mailproxy.dal.dynamo import DynamoDBClient, batch_get, batch_write
from mailproxy.dal.items import from_item, to_item, values
from mailproxy.dal.message_queries import BadCursor
from mailproxy.dal.records import StoredSuppression
from mailproxy.headers import parse_address
from mailproxy.models import SuppressionReason

SUPPRESSION_PK_PREFIX = "SUPPRESS#"
MAX_PAGE = 1000


def addr_spec(address: str) -> str:
    """An address without its display name (`Name <a@b>` -> `a@b`); one that does not parse as written."""
    text = address.strip()
    if not any(mark in text for mark in '<"('):  # no display name, quoted part or comment: nothing to parse
        return text
    try:
        return parse_address(text).addr_spec or text
    except ValueError:
        return text


def normalize_address(address: str) -> str:
    """The list's key of an address, with or without display name: its addr-spec, lower-cased whole."""
    return addr_spec(address).lower()


def _pk(tenant_id: str) -> str:
    return f"{SUPPRESSION_PK_PREFIX}{tenant_id}"


def _encode_cursor(sk: str) -> str:
    return base64.urlsafe_b64encode(sk.encode()).decode()


def _decode_cursor(cursor: str) -> str:
    """The last address listed (a position within the tenant's own partition only)."""
    try:
        last = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except ValueError:
        last = ""
    if not last:
        raise BadCursor("cursor: not a cursor returned by this API")
    return last


class SuppressionStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def _item(
        self, tenant_id: str, address: str, reason: str, source_message_id: str | None, now: int
    ) -> dict[str, object]:
        return {
            "pk": _pk(tenant_id),
            "sk": normalize_address(address),
            "tenant_id": tenant_id,
            "address": addr_spec(address),
            "reason": SuppressionReason(reason).value,  # an unknown reason is a ValueError, never stored
            "source_message_id": source_message_id,
            "ts": now,
        }

    def add(self, tenant_id: str, address: str, reason: str, source_message_id: str | None = None) -> None:
        """Put the address on the list; one already there takes the new reason, source and time."""
        item = self._item(tenant_id, address, reason, source_message_id, int(time.time()))
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def add_many(
        self, tenant_id: str, addresses: Iterable[str], reason: str, source_message_id: str | None = None
    ) -> int:
        """`add` for many addresses in batch writes; the number of distinct addresses added."""
        now = int(time.time())
        # One request per key: a batch naming the same key twice is refused whole.
        items = {
            normalize_address(address): self._item(tenant_id, address, reason, source_message_id, now)
            for address in addresses
        }
        batch_write(self._db, self._table, [{"PutRequest": {"Item": to_item(item)}} for item in items.values()])
        return len(items)

    def remove(self, tenant_id: str, address: str) -> bool:
        """Take the address off the list; False when it was not on it."""
        answer = self._db.delete_item(
            TableName=self._table,
            Key={"pk": {"S": _pk(tenant_id)}, "sk": {"S": normalize_address(address)}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in answer

    def list(
        self, tenant_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[builtins.list[StoredSuppression], str | None]:
        """At most `limit` (≤ 1,000) entries in address order, and the cursor of the next page (None at the end)."""
        limit = max(1, min(limit, MAX_PAGE))
        request: dict[str, object] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": values(pk=_pk(tenant_id)),
            "Limit": limit + 1,  # one more than asked: whether a next page exists, without an empty last page
        }
        if cursor:
            request["ExclusiveStartKey"] = {"pk": {"S": _pk(tenant_id)}, "sk": {"S": _decode_cursor(cursor)}}
        answer = self._db.query(**request)  # type: ignore[arg-type]
        items = [from_item(raw) for raw in answer["Items"]]
        more = len(items) > limit
        entries = [StoredSuppression.from_item(item) for item in items[:limit]]
        return entries, _encode_cursor(items[limit - 1]["sk"]) if more else None

    def suppressed(self, tenant_id: str, addresses: Iterable[str]) -> set[str]:
        """The normalized forms of those `addresses` that are on the tenant's list (batch reads of 100 keys)."""
        keys = [{"pk": {"S": _pk(tenant_id)}, "sk": {"S": key}} for key in {normalize_address(a) for a in addresses}]
        if not keys:
            return set()
        return {item["sk"] for item in batch_get(self._db, self._table, keys, projection="sk")}
