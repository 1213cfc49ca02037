"""Rolling rate limits (dal/ratelimits.py): no span of a window holds more sends than its limit, across
window boundaries and concurrent senders; unused slots are given back. Times are injected (unix seconds)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from mailproxy.dal.queues import QueueEntry
from mailproxy.logic.bounces.correlation import deployment_key
from mailproxy.logic.delivery import BatchDelivery
from mailproxy.logic.ingest import add_messages
from mailproxy.models import AccountIn, AddMessagesRequest
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from tests.conftest import message_payload
from tests.smtp_servers import SinkFactory

TENANT, ACCOUNT = "default", "smtp-main"
DAY = 86_400


def most_in_any_span(times: Sequence[float], span: float) -> int:
    """The most of `times` that fall within one half-open span of `span` seconds."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if start <= t < start + span) for start in ordered), default=0)


def reserve_one(services: Services, limits: dict[str, int], now: float) -> bool:
    return services.rate_limits.reserve(TENANT, ACCOUNT, limits, 1, now).granted == 1


def test_two_per_minute_never_send_more_than_two_in_any_sixty_seconds_across_a_minute_boundary(
    services: Services,
) -> None:
    minute = 1_800_000_000  # a minute boundary
    tries = [minute - 20, minute - 5, minute - 1, minute + 1, minute + 20, minute + 45, minute + 71, minute + 72]
    tries += [minute + 90, minute + 130, minute + 131, minute + 132, minute + 200]
    granted = [t for t in tries if reserve_one(services, {"minute": 2}, t)]
    assert most_in_any_span(granted, 60) <= 2
    # The fixed windows of before granted minute + 1 (a new minute): two sends within two seconds of two others.
    assert minute + 1 not in granted
    assert len(granted) >= 4  # strict, not stuck: slots come back as the span moves on


def test_refused_reservation_names_when_a_slot_comes_back(services: Services) -> None:
    start = 1_800_000_005.5
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 2}, 2, start).granted == 2
    refused = services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 2}, 3, start + 30)
    assert refused.granted == 0 and refused.limited_by == "2 per minute"
    assert refused.retry_at is not None and start + 60 < refused.retry_at <= start + 70
    assert not reserve_one(services, {"minute": 2}, refused.retry_at - 1)
    assert reserve_one(services, {"minute": 2}, refused.retry_at)


def test_hour_limit_holds_across_the_hour_boundary(services: Services) -> None:
    hour = 1_800_000_000 - 1_800_000_000 % 3600
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"hour": 3}, 3, hour - 10).granted == 3
    assert not reserve_one(services, {"hour": 3}, hour + 10)
    assert not reserve_one(services, {"hour": 3}, hour + 3000)
    refused = services.rate_limits.reserve(TENANT, ACCOUNT, {"hour": 3}, 1, hour + 3000)
    assert refused.retry_at is not None and hour - 10 + 3600 < refused.retry_at
    assert reserve_one(services, {"hour": 3}, refused.retry_at)


def test_day_limit_cannot_be_spent_twice_around_midnight(services: Services) -> None:
    midnight = 1_800_000_000 - 1_800_000_000 % DAY
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"day": 5}, 5, midnight - 60).granted == 5
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"day": 5}, 5, midnight + 60).granted == 0
    assert not reserve_one(services, {"day": 5}, midnight + DAY - 120)
    assert reserve_one(services, {"day": 5}, midnight - 60 + DAY + 3600)


def test_every_window_limits_the_grant(services: Services) -> None:
    limits = {"minute": 10, "hour": 4, "day": 100}
    reservation = services.rate_limits.reserve(TENANT, ACCOUNT, limits, 6, 1_800_000_000)
    assert reservation.granted == 4 and reservation.limited_by == "4 per hour"


def test_unused_slots_are_given_back(services: Services) -> None:
    now = 1_800_000_000
    first = services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 5}, 5, now)
    assert first.granted == 5
    assert first.take() and first.take()
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 5}, 1, now + 1).granted == 0
    services.rate_limits.release(first)
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 5}, 9, now + 2).granted == 3


def test_surplus_of_a_partial_grant_is_given_back_at_once(services: Services) -> None:
    now = 1_800_000_000
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 3}, 10, now).granted == 3
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 3}, 10, now + 1).granted == 0
    assert services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 4}, 10, now + 2).granted == 1


def test_concurrent_reservations_never_grant_more_than_the_limit(services: Services) -> None:
    now = 1_800_000_000.0
    granted: list[int] = []
    start = threading.Barrier(8)

    def reserve() -> None:
        start.wait()
        granted.append(services.rate_limits.reserve(TENANT, ACCOUNT, {"minute": 5}, 2, now).granted)

    runs = [threading.Thread(target=reserve) for _ in range(8)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(granted) == 5


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def deliver_batch(services: Services, clock: FakeClock, message_ids: list[str]) -> dict[str, str]:
    with BatchDelivery(
        services, correlation_key=deployment_key(services.settings), logger=logger, metrics=metrics, clock=clock
    ) as delivery:
        entries = [QueueEntry(TENANT, message_id, ACCOUNT, 2) for message_id in message_ids]
        delivery.prepare(entries)
        return {entry.message_id: delivery.deliver(entry) for entry in entries}


def test_sender_batches_straddling_a_minute_boundary_send_at_most_two_in_sixty_seconds(
    services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    services.accounts.put(AccountIn(id=ACCOUNT, **sink.account(), limit_per_minute=2))
    messages = [message_payload(f"m{n}") for n in range(6)]
    answer = add_messages(services, AddMessagesRequest(messages=messages), now_ms=int(time.time() * 1000))
    assert answer.rejected == []
    boundary = math.ceil(time.time() / 60) * 60 + 60  # ahead of the messages' creation: all of them are due
    clock = FakeClock(boundary - 5)
    sent_at: list[float] = []
    retry: dict[str, Any] = {}
    for batch in (["m0", "m1", "m2"], ["m3", "m4"]):
        outcomes = deliver_batch(services, clock, batch)
        sent_at += [clock.now for outcome in outcomes.values() if outcome == "sent"]
        retry.update({i: services.messages.get(TENANT, i) for i, outcome in outcomes.items() if outcome != "sent"})
        clock.now = boundary + 5  # the next batch, ten seconds later, in the next clock minute
    assert sent_at == [boundary - 5, boundary - 5]
    assert {item["status"] for item in retry.values()} == {"deferred"}
    assert {item["attempts"] for item in retry.values()} == {0}
    clock.now = max(item["not_before"] for item in retry.values())
    outcomes = deliver_batch(services, clock, sorted(retry))
    sent_at += [clock.now for outcome in outcomes.values() if outcome == "sent"]
    assert len(sent_at) == 4
    assert most_in_any_span(sent_at, 60) <= 2
    assert len(sink.messages) == 4
