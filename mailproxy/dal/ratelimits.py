"""Per-account send quotas over rolling windows, shared by concurrent senders: atomic DynamoDB counters.

Each window (a second, a minute, an hour, a day) is cut into buckets, one counter item each
(`pk = RATE#<tenant>#<account>`, `sk = <window>#<bucket start, ms>`, expiring by TTL). A reservation ADDs what
it wants to the current bucket (atomic; the answer holds every reservation that came before in that bucket),
reads the closed buckets that a span of the window ending now can overlap (one Query), and is granted what fits
under the limit; the surplus is given back at once, the slots a batch leaves unused when it ends.

Strict: the buckets counted are the current one and the window's B closed ones before it, B + 1 in all,
which cover the span (now - window, now] whole (and up to one bucket more before it: slightly conservative).
The reservation that comes last in any span saw every reservation before it in that span, so no span of the
window holds more granted slots than the limit, whichever senders reserved them. Slots are counted when they
are reserved: a batch sends right after its reservation. The per-second window, where that lag is of the
order of the window, is reserved per message right before its send (logic/delivery.py) and also counts the
buckets of a `lag` before the span, so that a send arriving at the server up to that much after its
reservation still falls in the counted span (a limit of 14 a second then allows ~14 per 1.3-1.4 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailproxy.dal.dynamo import DynamoDBClient, all_items
from mailproxy.dal.items import values
from mailproxy.dal.keys import rate_pk

COUNTER_TTL_MARGIN_SECONDS = 3600


@dataclass(frozen=True)
class Window:
    name: str
    size_ms: int
    bucket_ms: int
    lag_ms: int = 0  # counted before the span too: how late a reserved send may reach the server

    def first_counted(self, current: int) -> int:
        """The oldest bucket that a reservation in the bucket `current` counts."""
        return self.bucket_start(current - self.size_ms - self.lag_ms)

    def bucket_start(self, now_ms: int) -> int:
        return now_ms - now_ms % self.bucket_ms

    def sort_key(self, bucket_start: int) -> str:
        return f"{self.name}#{bucket_start:013d}"  # fixed width: a range of buckets is a range of sort keys

    def leaves_count_at(self, bucket_start: int) -> int:
        """The first time (ms) at which a reservation no longer counts this bucket."""
        return bucket_start + self.size_ms + self.lag_ms + self.bucket_ms


WINDOWS = {
    window.name: window
    for window in (
        Window("second", 1_000, 100, lag_ms=300),
        Window("minute", 60_000, 10_000),
        Window("hour", 3_600_000, 300_000),
        Window("day", 86_400_000, 3_600_000),
    )
}


@dataclass
class Reservation:
    """Slots granted to one sender batch for one account; unused slots are given back at the end."""

    tenant_id: str
    account_id: str
    granted: int
    buckets: dict[str, int] = field(default_factory=dict)  # window name -> start (ms) of the bucket charged
    retry_at_ms: int | None = None  # when a slot may free up (unix ms), if fewer were granted than asked
    limited_by: str | None = None
    used: int = 0

    @property
    def retry_at(self) -> int | None:
        """`retry_at_ms` in whole unix seconds, rounded up."""
        return None if self.retry_at_ms is None else -(-self.retry_at_ms // 1000)

    def take(self) -> bool:
        if self.used >= self.granted:
            return False
        self.used += 1
        return True

    def put_back(self) -> None:
        """A slot taken for a message that then did not go out (it must wait for a connection)."""
        self.used = max(0, self.used - 1)


class RateLimiter:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def reserve(self, tenant_id: str, account_id: str, limits: dict[str, int], wanted: int, now: float) -> Reservation:
        """Reserve up to `wanted` sends within every window's limit (limits: window name -> count; now: unix
        seconds)."""
        now_ms = int(now * 1000)
        reservation = Reservation(tenant_id, account_id, granted=wanted)
        for name, limit in limits.items():
            window = WINDOWS[name]
            current = window.bucket_start(now_ms)
            reservation.buckets[name] = current
            in_current = self._add(tenant_id, account_id, window, current, wanted, create=True)
            closed = self._closed_buckets(tenant_id, account_id, window, current)
            counted = sum(closed.values()) + in_current - wanted
            room = max(0, limit - counted)
            if room < reservation.granted:
                reservation.granted = room
                busy = [start for start, sends in closed.items() if sends > 0] or [current]
                reservation.retry_at_ms = window.leaves_count_at(min(busy))
                reservation.limited_by = f"{limit} per {name}"
        self._give_back(reservation, wanted - reservation.granted)
        return reservation

    def release(self, reservation: Reservation) -> None:
        self._give_back(reservation, reservation.granted - reservation.used)
        reservation.granted = reservation.used

    def _give_back(self, reservation: Reservation, amount: int) -> None:
        if amount <= 0:
            return
        for name, start in reservation.buckets.items():
            self._add(reservation.tenant_id, reservation.account_id, WINDOWS[name], start, -amount)

    def _closed_buckets(self, tenant_id: str, account_id: str, window: Window, current: int) -> dict[int, int]:
        """Sends counted in the window's closed buckets before `current` that a span ending now can overlap."""
        items = all_items(
            self._db,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues=values(
                pk=rate_pk(tenant_id, account_id),
                first=window.sort_key(window.first_counted(current)),
                last=window.sort_key(current - window.bucket_ms),
            ),
            ConsistentRead=True,
        )
        return {int(item["sk"].rsplit("#", 1)[1]): int(item.get("sends", 0)) for item in items}

    def _add(
        self, tenant_id: str, account_id: str, window: Window, start: int, amount: int, *, create: bool = False
    ) -> int:
        update = "ADD sends :n"
        named: dict[str, int] = {"n": amount}
        if create:
            update += " SET expires_at = :exp"
            named["exp"] = window.leaves_count_at(start) // 1000 + COUNTER_TTL_MARGIN_SECONDS
        answer = self._db.update_item(
            TableName=self._table,
            Key={"pk": {"S": rate_pk(tenant_id, account_id)}, "sk": {"S": window.sort_key(start)}},
            UpdateExpression=update,
            ExpressionAttributeValues=values(**named),
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["sends"]["N"])
