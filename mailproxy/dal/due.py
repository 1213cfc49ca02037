"""The `due` index: messages not yet final whose next attempt (or lost queue record) is due. The sweep reads
it to put such messages back on the queues (docs/reliability.md)."""

from __future__ import annotations

from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient, write_if
from mailproxy.dal.items import from_item, values
from mailproxy.dal.keys import DUE_INDEX, STATUS_SK, due_pk, due_shards


class DueIndex:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def due(self, now: int, limit: int = 500) -> list[dict[str, Any]]:
        """Non-final messages whose due time has come (their queue record may be lost), oldest first."""
        found: list[dict[str, Any]] = []
        for shard in due_shards():
            answer = self._db.query(
                TableName=self._table,
                IndexName=DUE_INDEX,
                KeyConditionExpression="due_pk = :dpk AND due_ts <= :now",
                ExpressionAttributeValues=values(dpk=due_pk(shard), now=now),
                Limit=limit,
            )
            found.extend(from_item(i) for i in answer["Items"])
        found.sort(key=lambda item: item["due_ts"])
        return found[:limit]

    def postpone(self, item: dict[str, Any], until: int) -> bool:
        """Move a swept message's due time, so the next sweep does not enqueue it again meanwhile."""
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": item["pk"]}, "sk": {"S": STATUS_SK}},
            UpdateExpression="SET due_ts = :until",
            ConditionExpression="due_ts = :seen",
            ExpressionAttributeValues=values(until=until, seen=item["due_ts"]),
        ).held
