"""Stream batches that Lambda gave up on, read again. The stream reporter's event source mapping retries a
failing batch (an outbox write failing: an AWS fault) `STREAM_RETRY_ATTEMPTS` times, bisecting it; then it
sends the batch's description (its shard and first and last sequence numbers, not its records) to the
stream-failures queue and goes on (stacks/stream_reporter.py). Without this those outcomes would never be
reported, and after `STREAM_MAX_LAG_SECONDS` cleanup would take them for acknowledged.

The scheduled reporter reads that queue at each run: it reads each described range from the stream again
(the stream keeps records 24 hours) and puts every unreported outcome in it into the report outbox, where it
is retried however long the client is down. A description is deleted once its range is in the outbox; one
whose records the stream no longer holds is logged as an error, counted and deleted (nothing can read them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from mailproxy.logic.stream_reports import unreported_outcome
from mailproxy.services import Services

logger = Logger(child=True)

MAX_DESCRIPTIONS_PER_RUN = 10  # one receive: a few batches of 100 records; the rest at the next run
# GetRecords may answer an empty page before the end of a range; an open shard at its tip answers them forever.
EMPTY_READS = 3
_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException", "ExpiredIteratorException"}


@dataclass
class RepairRun:
    batches: int = 0  # descriptions read and put right
    outcomes: int = 0  # outcomes put in the outbox
    lost_batches: int = 0  # described ranges the stream no longer holds


@dataclass(frozen=True)
class FailedBatch:
    """What Lambda's on-failure destination says of a DynamoDB Stream batch (`DDBStreamBatchInfo`)."""

    stream_arn: str
    shard_id: str
    first: str
    last: str

    @classmethod
    def of(cls, body: str) -> FailedBatch:
        info = json.loads(body)["DDBStreamBatchInfo"]
        return cls(info["streamArn"], info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"])


def replay_failed_batches(services: Services, streams: Any, queue_url: str) -> RepairRun:
    """Read the described batches again into the outbox (see the module docstring). AWS faults other than
    records that are gone are raised: the description stays on the queue for the next run."""
    run = RepairRun()
    received = services.sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=MAX_DESCRIPTIONS_PER_RUN, WaitTimeSeconds=0
    )
    for message in received.get("Messages", []):
        try:
            batch = FailedBatch.of(message["Body"])
        except (ValueError, KeyError, TypeError):
            logger.error(
                "stream-failures message is no batch description; deleted", extra={"body": message["Body"][:300]}
            )
        else:
            try:
                run.outcomes += _replay(services, streams, batch)
                run.batches += 1
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in _GONE:
                    raise
                run.lost_batches += 1
                logger.error(
                    "a failed stream batch is no longer in the stream: its outcomes are not reported",
                    extra={"shard_id": batch.shard_id, "first": batch.first, "last": batch.last},
                )
        services.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return run


def _replay(services: Services, streams: Any, batch: FailedBatch) -> int:
    iterator = streams.get_shard_iterator(
        StreamArn=batch.stream_arn,
        ShardId=batch.shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=batch.first,
    )["ShardIterator"]
    last = int(batch.last)
    put = empty = 0
    while iterator and empty < EMPTY_READS:
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        records = answer.get("Records", [])
        empty = 0 if records else empty + 1
        for record in records:
            if int(record["dynamodb"]["SequenceNumber"]) > last:
                return put
            outcome = unreported_outcome(record)
            if outcome is not None and services.outbox.put(outcome.item):
                put += 1
        iterator = answer.get("NextShardIterator")
    return put
