"""Suspended sending: a whole tenant (`*`) or one of its campaigns (`batch_code`)."""

from __future__ import annotations

from mailproxy.dal.dynamo import DynamoDBClient

ALL_BATCHES = "*"


def _pk(tenant_id: str) -> str:
    return f"SUSPEND#{tenant_id}"


class SuspensionStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def suspend(self, tenant_id: str, batch_code: str | None) -> None:
        self._db.put_item(
            TableName=self._table, Item={"pk": {"S": _pk(tenant_id)}, "sk": {"S": batch_code or ALL_BATCHES}}
        )

    def activate(self, tenant_id: str, batch_code: str | None) -> None:
        """Lift the suspension of that batch; without a batch code, every suspension of the tenant."""
        codes = [batch_code] if batch_code else sorted(self.suspended(tenant_id))
        for code in codes:
            self._db.delete_item(TableName=self._table, Key={"pk": {"S": _pk(tenant_id)}, "sk": {"S": code}})

    def suspended(self, tenant_id: str) -> set[str]:
        answer = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": _pk(tenant_id)}},
            ConsistentRead=True,
        )
        return {item["sk"]["S"] for item in answer["Items"]}


def is_suspended(suspended: set[str], batch_code: str | None) -> bool:
    return ALL_BATCHES in suspended or (batch_code is not None and batch_code in suspended)
