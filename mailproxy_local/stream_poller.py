"""Drives the stream reporter handler as Lambda's DynamoDB event source mapping would
(stacks/stream_reporter.py): read a shard's records in order, keep those its filter passes (`STREAM_FILTER`),
invoke the handler with a Lambda-shaped event, and go on past the batch unless the handler named failed
records (`batchItemFailures`): then the batch is read again from the first of them, up to
`STREAM_RETRY_ATTEMPTS` times, as Lambda retries it; an invocation that raises counts as all failed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from mailproxy.logic.stream_reports import STREAM_BATCH_SIZE, STREAM_FILTER, STREAM_RETRY_ATTEMPTS
from mailproxy_local.lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
logger = Logger(child=True)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda hands it over: its source ARN added, the creation time in epoch seconds."""
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        data["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": data, "eventSource": "aws:dynamodb", "eventSourceARN": stream_arn}


def matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    """A Lambda filter pattern of exact values (`STREAM_FILTER`): every key present, each leaf one of its list."""
    for key, wanted in pattern.items():
        value = record.get(key)
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not matches(wanted, value):
                return False
        elif value not in wanted:
            return False
    return True


class StreamPoller:
    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Handler,
        *,
        starting_position: str = "LATEST",
        batch_size: int = STREAM_BATCH_SIZE,
        function_timeout: float = 60.0,
    ) -> None:
        self._streams = streams
        self._arn = stream_arn
        self._handler = handler
        self._batch_size = batch_size
        self._timeout = function_timeout
        shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self._iterators: dict[str, str] = {
            shard["ShardId"]: streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType=starting_position
            )["ShardIterator"]
            for shard in shards
        }
        self._retries: dict[str, int] = {}  # shard -> attempts at its current batch
        self.batches = 0

    def poll_once(self) -> int:
        """One batch from each shard; returns how many records were read."""
        return sum(self._poll_shard(shard_id) for shard_id in list(self._iterators))

    def drain(self, max_polls: int = 1000) -> int:
        """Poll until the stream has nothing new (tests: everything written so far has been handled)."""
        handled = 0
        for _ in range(max_polls):
            count = self.poll_once()
            if not count:
                break
            handled += count
        return handled

    def run(self, stop: threading.Event, idle_seconds: float = 0.5) -> None:
        while not stop.is_set():
            try:
                if not self.poll_once():
                    stop.wait(idle_seconds)
            except Exception:
                logger.exception("stream poll failed; retrying")
                stop.wait(1.0)

    def _poll_shard(self, shard_id: str) -> int:
        answer = self._streams.get_records(ShardIterator=self._iterators[shard_id], Limit=self._batch_size)
        records = answer.get("Records", [])
        if not records:
            self._iterators[shard_id] = answer.get("NextShardIterator") or self._iterators[shard_id]
            return 0
        passed = [lambda_record(r, self._arn) for r in records if matches(STREAM_FILTER, r)]
        failed = self._invoke(passed) if passed else None
        if failed is None or self._retries.get(shard_id, 0) >= STREAM_RETRY_ATTEMPTS:
            if failed is not None:
                logger.error("stream records dropped after their retries", extra={"from_sequence": failed})
            self._retries.pop(shard_id, None)
            self._iterators[shard_id] = answer["NextShardIterator"]
        else:
            self._retries[shard_id] = self._retries.get(shard_id, 0) + 1
            self._iterators[shard_id] = self._streams.get_shard_iterator(
                StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=failed
            )["ShardIterator"]
        return len(records)

    def _invoke(self, records: list[dict[str, Any]]) -> str | None:
        """The sequence number to read again from, or None when the batch is done."""
        try:
            response = self._handler(
                {"Records": records}, LocalLambdaContext("gmp-stream-reporter", timeout_seconds=self._timeout)
            )
        except Exception:
            logger.exception("stream reporter invocation failed; the batch is read again")
            return str(records[0]["dynamodb"]["SequenceNumber"])
        self.batches += 1
        failures = [str(f["itemIdentifier"]) for f in (response or {}).get("batchItemFailures", [])]
        return min(failures, key=int) if failures else None
