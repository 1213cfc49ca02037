"""A deployment-wide throttle on the config table: one conditional write claims a slot, so it holds across
every Lambda instance (`POST /commands/run-now` triggers the reporter at most once per interval for the whole
deployment: docs/tenants.md, "Report isolation, signing and keys")."""

from __future__ import annotations

from mailproxy.dal.dynamo import DynamoDBClient, write_if

THROTTLE_PK = "THROTTLE"


def claim_slot(dynamodb: DynamoDBClient, table: str, name: str, *, now: float, interval: float) -> bool:
    """True when no slot of `name` was claimed in the last `interval` seconds (and this call claimed it)."""
    now_ms = int(now * 1000)
    return write_if(
        dynamodb.put_item,
        TableName=table,
        Item={
            "pk": {"S": THROTTLE_PK},
            "sk": {"S": name},
            "last_ms": {"N": str(now_ms)},
            "expires_at": {"N": str(int(now + interval) + 3600)},
        },
        ConditionExpression="attribute_not_exists(pk) OR last_ms <= :cutoff",
        ExpressionAttributeValues={":cutoff": {"N": str(now_ms - int(interval * 1000))}},
    ).held
