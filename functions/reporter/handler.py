"""Scheduled reporter: sweeps due messages back onto the queues and POSTs delivery reports.

One run at a time, so that no report is posted twice and no stale `deferred` follows the final outcome
(docs/reliability.md, "Poison reports and tenants"): in AWS the function's reserved concurrency is 1; in one
process (`make run`, tests) a lock serializes the runs, and an invocation that arrives during a run does not
run beside it but makes the running one go once more after it (triggers coalesce)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy import runtime
from mailproxy.config import settings
from mailproxy.logic.reports import Reporter, ReportTarget, tenant_target
from mailproxy.logic.stream_repair import replay_failed_batches
from mailproxy.observability import logger, metrics, tracer

_run_lock = threading.Lock()
_run_again = threading.Event()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    source = event.get("source", "schedule")
    _run_again.set()
    answer: dict[str, Any] | None = None
    while _run_again.is_set():
        if not _run_lock.acquire(blocking=False):
            # The running invocation sees the flag and runs once more after its current run.
            logger.info("report run already in progress; it runs again after it", extra={"source": source})
            return answer or {"ok": True, "coalesced": True}
        try:
            while _run_again.is_set():
                _run_again.clear()
                answer = _run_once(context, source)
        finally:
            _run_lock.release()
    return answer or {"ok": True, "coalesced": True}


def _run_once(context: LambdaContext, source: str) -> dict[str, Any]:
    configured = settings()
    budget = configured.report_run_budget
    remaining_ms = getattr(context, "get_remaining_time_in_millis", lambda: budget * 1000)()
    budget = min(budget, max(1.0, remaining_ms / 1000 - 5))  # always end before the Lambda timeout
    services = runtime.services()
    fallback = cache(
        runtime.deployment_report_target
    )  # read once a tenant needs it: a failing secret read fails only those
    targets: dict[str, ReportTarget | None] = {}

    def target_for(tenant_id: str) -> ReportTarget | None:
        if tenant_id not in targets:
            targets[tenant_id] = tenant_target(services, tenant_id, fallback)
        return targets[tenant_id]

    repaired = {}
    if configured.stream_failures_queue_url:  # first: what it puts in the outbox is posted by this run
        repair = replay_failed_batches(services, runtime.streams(), configured.stream_failures_queue_url)
        repaired = {"replayed_outcomes": repair.outcomes, "lost_stream_batches": repair.lost_batches}
        if repair.lost_batches:
            metrics.add_metric(name="LostStreamBatches", unit=MetricUnit.Count, value=repair.lost_batches)
    reporter = Reporter(services, target_for, logger=logger, metrics=metrics)
    run = reporter.run(budget_seconds=budget, batch_size=configured.report_batch_size)
    logger.info("report run", extra={**run.__dict__, **repaired, "source": source})
    return {"ok": True, **run.__dict__, **repaired}
