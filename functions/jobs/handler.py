"""SQS-triggered jobs worker: continues a bulk job from its checkpoint for as long as the invocation allows,
then leaves a continuation on the jobs queue (mailproxy/logic/jobs.py). A record that fails returns to the
queue (partial batch response) and is retried from the job's last recorded page; one that failed as often
as the queue allows reaches its DLQ, which triggers this function too: its job then ends as failed."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy import runtime
from mailproxy.config import JOB_RUN_MARGIN_SECONDS
from mailproxy.logic import jobs
from mailproxy.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    services = runtime.services()

    def continue_job(record: SQSRecord) -> None:
        body = json.loads(record.body)
        if record.event_source_arn == services.settings.jobs_dlq_arn:
            failed = jobs.fail_abandoned(services, body["tenant_id"], body["job_id"], body["checkpoint"])
            if failed is not None:
                metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
                logger.error("job failed: its continuation reached the jobs DLQ", extra={"job_id": failed.id})
            return
        budget = context.get_remaining_time_in_millis() / 1000 - JOB_RUN_MARGIN_SECONDS
        job = jobs.continue_job(services, body["tenant_id"], body["job_id"], body["checkpoint"], budget_seconds=budget)
        if job is None:
            logger.info("stale job continuation dropped", extra={"job_id": body["job_id"]})
        else:
            logger.info(
                "job run", extra={"job_id": job.id, "kind": job.kind, "status": job.status, "processed": job.processed}
            )

    processor = BatchProcessor(event_type=EventType.SQS)
    return dict(
        process_partial_response(event=event, record_handler=continue_job, processor=processor, context=context)
    )
