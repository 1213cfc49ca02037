"""Enqueue first, then write (docs/reliability.md, "Lost enqueue"): a queue record may reach a sender before
its status item exists, or outlive an API call that died between the enqueue and the write. The sender
retries a young record within seconds and drops an old one; nothing is sent that was not stored, and
nothing twice."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from mailproxy.dal.messages import MessageStore
from mailproxy.logic import orphans
from mailproxy.models import AccountIn
from tests.conftest import message_payload
from tests.reliability.harness import World
from tests.smtp_servers import SinkFactory, SmtpSink

CONCURRENT_MESSAGES = int(os.environ.get("GMP_LOST_ENQUEUE_MESSAGES", "60"))


class WriteDied(Exception):
    """The API invocation ends between the enqueue and the write (a timeout, a crash, a DynamoDB outage)."""


@pytest.fixture(autouse=True)
def _quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orphans, "FIRST_RETRY_SECONDS", 1)  # real seconds: SQS visibility is not virtual


def with_sink(world: World, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.sinks.append(sink)
    return sink


def submit_dying_before_the_write(world: World, *messages: dict[str, Any]) -> None:
    def died(*args: Any, **kwargs: Any) -> Any:
        raise WriteDied

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MessageStore, "put_batch", died)
        with pytest.raises(WriteDied):
            world.submit(*messages)


def records_left(world: World) -> int:
    return sum(world.services.queues.depth().values())


def test_record_of_a_write_that_never_happened_is_dropped_after_the_age_limit(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    with_sink(world, smtp_sink_factory)
    submit_dying_before_the_write(world, message_payload("m0"))
    assert world.services.messages.get("default", "m0") is None and records_left(world) == 1

    assert world.drain() == 1  # young: the API may still be writing; failed, visible again in a second
    assert world.poller.poll_once() == 0 and records_left(world) == 1
    world.clock.advance(orphans.ORPHAN_AGE_SECONDS)
    time.sleep(1.2)
    assert world.drain() == 1  # old: its API call never answered 200 for it
    assert records_left(world) == 0
    assert world.transactions() == {} and world.services.messages.get("default", "m0") is None


def test_young_record_whose_item_is_missing_is_retried_and_sent_once_the_item_exists(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    sink = with_sink(world, smtp_sink_factory)
    submit_dying_before_the_write(world, message_payload("m0"))
    assert world.drain() == 1  # the record before its item: retried, not dropped
    assert world.poller.poll_once() == 0

    with pytest.MonkeyPatch.context() as patch:  # the write lands now, its record is the one already queued
        patch.setattr(world.services.queues, "enqueue", lambda entries: [])
        world.submit(message_payload("m0"))
    item = world.status("m0")
    assert item["status"] == "queued" and "due_pk" not in item
    time.sleep(1.2)
    world.drain()
    assert world.status("m0")["status"] == "sent"
    assert len(sink.messages) == 1 and records_left(world) == 0


def test_senders_running_during_ingestion_send_every_message_once(world: World, smtp_sink_factory: SinkFactory) -> None:
    """Records reach the queue a chunk ahead of their items while senders poll: some find no item yet and
    are retried; every message is sent exactly once."""
    with_sink(world, smtp_sink_factory)
    ids = [f"m{n}" for n in range(CONCURRENT_MESSAGES)]
    stop = threading.Event()

    def senders() -> None:
        while not stop.is_set():
            world.poller.poll_once()

    running = threading.Thread(target=senders)
    running.start()
    try:
        for start in range(0, len(ids), 10):
            world.submit(*[message_payload(i) for i in ids[start : start + 10]])
    finally:
        stop.set()
        running.join()
    for _ in range(20):
        world.drain()
        if all(status == "sent" for status in world.statuses(ids).values()):
            break
        time.sleep(0.5)  # a record retried in a second
    assert set(world.statuses(ids).values()) == {"sent"}
    transactions = world.transactions()
    assert len(transactions) == len(ids) and set(transactions.values()) == {1}
