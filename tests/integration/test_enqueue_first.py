"""Ingestion enqueues first and writes after (docs/reliability.md, "Lost enqueue"): a message sent at once
costs no entry in the due index; the messages that are not sent at once keep theirs for the sweep."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailproxy.config import Settings
from mailproxy.dal.queues import QueueEntry
from mailproxy.dal.schema import LocalResources
from mailproxy.logic.ingest import WRITE_CHUNK, add_messages
from mailproxy.logic.sweep import sweep_due
from mailproxy.models import AddMessagesRequest
from mailproxy.services import Services
from tests.conftest import make_settings, message_payload
from tests.integration.test_sender import add_account, drain, status, submit
from tests.smtp_servers import SinkFactory


@pytest.fixture
def settings(aws: LocalResources) -> Settings:
    return make_settings(aws, backoff_base=1.0, backoff_cap=2.0)


def in_due_index(item: dict[str, Any]) -> bool:
    return "due_pk" in item or "due_ts" in item


def test_message_enqueued_at_once_has_no_due_entry(services: Services, smtp_sink_factory: SinkFactory) -> None:
    add_account(services, smtp_sink_factory("plain"))
    later = int(time.time()) + 3600  # beyond the longest SQS delay: the sweep enqueues it
    services.suspensions.suspend("default", "held")
    submit(
        services,
        message_payload("now"),
        message_payload("soon", deferred_ts=int(time.time()) + 600),
        message_payload("later", deferred_ts=later),
        message_payload("held", batch_code="held"),
    )
    assert not in_due_index(status(services, "now"))
    assert not in_due_index(status(services, "soon"))
    assert status(services, "later")["due_ts"] > later and status(services, "later")["due_pk"]
    assert not in_due_index(status(services, "held"))  # suspended: out of the index until activated


def test_records_are_sent_before_their_status_items_chunk_by_chunk(
    services: Services, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_account(services, smtp_sink_factory("plain"))
    calls: list[tuple[str, int]] = []
    enqueue, put_batch = services.queues.enqueue, services.messages.put_batch

    def spy_enqueue(entries: list[QueueEntry]) -> list[QueueEntry]:
        calls.append(("enqueue", len(entries)))
        return enqueue(entries)

    def spy_put_batch(messages: list[Any], **options: Any) -> Any:
        calls.append(("write", len(messages)))
        for message in messages:  # none of them is stored yet, every one of them is queued
            assert services.messages.get(message.tenant_id, message.id) is None
        return put_batch(messages, **options)

    monkeypatch.setattr(services.queues, "enqueue", spy_enqueue)
    monkeypatch.setattr(services.messages, "put_batch", spy_put_batch)
    submit(services, *[message_payload(f"m{n}") for n in range(WRITE_CHUNK + 5)])
    assert [c for c in calls if c[1]] == [
        ("enqueue", WRITE_CHUNK),
        ("write", WRITE_CHUNK),
        ("enqueue", 5),
        ("write", 5),
    ]


def test_record_sqs_refused_is_stored_with_a_due_entry_and_the_sweep_sends_it(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    with monkeypatch.context() as patch:
        patch.setattr(services.queues, "enqueue", lambda entries: list(entries))  # SendMessageBatch "Failed"
        answer = add_messages(
            services,
            AddMessagesRequest(messages=[message_payload("m0"), message_payload("m1")]),
            now_ms=int(time.time() * 1000),
        )
    assert answer.queued == 2 and answer.rejected == []  # still accepted: stored, the sweep's to enqueue
    assert all(in_due_index(status(services, i)) for i in ("m0", "m1"))
    assert drain(services) == 0
    assert sweep_due(services, now=int(time.time())) == 0  # not before the grace period (a slow enqueue)
    assert sweep_due(services, now=int(time.time()) + services.settings.enqueue_grace + 1) == 2
    drain(services)
    assert {status(services, i)["status"] for i in ("m0", "m1")} == {"sent"}
    assert len(sink.messages) == 2  # once each
    assert not any(in_due_index(status(services, i)) for i in ("m0", "m1"))


def test_deferred_outcome_puts_a_message_enqueued_at_once_in_the_due_index(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.7.1 greylisted, try later", times=1)
    add_account(services, sink)
    submit(services, message_payload("m1"))
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "deferred"
    assert item["due_pk"] and item["due_ts"] > item["not_before"]  # the sweep's net for its re-enqueue
