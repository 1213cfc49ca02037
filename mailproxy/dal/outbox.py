"""The report outbox: the sparse `pending_reports` index holds the outcomes whose report the stream reporter
could not deliver at once (docs/design.md, "Delivery reports"), partitioned per tenant. The stream reporter
puts them in; the scheduled reporter reads it and marks what was delivered."""

from __future__ import annotations

import heapq
from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient, all_items, write_if
from mailproxy.dal.items import from_item, values
from mailproxy.dal.keys import PENDING_REPORTS_INDEX, STATUS_SK, report_pk, report_shard, report_shards, report_sk
from mailproxy.dal.messages import RETENTION_SECONDS
from mailproxy.models import MessageStatus


class ReportOutbox:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def pending(self, limit: int, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Outcomes not yet acknowledged by the client, oldest first, read from the sparse index.

        With `tenant_id` (what the reporter does): that tenant's partitions only, so that one tenant's
        backlog never fills the head of another's read. Without it: every tenant's, by a scan of the
        sparse index (tools and tests; its cost grows with the whole outbox)."""
        if tenant_id is None:
            every = sorted(
                all_items(self._db, "scan", TableName=self._table, IndexName=PENDING_REPORTS_INDEX),
                key=lambda item: item["rpt_sk"],
            )
            return every[:limit]
        per_shard = []
        for shard in report_shards():
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

    def put(self, item: dict[str, Any]) -> bool:
        """Put an outcome in the outbox (its index keys on the status item), unless a newer outcome was
        recorded since `item` was read (that one is reported on its own). An item already in the outbox
        keeps its place, and an outcome the client already acknowledged (a stream record delivered again)
        does not come back. AWS errors are raised: the caller must not lose the report."""
        tenant_id, message_id = item["tenant_id"], item["id"]
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
            UpdateExpression="SET rpt_pk = if_not_exists(rpt_pk, :rpk), rpt_sk = if_not_exists(rpt_sk, :rsk)",
            ConditionExpression="rpt_seq = :seq AND (attribute_not_exists(reported_seq) OR reported_seq <> :seq)",
            ExpressionAttributeValues=values(
                rpk=report_pk(tenant_id, report_shard(tenant_id, message_id)),
                rsk=report_sk(int(item["updated_ts"]) * 1000, tenant_id, message_id),
                seq=item["rpt_seq"],
            ),
        ).held

    def mark_reported(self, item: dict[str, Any], now: int) -> bool:
        """Take a report out of the outbox, unless the message changed since it was read. `reported_seq`
        says which outcome the client acknowledged (`mailproxy.logic.reports.reported_at`)."""
        # Appended, not rewritten from the image read: the outbox image may be older than the item.
        sets = (
            "SET reported_ts = :now, reported_seq = :seq, history = list_append(if_not_exists(history, :none), :event)"
        )
        named: dict[str, Any] = {
            "now": now,
            "seq": item["rpt_seq"],
            "none": [],
            "event": [{"event": "reported", "ts": now, "status": item["status"]}],
        }
        if MessageStatus(item["status"]).is_final:
            sets += ", expires_at = :exp"
            named["exp"] = now + RETENTION_SECONDS
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
            UpdateExpression=f"{sets} REMOVE rpt_pk, rpt_sk",
            ConditionExpression="rpt_seq = :seq",
            ExpressionAttributeValues=values(**named),
        ).held
