"""Per-account send quotas shared by concurrent senders: atomic DynamoDB counters, one item per window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailproxy.dal.dynamo import DynamoDBClient
from mailproxy.dal.items import values
from mailproxy.dal.keys import rate_pk

WINDOWS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class Reservation:
    """Slots granted to one sender batch for one account; unused slots are given back at the end."""

    tenant_id: str
    account_id: str
    granted: int
    window_starts: dict[str, int] = field(default_factory=dict)
    retry_at: int | None = None  # when a slot frees up, if fewer were granted than asked
    limited_by: str | None = None
    used: int = 0

    def take(self) -> bool:
        if self.used >= self.granted:
            return False
        self.used += 1
        return True


class RateLimiter:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def reserve(self, tenant_id: str, account_id: str, limits: dict[str, int], wanted: int, now: int) -> Reservation:
        """Reserve up to `wanted` sends within every window's limit (limits: window name -> count)."""
        reservation = Reservation(tenant_id, account_id, granted=wanted)
        added: dict[str, int] = {}
        for window, limit in limits.items():
            size = WINDOWS[window]
            start = now - now % size
            reservation.window_starts[window] = start
            count = self._add(tenant_id, account_id, window, start, wanted, expires_at=start + size + 3600)
            added[window] = wanted
            room = max(0, limit - (count - wanted))
            if room < reservation.granted:
                reservation.granted = room
                reservation.retry_at = start + size
                reservation.limited_by = f"{limit} per {window}"
        for window, amount in added.items():
            surplus = amount - reservation.granted
            if surplus > 0:
                self._add(tenant_id, account_id, window, reservation.window_starts[window], -surplus)
        return reservation

    def release(self, reservation: Reservation) -> None:
        unused = reservation.granted - reservation.used
        if unused <= 0:
            return
        for window, start in reservation.window_starts.items():
            self._add(reservation.tenant_id, reservation.account_id, window, start, -unused)
        reservation.granted = reservation.used

    def _add(
        self, tenant_id: str, account_id: str, window: str, start: int, amount: int, expires_at: int | None = None
    ) -> int:
        update = "ADD sends :n"
        named: dict[str, Any] = {"n": amount}
        if expires_at is not None:
            update += " SET expires_at = :exp"
            named["exp"] = expires_at
        answer = self._db.update_item(
            TableName=self._table,
            Key={"pk": {"S": rate_pk(tenant_id, account_id)}, "sk": {"S": f"{window}#{start}"}},
            UpdateExpression=update,
            ExpressionAttributeValues=values(**named),
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["sends"]["N"])
