"""DynamoDB throttling and SQS errors, injected at the botocore level (see harness.BotocoreFaults): the
error answers go through botocore's parser and its standard-mode retry handler, exactly as real ones.

These tests run against a moto *server* (in a thread, over HTTP) rather than moto in process: moto's
in-process stub answers in the same `before-send` step and would apply each request even when the
injected answer says it failed."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ClientError, EndpointConnectionError
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from mailproxy.dal.schema import LocalResources, create_resources
from mailproxy.models import AccountIn
from mailproxy.services import BOTO_CONFIG
from tests.conftest import AUTH, message_payload
from tests.reliability.harness import BotocoreFaults, World, assert_each_once, sqs_error, throttled
from tests.smtp_servers import SinkFactory, SmtpSink


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> BotocoreFaults:
    return BotocoreFaults(monkeypatch)


@pytest.fixture
def aws(moto_endpoint: str, faults: BotocoreFaults, monkeypatch: pytest.MonkeyPatch) -> LocalResources:
    """Replaces the in-process moto of tests/conftest.py: every client of this test talks to the server."""
    import boto3

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return create_resources(boto3.session.Session())


def sink_account(world: World, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.sinks.append(sink)
    return sink


def visibility(world: World, seconds: int) -> None:
    for url in (world.services.queues.urgent_url, world.services.queues.bulk_url):
        world.services.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})


def is_claim(body: dict[str, Any]) -> bool:
    return ":sending" in body.get("UpdateExpression", "") and "claims + :one" in body.get("UpdateExpression", "")


def is_outcome(body: dict[str, Any]) -> bool:
    return "outcomes = if_not_exists" in body.get("UpdateExpression", "")


def about(message_id: str) -> Any:
    return lambda body: body.get("Key", {}).get("pk", {}).get("S", "").endswith(f"#{message_id}")


def contents_read(body: dict[str, Any]) -> bool:
    tables = body.get("RequestItems", {}).values()
    return any(k.get("sk", {}).get("S") == "CONTENT" for t in tables for k in t.get("Keys", []))


# mailproxy.services.BOTO_CONFIG: standard retry mode; botocore's `retries.max_attempts` counts the
# retries, so a call is tried once plus that many times before its error reaches the proxy's code.
ATTEMPTS = BOTO_CONFIG.retries["max_attempts"] + 1  # type: ignore[attr-defined]


def test_dynamodb_throttling_is_absorbed_by_botocore_retries(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    sink_account(world, smtp_sink_factory)
    ids = [f"m{n}" for n in range(6)]
    faults.add("dynamodb.PutItem", throttled(), times=3)  # ingestion: status items
    faults.add("dynamodb.BatchWriteItem", throttled("ThrottlingException"), times=2)  # ingestion: contents
    world.submit(*[message_payload(i) for i in ids])
    faults.add("dynamodb.UpdateItem", throttled(), times=4, when=is_claim)
    faults.add("dynamodb.UpdateItem", throttled("ThrottlingException"), times=4, when=is_outcome)
    faults.add("dynamodb.BatchGetItem", throttled(), times=2, when=contents_read)
    faults.add("dynamodb.GetItem", throttled(), times=1)
    world.settle(ids)
    assert_each_once(world, ids)
    assert all(world.status(i)["attempts"] == 1 and world.status(i)["claims"] == 1 for i in ids)
    assert [f.hits for f in faults._faults] == [3, 2, 4, 4, 2, 1]  # every injected throttle was met
    assert len(faults.retry_delays) >= 16  # and each one was retried by botocore's retry handler


def test_throttled_claim_beyond_botocore_retries_fails_that_record_alone(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    sink_account(world, smtp_sink_factory)
    visibility(world, 2)
    ids = ["m0", "m1", "m2"]
    world.submit(*[message_payload(i) for i in ids])
    fault = faults.add(
        "dynamodb.UpdateItem", throttled(), times=ATTEMPTS, when=lambda b: is_claim(b) and about("m1")(b)
    )
    handled = 0
    while handled < 3:  # each record once (the failed one stays invisible for 2 s)
        handled += world.poller.poll_once()
    assert fault.hits == ATTEMPTS
    assert world.statuses(ids) == {"m0": "sent", "m1": "queued", "m2": "sent"}  # the record failed, alone
    time.sleep(2.1)  # SQS redelivers the failed record
    world.settle(ids)
    assert_each_once(world, ids)


def test_contents_unreadable_beyond_retries_loses_nothing(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    sink_account(world, smtp_sink_factory)
    visibility(world, 2)
    ids = ["m0", "m1", "m2"]
    world.submit(*[message_payload(i) for i in ids])
    faults.add("dynamodb.BatchGetItem", throttled(), times=ATTEMPTS, when=contents_read)
    world.drain()  # the batch read fails: each record reads its own content, or fails alone and comes back
    assert set(world.statuses(ids).values()) <= {"queued", "sent"}  # nothing claimed and left behind
    time.sleep(2.1)
    world.settle(ids)
    assert_each_once(world, ids)


def test_batch_read_left_unprocessed_by_throttling_does_not_lose_the_message(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    def unprocessed(request: AWSPreparedRequest) -> Any:
        from tests.reliability.harness import json_response

        asked = json.loads(request.body if isinstance(request.body, bytes | str) else b"{}")["RequestItems"]
        return json_response(request, {"Responses": {t: [] for t in asked}, "UnprocessedKeys": asked})

    sink_account(world, smtp_sink_factory)
    visibility(world, 1)
    world.submit(message_payload("m0"))
    faults.add("dynamodb.BatchGetItem", unprocessed, times=10, when=contents_read)  # a throttled partition
    world.drain()
    time.sleep(1.1)
    world.settle(["m0"])
    assert world.status("m0")["status"] == "sent", world.status("m0").get("error")
    assert_each_once(world, ["m0"])


def test_outcome_write_failing_after_the_250_is_the_bounded_double_send_window(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    """The server said 250, then DynamoDB refused the outcome write through all of botocore's attempts: the record
    fails, the claim is left to expire, and the sweep sends the message once more - with the same
    Message-ID - and never a third time (docs/reliability.md)."""
    sink = sink_account(world, smtp_sink_factory)
    visibility(world, 1)
    world.submit(message_payload("m0"))
    header = world.status("m0")["message_id_header"]
    faults.add("dynamodb.UpdateItem", throttled(), times=ATTEMPTS, when=is_outcome)
    world.drain()
    assert world.status("m0")["status"] == "sending" and world.transactions()[header] == 1
    time.sleep(1.1)
    world.drain()  # the redelivered record finds a live claim: skipped, no second send yet
    assert world.transactions()[header] == 1
    world.settle(["m0"])
    assert world.transactions()[header] == 2
    assert {str(m.message["Message-ID"]) for m in sink.messages} == {header}
    assert world.final_reports() == Counter({"m0": 1})


def test_sqs_errors_at_ingestion_answer_503_and_the_client_retry_delivers(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults, api: TestClient
) -> None:
    sink_account(world, smtp_sink_factory)
    fault = faults.add("sqs.SendMessageBatch", sqs_error(), times=2)  # transient: retried by botocore
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m0")]})
    assert answer.status_code == 200 and answer.json()["queued"] == 1 and fault.hits == 2

    faults.add("sqs.SendMessageBatch", sqs_error("ServiceUnavailable", 503), times=ATTEMPTS)  # an outage
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1")]})
    assert answer.status_code == 503 and "retry" in answer.json()["error"]
    # Enqueued first, written after (docs/reliability.md, "Lost enqueue"): the outage left nothing stored,
    # and the 503 tells the client to retry, which stores and enqueues m1.
    assert world.services.messages.get("default", "m1") is None
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1")]})
    assert answer.status_code == 200 and answer.json()["queued"] == 1
    world.settle(["m0", "m1"])
    assert_each_once(world, ["m0", "m1"])


def test_sqs_delete_failing_after_delivery_redelivers_and_is_skipped(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    sink_account(world, smtp_sink_factory)
    visibility(world, 1)
    ids = ["m0", "m1"]
    world.submit(*[message_payload(i) for i in ids])
    faults.add("sqs.DeleteMessageBatch", sqs_error("InternalError", 500), times=ATTEMPTS)
    with pytest.raises(ClientError):
        world.poller.poll_once()  # delivered, but the records could not be deleted
    assert set(world.statuses(ids).values()) == {"sent"}
    time.sleep(1.1)
    assert world.drain() >= 2  # SQS delivers them again ...
    world.settle(ids)
    assert_each_once(world, ids)  # ... and the claim turns them away


def test_sqs_receive_failing_then_recovering(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    sink_account(world, smtp_sink_factory)
    world.submit(message_payload("m0"))
    faults.add(
        "sqs.ReceiveMessage",
        lambda request: (_ for _ in ()).throw(EndpointConnectionError(endpoint_url=request.url)),
        times=ATTEMPTS,
    )
    with pytest.raises(EndpointConnectionError):
        world.poller.poll_once()  # the local poller's run loop logs this and polls again
    world.settle(["m0"])
    assert_each_once(world, ["m0"])


def test_re_enqueue_of_a_deferred_message_failing_leaves_it_to_the_sweep(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    sink = sink_account(world, smtp_sink_factory)
    sink.fail("RCPT", "451 4.7.1 try later", times=1)
    world.submit(message_payload("m0"))
    delayed = lambda body: any(e.get("DelaySeconds", 0) > 0 for e in body.get("Entries", []))  # noqa: E731
    fault = faults.add("sqs.SendMessageBatch", sqs_error(), times=ATTEMPTS, when=delayed)
    world.drain()
    assert fault.hits == ATTEMPTS and world.status("m0")["status"] == "deferred"
    world.settle(["m0"])
    assert_each_once(world, ["m0"])


def test_report_marking_failing_after_the_client_acknowledged_resends_the_report(
    world: World, smtp_sink_factory: SinkFactory, faults: BotocoreFaults
) -> None:
    """Reports are at least once: if the outbox cannot be updated after the client's 2xx, the next run
    posts the same outcome again (the client keys on `id`); none is lost."""
    sink_account(world, smtp_sink_factory)
    world.submit(message_payload("m0"), message_payload("m1"))
    world.drain()
    world.stream_to_outbox()  # the scheduled reporter's case: it marks what it posted from the outbox
    marking = lambda body: "reported_ts = :now" in body.get("UpdateExpression", "")  # noqa: E731
    faults.add("dynamodb.UpdateItem", throttled(), times=ATTEMPTS, when=lambda b: marking(b) and about("m0")(b))
    # The failure is the tenant's alone: the run goes on and counts it (test_poison_reports.py).
    assert world.report()["failures"] == 1
    world.report()
    reports = world.final_reports()
    assert reports["m0"] == 2 and reports["m1"] in (1, 2)
    assert world.services.outbox.pending(10) == []
