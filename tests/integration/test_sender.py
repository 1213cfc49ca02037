"""The sender handler driven as Lambda's SQS event source would drive it, delivering to real SMTP servers."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from functions.sender import handler as sender
from mailproxy import runtime
from mailproxy.config import Settings
from mailproxy.dal.messages import Outcome
from mailproxy.dal.queues import QueueEntry
from mailproxy.dal.schema import LocalResources
from mailproxy.logic.ingest import add_messages
from mailproxy.models import AccountIn, AddMessagesRequest, MessageStatus
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import SqsPoller, lambda_record
from tests.conftest import make_settings, message_payload
from tests.smtp_servers import SinkFactory, SmtpSink, free_port


@pytest.fixture
def fast_retry_settings(aws: LocalResources) -> Settings:
    return make_settings(aws, backoff_base=1.0, backoff_cap=2.0)


@pytest.fixture
def settings(fast_retry_settings: Settings) -> Settings:
    return fast_retry_settings


def add_account(services: Services, sink: SmtpSink, account_id: str = "smtp-main", **extra: Any) -> None:
    fields = sink.account()
    services.accounts.put(AccountIn(id=account_id, **{**fields, **extra}))


def submit(services: Services, *messages: dict[str, Any]) -> None:
    answer = add_messages(services, AddMessagesRequest(messages=list(messages)), now_ms=int(time.time() * 1000))
    assert answer.rejected == [], answer.rejected


def drain(services: Services, rounds: int = 20) -> int:
    """Run the sender over whatever the queues hold (as the event source mapping would) until they are empty."""
    poller = SqsPoller(services.sqs, [services.queues.urgent_url, services.queues.bulk_url], sender.handler)
    handled = 0
    for _ in range(rounds):
        count = poller.poll_once()
        if not count:
            break
        handled += count
    return handled


def status(services: Services, message_id: str) -> dict[str, Any]:
    item = services.messages.get("default", message_id)
    assert item is not None
    return item


def test_message_is_delivered_over_starttls_with_auth_and_right_mime(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, trust_smtp_certs: Path
) -> None:
    sink = smtp_sink_factory("starttls", auth=("sender", "s3cret"))
    add_account(services, sink)
    submit(
        services,
        message_payload(
            "m1",
            **{"from": "Zoë Sender <sender@example.com>"},
            cc=["cc@example.com"],
            bcc=["hidden@example.com"],
            reply_to="replies@example.com",
            subject="Grüße",
            body="<p>hi</p>",
            content_type="html",
            headers={"X-Campaign": "spring"},
            attachments=[{"filename": "a.txt", "content": "aGVsbG8=", "mime_type": "text/plain"}],
        ),
    )
    assert drain(services) == 1
    [received] = sink.messages
    assert received.tls and received.auth_user == "sender"
    assert sorted(received.rcpt_tos) == ["cc@example.com", "hidden@example.com", "rcpt@example.com"]
    mail = received.message
    assert mail["Subject"] == "Grüße" and mail["X-Campaign"] == "spring" and mail["Reply-To"] == "replies@example.com"
    assert "Bcc" not in mail and mail["Date"]
    assert mail["Message-ID"] == status(services, "m1")["message_id_header"]
    assert mail.get_body(("html",)).get_content().strip() == "<p>hi</p>"  # type: ignore[union-attr]
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "a.txt" and attachment.get_content() == "hello"
    item = status(services, "m1")
    assert item["status"] == "sent" and item["sent_ts"] and item["attempts"] == 1


def test_implicit_tls_account_delivers(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, trust_smtp_certs: Path
) -> None:
    sink = smtp_sink_factory("implicit_tls", auth=("u", "p"))
    add_account(services, sink)
    submit(services, message_payload("m1"))
    drain(services)
    assert status(services, "m1")["status"] == "sent"
    assert sink.messages[0].tls


def test_one_connection_per_account_per_batch(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, *[message_payload(f"m{n}") for n in range(10)])
    assert drain(services) == 10
    assert len(sink.messages) == 10
    assert sink.connections <= 2  # moto may split ten records over two receives; never one per message


def test_temporary_failure_defers_then_sends_on_retry(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.7.1 greylisted, try later")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "deferred" and item["deferred_ts"] >= int(time.time())
    assert "451" in item["deferred_reason"]
    assert item["rpt_seq"] == 1  # a deferred outcome for the stream reporter
    time.sleep(max(0, item["deferred_ts"] - time.time()) + 1.1)
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "sent" and item["attempts"] == 2
    assert len(sink.messages) == 1


def test_permanent_failure_ends_in_error_with_the_reply(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 no such user")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "error" and item["error_ts"]
    assert "550" in item["error"] and "no such user" in item["error"]
    assert sink.messages == []


def test_server_down_defers_then_sends_once_it_is_up(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    port = free_port()
    services.accounts.put(AccountIn(id="smtp-main", host="127.0.0.1", port=port, timeout=2))
    submit(services, message_payload("m1"))
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "deferred"
    sink = smtp_sink_factory("plain", port=port)
    time.sleep(max(0, item["deferred_ts"] - time.time()) + 1.1)
    drain(services)
    assert status(services, "m1")["status"] == "sent"
    assert len(sink.messages) == 1


def test_untrusted_certificate_is_never_bypassed_with_plain_text(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, distrust_smtp_certs: None
) -> None:
    sink = smtp_sink_factory("starttls", auth=("sender", "s3cret"))
    add_account(services, sink)
    submit(services, message_payload("m1"))
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "deferred"
    assert "certificate" in item["deferred_reason"].lower()
    assert not sink.saw("AUTH", "MAIL", "RCPT", "DATA")
    assert sink.messages == []


def test_same_record_delivered_twice_sends_once(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    [message] = services.sqs.receive_message(QueueUrl=services.queues.bulk_url, AttributeNames=["All"])["Messages"]
    record = lambda_record(message, "arn:aws:sqs:us-east-1:123456789012:gmp-bulk", "us-east-1")
    for _ in range(3):
        answer = sender.handler({"Records": [record]}, LocalLambdaContext("gmp-sender"))
        assert answer == {"batchItemFailures": []}
    assert len(sink.messages) == 1
    assert status(services, "m1")["status"] == "sent"


def test_two_senders_racing_on_one_message_send_it_once(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    [message] = services.sqs.receive_message(QueueUrl=services.queues.bulk_url)["Messages"]
    event = {"Records": [lambda_record(message, "arn:aws:sqs:us-east-1:123456789012:gmp-bulk", "us-east-1")]}
    start = threading.Barrier(2)

    def invoke() -> None:
        start.wait()
        sender.handler(event, LocalLambdaContext("gmp-sender"))

    racers = [threading.Thread(target=invoke) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert len(sink.messages) == 1


def test_rate_limit_of_two_per_minute_sends_two_and_defers_three(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink, limit_per_minute=2)
    submit(services, *[message_payload(f"m{n}") for n in range(5)])
    before = int(time.time())
    drain(services, rounds=1)
    statuses = sorted(status(services, f"m{n}")["status"] for n in range(5))
    assert statuses == ["deferred", "deferred", "deferred", "sent", "sent"]
    assert len(sink.messages) == 2
    deferred = [status(services, f"m{n}") for n in range(5) if status(services, f"m{n}")["status"] == "deferred"]
    assert all(before + 60 < d["deferred_ts"] <= before + 80 for d in deferred)  # the oldest bucket leaves the span
    assert all(d["deferred_reason"] == "rate limit: 2 per minute" and d["attempts"] == 0 for d in deferred)


def test_message_of_a_deleted_account_ends_in_error(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    services.accounts.delete("default", "smtp-main")
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "error" and "deleted" in item["error"]
    assert sink.messages == []


def test_poison_record_fails_alone_and_the_rest_of_the_batch_is_delivered(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    [message] = services.sqs.receive_message(QueueUrl=services.queues.bulk_url)["Messages"]
    good = lambda_record(message, "arn:aws:sqs:us-east-1:123456789012:gmp-bulk", "us-east-1")
    poison = {**good, "messageId": "poison-1", "body": "{not json"}
    answer = sender.handler({"Records": [poison, good]}, LocalLambdaContext("gmp-sender"))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}
    assert len(sink.messages) == 1


def test_claim_with_expired_lease_becomes_sendable_again(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, message_payload("m1"))
    now = int(time.time())
    crashed = services.messages.claim("default", "m1", now=now - 1000, lease_seconds=10)  # a run that died
    assert crashed is not None
    assert services.messages.claim("default", "m1", now=now, lease_seconds=300) is not None  # lease expired
    assert not services.messages.record(crashed, Outcome(MessageStatus.SENT, now))
    assert status(services, "m1")["status"] == "sending"  # the stale holder cannot write its outcome


def test_delivery_activity_log_has_one_line_per_attempt_and_no_password(
    lambda_env: Settings,
    services: Services,
    smtp_sink_factory: SinkFactory,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: io.StringIO,
) -> None:
    sink = smtp_sink_factory("plain", auth=("sender", "pa55-w0rd-xyz"))
    add_account(services, sink)
    monkeypatch.setenv("GMP_LOG_DELIVERY_ACTIVITY", "true")
    from mailproxy.config import settings as cached_settings

    cached_settings.cache_clear()
    runtime.services.cache_clear()
    submit(services, message_payload("m1"), message_payload("m2"))
    drain(services)
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    attempts = [line for line in lines if line.get("message") == "smtp attempt"]
    assert sorted(a["message_id"] for a in attempts) == ["m1", "m2"]
    assert all(a["outcome"] == "sent" and a["account_id"] == "smtp-main" for a in attempts)
    assert "pa55-w0rd-xyz" not in json.dumps(lines)


def test_concurrent_invocations_in_one_process_keep_their_own_batches(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink)
    submit(services, *[message_payload(f"m{n}") for n in range(20)])
    arn = "arn:aws:sqs:us-east-1:123456789012:gmp-bulk"
    batches = []
    while len(batches) < 2:
        received = services.sqs.receive_message(QueueUrl=services.queues.bulk_url, MaxNumberOfMessages=10)
        batches.append([lambda_record(m, arn, "us-east-1") for m in received.get("Messages", [])])
    start = threading.Barrier(2)

    def invoke(records: list[dict[str, Any]]) -> None:
        start.wait()
        sender.handler({"Records": records}, LocalLambdaContext("gmp-sender"))

    runs = [threading.Thread(target=invoke, args=(batch,)) for batch in batches]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    handled = [QueueEntry.parse(r["body"]).message_id for batch in batches for r in batch]
    assert {status(services, i)["status"] for i in handled} == {"sent"}
    assert len(sink.messages) == len(handled)
