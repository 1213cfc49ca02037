"""Delivery-report endpoints for Django, Flask and FastAPI, all verifying through
:func:`~mailproxy_client.reports.parse_delivery_report` (one verification path).

    # Django urls.py
    path("gmp/reports", django_view(store_reports, bearer_token=TOKEN, signing_secret=SECRET))
    # Flask
    app.register_blueprint(flask_blueprint(store_reports, bearer_token=TOKEN, signing_secret=SECRET))
    # FastAPI
    app.include_router(fastapi_router(store_reports, bearer_token=TOKEN, signing_secret=SECRET))

``handler(reports)`` gets the parsed :class:`~mailproxy_client.models.DeliveryReport` list. The endpoint answers
200 only after it returned; when it raises, the endpoint answers 500 and the proxy sends the same batch again
later. The proxy may therefore deliver a report more than once: the handler must upsert by ``report.id``
(store the newest status per id), never append. Each framework is imported only by its own factory.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint's `Request` annotation at run time.
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mailproxy_client.models import DeliveryReport
from mailproxy_client.reports import ReportRejected, parse_delivery_report

if TYPE_CHECKING:
    from fastapi import APIRouter
    from flask import Blueprint

__all__ = ["ReportHandler", "django_view", "fastapi_router", "flask_blueprint"]

ReportHandler = Callable[[list[DeliveryReport]], object]
ACCEPTED = {"ok": True}


def _receive(
    handler: ReportHandler,
    body: bytes,
    headers: Mapping[str, str],
    bearer_token: str | None,
    signing_secret: str | None,
) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer for one report request, the handler having run when it is 200."""
    try:
        reports = parse_delivery_report(body, headers, bearer_token=bearer_token, signing_secret=signing_secret)
    except ReportRejected as exc:
        return exc.status_code, {"ok": False, "error": exc.reason}
    handler(reports)
    return 200, ACCEPTED


def django_view(
    handler: ReportHandler, *, bearer_token: str | None = None, signing_secret: str | None = None
) -> Callable[..., Any]:
    """A csrf-exempt, POST-only Django view receiving the proxy's delivery reports."""
    from django.http import HttpRequest, JsonResponse
    from django.views.decorators.csrf import csrf_exempt
    from django.views.decorators.http import require_POST

    @csrf_exempt
    @require_POST
    def receive_delivery_reports(request: HttpRequest) -> JsonResponse:
        status, answer = _receive(handler, request.body, request.headers, bearer_token, signing_secret)
        return JsonResponse(answer, status=status)

    return receive_delivery_reports


def flask_blueprint(
    handler: ReportHandler,
    *,
    bearer_token: str | None = None,
    signing_secret: str | None = None,
    path: str = "/gmp/reports",
    name: str = "gmp_reports",
) -> "Blueprint":
    """A Flask blueprint with one POST route at ``path``."""
    from flask import Blueprint, request

    blueprint = Blueprint(name, __name__)

    @blueprint.post(path)
    def receive_delivery_reports() -> tuple[dict[str, Any], int]:
        headers = dict(request.headers.items())
        status, answer = _receive(handler, request.get_data(), headers, bearer_token, signing_secret)
        return answer, status

    return blueprint


def fastapi_router(
    handler: ReportHandler,
    *,
    bearer_token: str | None = None,
    signing_secret: str | None = None,
    path: str = "/gmp/reports",
) -> "APIRouter":
    """A FastAPI router with one POST route at ``path``. A synchronous handler runs in the thread pool."""
    from fastapi import APIRouter, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    router = APIRouter()

    @router.post(path, include_in_schema=False)
    async def receive_delivery_reports(request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = await run_in_threadpool(_receive, handler, body, request.headers, bearer_token, signing_secret)
        return JSONResponse(answer, status_code=status)

    return router
