"""Liveness, dependency status and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from functions.api.dependencies import Caller, ServicesDep
from mailproxy.logic import metrics_text
from mailproxy.views import HealthReport, StatusReport

router = APIRouter(tags=["status"])
T = TypeVar("T")


def reached(check: Callable[[], T]) -> tuple[str, T | None]:
    """("ok", what `check` returned), or ("unavailable: <error>", None) when AWS does not answer."""
    try:
        return "ok", check()
    except (ClientError, BotoCoreError) as exc:
        return f"unavailable: {type(exc).__name__}", None


@router.get("/health")
def health() -> HealthReport:
    return HealthReport()


@router.get(
    "/status",
    response_model=StatusReport,
    responses={503: {"model": StatusReport, "description": "a dependency does not answer"}},
)
def status(caller: Caller, services: ServicesDep) -> JSONResponse:
    dynamodb, _ = reached(services.messages.ping)
    sqs, depth = reached(services.queues.depth)
    dependencies = {"dynamodb": dynamodb, "sqs": sqs}
    ok = all(state == "ok" for state in dependencies.values())
    report = StatusReport(ok=ok, mode=services.settings.mode, dependencies=dependencies, queues=depth or {})
    return JSONResponse(status_code=200 if ok else 503, content=report.model_dump())


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(caller: Caller, services: ServicesDep) -> PlainTextResponse:
    caller.require_admin()
    text = metrics_text.render(metrics_text.snapshot(services))
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
