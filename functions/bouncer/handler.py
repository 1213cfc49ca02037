"""Scheduled bouncer: polls the deployment's bounce mailbox and the PEC accounts' inboxes over IMAPS and
records bounces, complaints and PEC receipts on their messages (mailproxy/logic/bounces). Runs every minute;
each mailbox's poll_interval decides whether a run reads it."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy import runtime
from mailproxy.config import settings
from mailproxy.logic.bounces.apply import BOUNCE_METRICS
from mailproxy.logic.bounces.mailbox import poll_all
from mailproxy.logic.bounces.rates import complaint_rates
from mailproxy.observability import logger, metrics, tracer

# The highest complaint rate of any rated account (stacks/monitoring.py alarms on it).
COMPLAINT_RATE_METRIC = "HighestComplaintRate"


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    configured = settings()
    services = runtime.services()
    totals = poll_all(
        services,
        key=runtime.correlation_key(configured),
        now=int(time.time()),
        ca_file=configured.imap_ca_file,
    )
    for name in ("applied", "unparsed", "ignored", "timeouts", "failed"):
        metrics.add_metric(name=f"Bounce_{name}", unit=MetricUnit.Count, value=totals[name])
    for counter, metric in BOUNCE_METRICS.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=totals[counter])
    rates = complaint_rates(services)
    if rates:
        highest = rates[0]
        metrics.add_metric(name=COMPLAINT_RATE_METRIC, unit=MetricUnit.Percent, value=highest.percent)
        if highest.complaints:
            logger.info(
                "highest complaint rate",
                extra={"tenant_id": highest.tenant_id, "account_id": highest.account_id, "percent": highest.percent},
            )
    logger.info("bounce run", extra=totals)
    return {"ok": True, **totals}
