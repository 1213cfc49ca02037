"""SQS-triggered sender: delivers a batch and reports partial batch failures (never fails the whole batch)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy import runtime
from mailproxy.dal.queues import QueueEntry, ReceivedRecord
from mailproxy.logic.delivery import BatchDelivery
from mailproxy.observability import logger, metrics, tracer


def _entries(event: dict[str, Any]) -> list[QueueEntry]:
    entries = []
    for record in event.get("Records", []):
        try:
            entries.append(QueueEntry.parse(record["body"]))
        except (KeyError, TypeError, ValueError):
            continue  # a poison record fails on its own in the record handler
    return entries


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    services = runtime.services()
    with BatchDelivery(
        services,
        correlation_key=runtime.correlation_key(services.settings),
        logger=logger,
        metrics=metrics,
        remaining_seconds=(lambda: remaining() / 1000) if remaining else None,
    ) as delivery:
        delivery.prepare(_entries(event))

        def deliver(record: SQSRecord) -> str:
            return delivery.deliver(QueueEntry.parse(record.body), ReceivedRecord.from_lambda(record.raw_event))

        # One processor per invocation: the local runner calls this handler from several threads at once.
        processor = BatchProcessor(event_type=EventType.SQS)
        response = process_partial_response(event=event, record_handler=deliver, processor=processor, context=context)
        logger.info("batch delivered", extra={"records": len(event.get("Records", [])), **delivery.outcomes})
    return dict(response)
