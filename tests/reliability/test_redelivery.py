"""SQS delivers at least once and Lambda retries: a sender killed mid-batch, the same record three times,
two senders racing, a record lost, a poison record. The claim (a conditional write) and the lease must
turn all of that into one SMTP transaction per message, and a record that can never be processed must
end in the dead-letter queue."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from functions.sender import handler as sender
from mailproxy.dal.schema import LOCAL_MAX_RECEIVE_COUNT
from mailproxy.logic.orphans import ORPHAN_AGE_SECONDS
from mailproxy.logic.smtp import SmtpPool
from mailproxy.models import AccountIn
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import SqsPoller, lambda_record
from tests.conftest import message_payload
from tests.reliability.harness import World, assert_each_once
from tests.smtp_servers import SinkFactory, SmtpSink

ARN = "arn:aws:sqs:us-east-1:123456789012:gmp-bulk"


class Killed(BaseException):
    """The sender process dies: not an Exception, so neither Powertools nor the poller catch it."""


def with_sink(world: World, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.sinks.append(sink)
    return sink


def set_visibility(world: World, seconds: int) -> None:
    for url in (world.services.queues.urgent_url, world.services.queues.bulk_url):
        world.services.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})


@contextmanager
def sender_killed_at(message_id_header: str, *, after_smtp: bool) -> Iterator[list[str]]:
    """While active, the sender process dies delivering this message: just before its SMTP transaction,
    or just after the server's 250 (before the outcome is written). Yields a list recording the kill."""
    original = SmtpPool.send
    killed: list[str] = []

    def send(pool: SmtpPool, key: str, account: Any, message: Any, envelope: Any, **options: Any) -> Any:
        if str(message["Message-ID"]) == message_id_header and not killed:
            killed.append(message_id_header)
            if after_smtp:
                result = original(pool, key, account, message, envelope, **options)
                assert result.outcome.value == "sent"
            raise Killed
        return original(pool, key, account, message, envelope, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmtpPool, "send", send)
        yield killed


def restart(world: World) -> None:
    world._poller = None  # a new process: a new poller; same queues, same table


def test_sender_killed_mid_batch_after_the_claim_then_restarted(world: World, smtp_sink_factory: SinkFactory) -> None:
    with_sink(world, smtp_sink_factory)
    set_visibility(world, 2)
    ids = [f"m{n}" for n in range(5)]
    world.submit(*[message_payload(i) for i in ids])
    victim = world.status("m2")["message_id_header"]
    with sender_killed_at(victim, after_smtp=False) as killed, pytest.raises(Killed):
        world.drain()
    assert killed and world.status("m2")["status"] == "sending"
    restart(world)

    assert world.poller.poll_once() == 0  # the crashed batch's records are still invisible
    time.sleep(2.1)  # their visibility timeout passes: SQS delivers them again
    world.drain()
    item = world.status("m2")
    assert item["status"] == "sending", "the redelivered record must not steal a live claim"
    assert world.transactions()[victim] == 0

    world.clock.advance(world.services.settings.lease_seconds + 1)  # the dead sender's lease expires
    world.report()  # the scheduled sweep finds the expired claim and enqueues it again
    world.settle(ids)
    assert_each_once(world, ids)
    assert world.status("m2")["claims"] == 2


def test_crash_between_the_250_and_the_outcome_write_sends_one_duplicate_with_the_same_message_id(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    """The one double-send window SMTP leaves: the server accepted the message, the sender died before
    recording it. After the lease the message is sent again - once more, never more - with the same
    Message-ID, so a receiver that de-duplicates on it sees one message (docs/reliability.md)."""
    sink = with_sink(world, smtp_sink_factory)
    set_visibility(world, 1)
    world.submit(message_payload("m0"), message_payload("m1"))
    header = world.status("m0")["message_id_header"]
    with sender_killed_at(header, after_smtp=True), pytest.raises(Killed):
        world.drain()
    restart(world)
    assert world.status("m0")["status"] == "sending" and world.transactions()[header] == 1

    time.sleep(1.2)
    world.settle(["m0", "m1"])
    copies = [m for m in sink.messages if str(m.message["Message-ID"]) == header]
    assert len(copies) == 2, "exactly one duplicate"
    assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"]
    assert copies[0].message["Date"] is not None
    assert len({str(m.message["Message-ID"]) for m in sink.messages}) == 2  # de-duplicated: one each
    assert world.status("m0")["status"] == "sent" and world.final_reports() == Counter({"m0": 1, "m1": 1})


def _one_record(world: World) -> dict[str, Any]:
    [message] = world.services.sqs.receive_message(QueueUrl=world.services.queues.bulk_url)["Messages"]
    return lambda_record(message, ARN, "us-east-1")


def test_same_record_delivered_three_times_in_every_way(world: World, smtp_sink_factory: SinkFactory) -> None:
    with_sink(world, smtp_sink_factory)
    world.submit(message_payload("m0"))
    record = _one_record(world)
    copies = [{**record, "messageId": f"copy-{n}"} for n in range(3)]
    # three copies in one batch
    answer = sender.handler({"Records": copies}, LocalLambdaContext("gmp-sender"))
    assert answer == {"batchItemFailures": []}
    # three invocations at once
    start = threading.Barrier(3)

    def invoke() -> None:
        start.wait()
        sender.handler({"Records": [record]}, LocalLambdaContext("gmp-sender"))

    racers = [threading.Thread(target=invoke) for _ in range(3)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    # and three more, one after the other (Lambda retries)
    for _ in range(3):
        sender.handler({"Records": [record]}, LocalLambdaContext("gmp-sender"))
    world.settle(["m0"])
    assert_each_once(world, ["m0"])
    assert world.status("m0")["claims"] == 1


def test_two_sender_invocations_racing_over_the_same_twenty_messages(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    sink = with_sink(world, smtp_sink_factory)
    sink.stall("MAIL", 0.01, times=None)  # keeps both racers inside their SMTP sessions together
    ids = [f"m{n}" for n in range(20)]
    world.submit(*[message_payload(i) for i in ids])
    records: list[dict[str, Any]] = []
    while len(records) < 20:
        answer = world.services.sqs.receive_message(QueueUrl=world.services.queues.bulk_url, MaxNumberOfMessages=10)
        records += [lambda_record(m, ARN, "us-east-1") for m in answer.get("Messages", [])]
    batches = [records[:10], records[10:]]
    start = threading.Barrier(2)

    def racer(order: int) -> None:
        start.wait()
        for batch in batches[::order]:
            sender.handler({"Records": batch[::order]}, LocalLambdaContext("gmp-sender"))

    threads = [threading.Thread(target=racer, args=(order,)) for order in (1, -1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.settle(ids)
    assert_each_once(world, ids)
    claims = {
        i: (world.status(i)["claims"], world.status(i)["attempts"], world.status(i).get("deferred_reason")) for i in ids
    }
    bad = {k: v for k, v in claims.items() if v[0] != 1}
    assert not bad, str(bad)


def test_record_sqs_did_not_take_at_ingestion_is_found_by_the_sweep(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    """SendMessageBatch refused the record (a Failed entry): the message is stored with a due entry, and the
    sweep enqueues it once its grace period is over. (A message SQS took has no due entry: SQS does not
    lose an acknowledged record; docs/reliability.md, "Lost enqueue".)"""
    with_sink(world, smtp_sink_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(world.services.queues, "enqueue", lambda entries: list(entries))  # every entry refused
        world.submit(message_payload("m0"))
    assert world.status("m0")["due_ts"] and world.drain() == 0
    world.report()
    assert world.status("m0")["status"] == "queued"  # not yet: the grace period protects a slow enqueue
    world.clock.advance(world.services.settings.enqueue_grace + 1)
    world.settle(["m0"])
    assert_each_once(world, ["m0"])


def dead_letters(world: World) -> list[str]:
    dlq = world.services.sqs.get_queue_url(QueueName="gmp-bulk-dlq")["QueueUrl"]
    answer = world.services.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)
    return [m["Body"] for m in answer.get("Messages", [])]


@pytest.mark.parametrize("body", ["{not json", '{"t": "default"}', "[]"])
def test_poison_record_ends_in_the_dead_letter_queue_and_the_rest_is_delivered(
    world: World, smtp_sink_factory: SinkFactory, body: str
) -> None:
    with_sink(world, smtp_sink_factory)
    set_visibility(world, 0)  # a failed record is visible again at once: receive after receive
    world.services.sqs.send_message(QueueUrl=world.services.queues.bulk_url, MessageBody=body)
    world.submit(message_payload("m0"), message_payload("m1"))
    for _ in range(LOCAL_MAX_RECEIVE_COUNT + 2):
        world.poller.poll_once()
    assert dead_letters(world) == [body]
    assert world.poller.poll_once() == 0  # nothing left to process
    world.settle(["m0", "m1"])
    assert_each_once(world, ["m0", "m1"])


def test_record_for_an_unknown_message_is_dropped_not_retried(world: World, smtp_sink_factory: SinkFactory) -> None:
    with_sink(world, smtp_sink_factory)
    set_visibility(world, 0)
    body = '{"t": "default", "id": "never-stored", "a": "smtp-main", "p": 2}'
    world.services.sqs.send_message(QueueUrl=world.services.queues.bulk_url, MessageBody=body)
    world.clock.advance(ORPHAN_AGE_SECONDS)  # a young one may be waiting for its write (test_lost_enqueue.py)
    assert world.drain() == 1
    assert world.poller.poll_once() == 0 and dead_letters(world) == []


def test_concurrent_invocations_in_one_process_each_deliver_their_own_batch(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    """`make run` calls the sender handler from several poller threads at once: each invocation must keep
    its own records and record handler (a module-level BatchProcessor once mixed them up)."""
    sink = with_sink(world, smtp_sink_factory)
    ids = ["m0", "m1", "m2"]
    world.submit(*[message_payload(i) for i in ids])
    records: dict[str, dict[str, Any]] = {}
    while len(records) < 3:
        for message in world.services.sqs.receive_message(QueueUrl=world.services.queues.bulk_url)["Messages"]:
            records[json.loads(message["Body"])["id"]] = lambda_record(message, ARN, "us-east-1")
    sink.stall("MAIL", 0.6, times=1)  # the first invocation is still in m0's SMTP session when the second starts
    answers: dict[str, Any] = {}

    def first() -> None:
        answers["A"] = sender.handler({"Records": [records["m0"], records["m1"]]}, LocalLambdaContext("gmp-sender"))

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.2)
    answers["B"] = sender.handler({"Records": [records["m2"]]}, LocalLambdaContext("gmp-sender"))
    thread.join()
    assert answers == {"A": {"batchItemFailures": []}, "B": {"batchItemFailures": []}}
    assert world.statuses(ids) == {"m0": "sent", "m1": "sent", "m2": "sent"}, {
        i: world.status(i).get("error") for i in ids
    }


def test_local_poller_survives_a_crashing_invocation_and_keeps_polling(
    world: World, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run`'s poller thread: an invocation that raises (an Exception, e.g. DynamoDB down for the
    whole batch) is logged and the records come back; the thread goes on polling."""
    with_sink(world, smtp_sink_factory)
    set_visibility(world, 1)
    world.submit(message_payload("m0"))
    calls: list[int] = []

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("DynamoDB unavailable")
        return sender.handler(event, context)

    poller = SqsPoller(world.services.sqs, [world.services.queues.bulk_url], flaky)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 8
    while world.status("m0")["status"] != "sent" and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=5)
    assert len(calls) >= 2
    world.settle(["m0"])
    assert_each_once(world, ["m0"])


def test_an_account_whose_password_cannot_be_decrypted_fails_only_its_own_messages(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    good = with_sink(world, smtp_sink_factory)
    world.services.accounts.put(AccountIn(id="good", **good.account()))
    broken = smtp_sink_factory("plain", auth=("u", "first-password"))
    world.services.accounts.put(AccountIn(id="broken", **broken.account()))
    world.services.accounts.put(AccountIn(id="donor", **broken.account(password="another-password")))
    table = world.services.settings.config_table
    donor = world.services.dynamodb.get_item(
        TableName=table, Key={"pk": {"S": "ACCOUNT#default"}, "sk": {"S": "donor"}}
    )
    world.services.dynamodb.update_item(  # the ciphertext of another record: it will not decrypt here
        TableName=table,
        Key={"pk": {"S": "ACCOUNT#default"}, "sk": {"S": "broken"}},
        UpdateExpression="SET password_enc = :p",
        ExpressionAttributeValues={":p": donor["Item"]["password_enc"]},
    )
    world.submit(message_payload("fine", account_id="good"), message_payload("stuck", account_id="broken"))
    world.drain()
    assert world.status("fine")["status"] == "sent"
