"""Drives the sender handler as Lambda's SQS event source mapping would: receive up to 10 records,
call the handler with an SQS event, delete only the records it did not report as failed."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from mailproxy_local.lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
logger = Logger(child=True)


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsPoller:
    """Polls the urgent queue before the bulk one, so bulk mail never delays urgent mail."""

    def __init__(
        self,
        sqs: Any,
        queue_urls: list[str],
        handler: Handler,
        *,
        region: str = "us-east-1",
        function_timeout: float = 60.0,
    ) -> None:
        self._sqs = sqs
        self._queues = [
            (url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
            for url in queue_urls
        ]
        self._handler = handler
        self._region = region
        self._timeout = function_timeout
        self.batches = 0

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive on the first queue that has records; returns how many records were handled."""
        for index, (url, arn) in enumerate(self._queues):
            last = index == len(self._queues) - 1
            messages = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait_seconds if last else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if messages:
                self._invoke(url, arn, messages)
                return len(messages)
        return 0

    def _invoke(self, url: str, arn: str, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [lambda_record(m, arn, self._region) for m in messages]}
        try:
            response = self._handler(event, LocalLambdaContext("gmp-sender", timeout_seconds=self._timeout))
        except Exception:
            logger.exception("sender invocation failed; the whole batch returns after the visibility timeout")
            return
        self.batches += 1
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)]
            )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except Exception:
                logger.exception("poll failed; retrying")
                stop.wait(1.0)
