"""Scheduled reporter: sweeps due messages back onto the queues and POSTs delivery reports."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailproxy.config import settings
from mailproxy.logic.reports import Reporter, ReportTarget, tenant_target
from mailproxy.observability import logger, metrics, tracer
from mailproxy.services import Services


def _get_secret(name: str, **options: Any) -> Any:
    # Imported on first use: only deployed functions read secrets, and the import costs ~0.09 s of cold start.
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(name, **options)


@cache
def _services() -> Services:
    return Services.create(settings())


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def deployment_target() -> ReportTarget | None:
    """The deployment's report endpoint (SPEC §2); credentials from Secrets Manager in AWS."""
    configured = settings()
    if configured.client_sync_url is None:
        return None
    credentials: dict[str, Any] = {}
    if configured.client_sync_secret_arn:
        credentials = _get_secret(configured.client_sync_secret_arn, transform="json", max_age=300) or {}
    return ReportTarget(
        url=str(configured.client_sync_url),
        token=credentials.get("token") or _secret(configured.client_sync_token),
        user=credentials.get("user") or configured.client_sync_user,
        password=credentials.get("password") or _secret(configured.client_sync_password),
        signing_secret=credentials.get("signing_secret") or _secret(configured.client_sync_secret),
        timeout=configured.client_sync_timeout,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    configured = settings()
    budget = configured.report_run_budget
    remaining_ms = getattr(context, "get_remaining_time_in_millis", lambda: budget * 1000)()
    budget = min(budget, max(1.0, remaining_ms / 1000 - 5))  # always end before the Lambda timeout
    services = _services()
    fallback = deployment_target()
    targets: dict[str, ReportTarget | None] = {}

    def target_for(tenant_id: str) -> ReportTarget | None:
        if tenant_id not in targets:
            targets[tenant_id] = tenant_target(services, tenant_id, fallback)
        return targets[tenant_id]

    reporter = Reporter(services, target_for, logger=logger, metrics=metrics)
    run = reporter.run(budget_seconds=budget, batch_size=configured.report_batch_size)
    logger.info("report run", extra={**run.__dict__, "source": event.get("source", "schedule")})
    return {"ok": True, **run.__dict__}
