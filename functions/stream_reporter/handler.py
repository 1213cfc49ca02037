"""Stream reporter: delivery reports within seconds, from the messages table's DynamoDB Stream
(`mailproxy/logic/stream_reports.py`). A record fails (partial batch response; Lambda delivers it again)
only when its report could neither be posted nor put in the outbox."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy import runtime
from mailproxy.logic.reports import tenant_target
from mailproxy.logic.stream_reports import StreamReporter
from mailproxy.observability import logger, metrics, tracer

OUTBOX_RESERVE_SECONDS = 10  # kept from the posts for the outbox writes of what they could not deliver


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    services = runtime.services()
    fallback = cache(runtime.deployment_report_target)  # read once a tenant needs it
    target_for = cache(lambda tenant_id: tenant_target(services, tenant_id, fallback))
    return report_batch(event, context, StreamReporter(services, target_for, logger=logger, metrics=metrics))


def report_batch(event: dict[str, Any], context: LambdaContext, reporter: StreamReporter) -> dict[str, Any]:
    """Post the batch's outcomes, put what was not delivered in the outbox, answer the records whose
    outbox write failed (partial batch response)."""
    remaining = context.get_remaining_time_in_millis() / 1000
    owed = reporter.deliver(event.get("Records", []), budget_seconds=max(1.0, remaining - OUTBOX_RESERVE_SECONDS))

    def keep(record: DynamoDBRecord) -> None:
        item = owed.get(str(record.dynamodb.sequence_number)) if record.dynamodb else None
        if item is not None:
            reporter.keep(item)

    # One processor per invocation (the local runner may call this handler from several threads); a batch
    # whose every record failed is answered like any other, so that Lambda retries from the first failure.
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=keep, processor=processor, context=context)
    logger.info("stream batch reported", extra={"records": len(event.get("Records", [])), "to_outbox": len(owed)})
    return dict(response)
