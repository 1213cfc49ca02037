"""Stream batches the stream reporter's event source mapping gave up on: Lambda describes each on the
stream-failures queue (the message shape AWS documents for a DynamoDB Stream on-failure destination), and the
scheduled reporter reads the described records again from the stream into the outbox and reports them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.reporter.handler import handler as reporter_handler
from mailproxy.config import Settings
from mailproxy.dal.schema import LocalResources
from mailproxy.logic.stream_repair import replay_failed_batches
from mailproxy.logic.stream_reports import unreported_outcome
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from tests.conftest import make_settings
from tests.integration.test_reporter import record_outcomes
from tests.report_server import ReportEndpoint, report_endpoint
from tests.streams import stream_arn, streams_client


@pytest.fixture
def failures_queue(aws: LocalResources) -> str:
    import boto3

    url: str = boto3.client("sqs").create_queue(QueueName=f"stream-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return url


@pytest.fixture
def client() -> Iterator[ReportEndpoint]:
    with report_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def settings(aws: LocalResources, failures_queue: str, client: ReportEndpoint) -> Settings:
    return make_settings(aws, stream_failures_queue_url=failures_queue, client_sync_url=client.url)


def outcome_records(services: Services) -> tuple[str, list[dict[str, Any]]]:
    """The shard and the stream records that carry an unreported outcome, in order."""
    streams = streams_client(services)
    arn = stream_arn(services)
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]  # type: ignore[attr-defined]
    iterator = streams.get_shard_iterator(  # type: ignore[attr-defined]
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]  # type: ignore[attr-defined]
    return shard["ShardId"], [r for r in records if unreported_outcome(r) is not None]


def describe_failed_batch(services: Services, queue_url: str, shard_id: str, first: str, last: str) -> None:
    """What Lambda sends to an on-failure destination when a stream batch's retries are exhausted."""
    body = {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:gmp-stream-reporter",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 101,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2030-01-01T10:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2030-01-01T09:59:58Z",
            "approximateArrivalOfLastRecord": "2030-01-01T09:59:59Z",
            "batchSize": 2,
            "streamArn": stream_arn(services),
        },
    }
    services.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))


def queue_is_empty(services: Services, queue_url: str) -> bool:
    attributes = services.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_batch_lambda_gave_up_on_is_read_again_into_the_outbox_and_reported_by_the_next_run(
    lambda_env: Settings, services: Services, failures_queue: str, client: ReportEndpoint
) -> None:
    record_outcomes(services, 3)
    shard_id, records = outcome_records(services)
    first, last = (str(r["dynamodb"]["SequenceNumber"]) for r in (records[0], records[1]))
    describe_failed_batch(services, failures_queue, shard_id, first, last)  # the first two outcomes' batch

    run = reporter_handler({"source": "schedule"}, LocalLambdaContext("gmp-reporter"))

    assert (run["replayed_outcomes"], run["lost_stream_batches"]) == (2, 0)
    replayed = {unreported_outcome(r).item["id"] for r in records[:2]}  # type: ignore[union-attr]
    assert {i["id"] for i in client.items()} == replayed  # the third outcome was not in the failed batch
    assert queue_is_empty(services, failures_queue)
    assert services.outbox.pending(10) == []


class TrimmedStream:
    """The stream a day later: what DynamoDB Streams answers for records past its 24 hours (moto keeps every
    record, so the answer is played here)."""

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        error = {"Error": {"Code": "TrimmedDataAccessException", "Message": "records beyond the trim horizon"}}
        raise ClientError(error, "GetShardIterator")  # type: ignore[arg-type]


def test_a_described_batch_the_stream_no_longer_holds_is_counted_lost_and_dropped(
    services: Services, failures_queue: str
) -> None:
    record_outcomes(services, 1)
    shard_id, records = outcome_records(services)
    sequence = str(records[0]["dynamodb"]["SequenceNumber"])
    describe_failed_batch(services, failures_queue, shard_id, sequence, sequence)

    run = replay_failed_batches(services, TrimmedStream(), failures_queue)

    assert (run.batches, run.outcomes, run.lost_batches) == (0, 0, 1)
    assert queue_is_empty(services, failures_queue)
    assert services.outbox.pending(10) == []


def test_a_description_delivered_twice_leaves_each_outcome_in_the_outbox_once(
    services: Services, failures_queue: str
) -> None:
    record_outcomes(services, 2)
    shard_id, records = outcome_records(services)
    first, last = (str(r["dynamodb"]["SequenceNumber"]) for r in (records[0], records[-1]))
    for _ in range(2):  # SQS delivers at least once
        describe_failed_batch(services, failures_queue, shard_id, first, last)

    run = replay_failed_batches(services, streams_client(services), failures_queue)

    assert run.batches == 2 and run.lost_batches == 0
    assert sorted(i["id"] for i in services.outbox.pending(10)) == ["m0", "m1"]
