"""The two delivery queues: urgent (priorities 0-1) and bulk (2-3), so bulk mail never delays urgent mail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailproxy.models import Priority

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef
else:
    SQSClient = Any

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit; later deferrals are left to the sweep


@dataclass(frozen=True)
class QueueEntry:
    tenant_id: str
    message_id: str
    account_id: str
    priority: int
    delay: int = 0

    def body(self) -> str:
        return json.dumps({"t": self.tenant_id, "id": self.message_id, "a": self.account_id, "p": self.priority})

    @classmethod
    def parse(cls, body: str) -> QueueEntry:
        data = json.loads(body)
        return cls(tenant_id=data["t"], message_id=data["id"], account_id=data["a"], priority=int(data["p"]))


@dataclass(frozen=True)
class ReceivedRecord:
    """What the sender needs of a received SQS record besides its body: its age and a handle to retry it."""

    sent_at: float  # epoch seconds (the SentTimestamp attribute)
    receive_count: int  # ApproximateReceiveCount: above 1, an earlier receive did not end in a delete
    receipt_handle: str
    queue_arn: str

    @classmethod
    def from_lambda(cls, record: dict[str, Any]) -> ReceivedRecord | None:
        """None for a record without its attributes (Lambda always sends them; a hand-made event may not)."""
        try:
            return cls(
                sent_at=int(record["attributes"]["SentTimestamp"]) / 1000,
                receive_count=int(record["attributes"].get("ApproximateReceiveCount", 1)),
                receipt_handle=record["receiptHandle"],
                queue_arn=record["eventSourceARN"],
            )
        except (KeyError, TypeError, ValueError):
            return None


class DeliveryQueues:
    def __init__(self, sqs: SQSClient, urgent_url: str, bulk_url: str) -> None:
        self._sqs = sqs
        self.urgent_url = urgent_url
        self.bulk_url = bulk_url

    def url_for(self, priority: int) -> str:
        return self.urgent_url if Priority(priority).is_urgent else self.bulk_url

    def enqueue(self, entries: list[QueueEntry]) -> list[QueueEntry]:
        """SendMessageBatch in chunks of 10 per queue; returns the entries SQS did not take."""
        failed: list[QueueEntry] = []
        by_queue: dict[str, list[QueueEntry]] = {}
        for entry in entries:
            by_queue.setdefault(self.url_for(entry.priority), []).append(entry)
        for url, queued in by_queue.items():
            for start in range(0, len(queued), 10):
                chunk = queued[start : start + 10]
                batch: list[SendMessageBatchRequestEntryTypeDef] = [
                    {"Id": str(n), "MessageBody": e.body(), "DelaySeconds": max(0, min(MAX_DELAY_SECONDS, e.delay))}
                    for n, e in enumerate(chunk)
                ]
                answer = self._sqs.send_message_batch(QueueUrl=url, Entries=batch)
                failed.extend(chunk[int(f["Id"])] for f in answer.get("Failed", []))
        return failed

    def retry_after(self, record: ReceivedRecord, seconds: int) -> None:
        """Make a received record visible again after `seconds` (it is reported as a batch-item failure)."""
        queue_name = record.queue_arn.rsplit(":", 1)[-1]
        url = next(u for u in (self.urgent_url, self.bulk_url) if u.rsplit("/", 1)[-1] == queue_name)
        self._sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=seconds
        )

    def depth(self) -> dict[str, int]:
        result = {}
        for name, url in (("urgent", self.urgent_url), ("bulk", self.bulk_url)):
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            result[name] = int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            )
        return result
