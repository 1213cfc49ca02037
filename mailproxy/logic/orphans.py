"""What the sender does with a queue record whose claim was refused (docs/reliability.md, "Lost enqueue").

Ingestion enqueues before it writes, and a message sent at once has no entry in the sweep's due index: its
queue record is its only way to a sender. So a refused claim is not always a duplicate to drop:
- no status item: the record arrived a moment before its item (the API writes the chunk right now), or it
  outlived an API call that failed after the enqueue and never answered 200 for it;
- a live claim of another sender, on a record SQS delivers again (an earlier receive crashed or failed):
  the claim may be the dead one's, and this record is the way back once its lease is over."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mailproxy.dal.messages import Claim
from mailproxy.dal.queues import QueueEntry, ReceivedRecord
from mailproxy.services import Services

# Longer than any API call can still be writing (API Gateway ends a request at 29 s): an older record's
# message was never stored.
ORPHAN_AGE_SECONDS = 60
# The first retry of a young record: the API is most likely writing the record's chunk right now.
FIRST_RETRY_SECONDS = 5


class RetryRecord(Exception):
    """Fails the record (a batch-item failure), so that SQS delivers it again."""


def refused_claim(
    services: Services,
    entry: QueueEntry,
    claim: Claim,
    record: ReceivedRecord | None,
    *,
    now: float,
    logger: Logger,
    metrics: Metrics,
) -> str:
    """ "skipped" or "orphan_dropped" (the record is deleted), or raises RetryRecord."""
    if not claim.stored:
        return _orphan(services, entry, record, now=now, logger=logger, metrics=metrics)
    if claim.in_flight and record is not None and record.receive_count > 1:
        # Back after the queue's visibility timeout (which outlasts the lease in a deployment): by then the
        # claim has recorded its outcome, or its lease is over and this record takes it over.
        raise RetryRecord(f"{entry.tenant_id}/{entry.message_id}: claimed by a sender that may have died")
    return "skipped"  # a duplicate: already claimed, sent, ended, suspended, or not due yet


def _orphan(
    services: Services,
    entry: QueueEntry,
    record: ReceivedRecord | None,
    *,
    now: float,
    logger: Logger,
    metrics: Metrics,
) -> str:
    """A young record is retried soon, at most twice within ORPHAN_AGE_SECONDS (far from the queue's receive
    limit); an older one, or one whose age is unknown, is dropped."""
    age = None if record is None else now - record.sent_at
    if record is not None and age is not None and age < ORPHAN_AGE_SECONDS:
        wait = FIRST_RETRY_SECONDS if age < FIRST_RETRY_SECONDS else int(ORPHAN_AGE_SECONDS - age) + 1
        services.queues.retry_after(record, wait)
        raise RetryRecord(f"{entry.tenant_id}/{entry.message_id}: no status item yet; retried in {wait} s")
    logger.warning(
        "queue record of a message that was never stored; dropped",
        extra={"tenant_id": entry.tenant_id, "message_id": entry.message_id, "age_seconds": age},
    )
    metrics.add_metric(name="OrphanQueueRecord", unit=MetricUnit.Count, value=1)
    return "orphan_dropped"
