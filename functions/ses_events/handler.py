"""SQS-triggered SES events handler: the Bounce, Complaint and Delivery notifications a SES configuration set
publishes to the deployment's SNS topic (mailproxy/logic/bounces/ses.py) recorded on their messages, as the
bounce mailbox's DSNs are. A record that fails (a body that is no SES notification, a failing write) returns
to the queue (partial batch response) and, after the queue's retries, waits in its dead-letter queue."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy import runtime
from mailproxy.config import settings
from mailproxy.logic.bounces.apply import BOUNCE_METRICS
from mailproxy.logic.bounces.ses import SesTotals, apply_event
from mailproxy.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    services = runtime.services()
    key = runtime.correlation_key(settings())
    totals = SesTotals()

    def record_notification(record: SQSRecord) -> None:
        apply_event(services, record.body, key=key, now=int(time.time()), totals=totals)

    processor = BatchProcessor(event_type=EventType.SQS)
    answer = process_partial_response(
        event=event, record_handler=record_notification, processor=processor, context=context
    )
    for counter, metric in BOUNCE_METRICS.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=getattr(totals, counter))
    logger.info("ses events", extra={**asdict(totals), "failed": len(answer.get("batchItemFailures", []))})
    return dict(answer)
