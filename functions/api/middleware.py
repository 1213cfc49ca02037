"""The app's ASGI middleware: the request body limit of the deployed stack, enforced by the app itself so that
local runs refuse what AWS would (`BodyLimit`), and the audit trail of every state-changing call (`AuditTrail`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from mailproxy.config import METRICS_NAMESPACE
from mailproxy.dal.audit import AuditEntry, AuditLog, new_entry_id
from mailproxy.logic.policy import Principal
from mailproxy.observability import logger

MAX_REQUEST_BYTES = 6_291_456  # Lambda's synchronous payload limit (6 MB); API Gateway's own is 10 MB
TOO_LARGE = (
    f"request body over {MAX_REQUEST_BYTES} bytes (6 MB): deployed, API Gateway and Lambda would refuse it. "
    "Send large attachments by reference (storage_path: an https URL, the tenant's attachment endpoint or "
    "s3://), fetched by the sender at send time."
)


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail=TOO_LARGE)


class BodyLimit:
    """Refuse what the deployed stack would: a Content-Length or a streamed body over 6 MB is a 413 with a
    JSON message, locally as in AWS."""

    def __init__(self, app: Any, limit: int = MAX_REQUEST_BYTES) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self._limit):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    raise _BodyTooLarge()
            return message

        async def watching(message: Any) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self._app(scope, limited, watching)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"ok": False, "error": TOO_LARGE}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# -- audit trail -----------------------------------------------------------------------------------------

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an entry's summary may hold of a request: identifiers, counts and a few harmless numbers. Anything
# else (passwords, tokens, client_auth, message bodies, addresses, headers) is left out by construction.
SUMMARY_FIELDS = frozenset(
    {
        "id",
        "tenant_id",
        "account_id",
        "batch_code",
        "message_id",
        "message_pk",
        "command_id",
        "older_than_seconds",
        "expires_at",
        "threshold_ts",
        "active",
        "priority",
        "default_priority",
    }
)
_MAX_IDS = 100  # ids of a list kept in a summary; its count is always there
_MAX_TEXT = 200


@dataclass(frozen=True)
class AuditedPrincipal(Principal):
    """A `Principal` that notes who it is for the audit trail and every tenant a route resolves through
    `scope` (so the entry names the tenant the call acted on, as the route decided it)."""

    caller: str = "admin"
    key_id: str | None = None
    acted_on: list[str] = field(default_factory=list, compare=False, repr=False)

    def scope(self, requested: str | None) -> str:
        tenant = super().scope(requested)
        if tenant not in self.acted_on:
            self.acted_on.append(tenant)
        return tenant


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    return value if isinstance(value, bool | int | float) or value is None else None


def summarize(data: Any) -> dict[str, Any]:
    """The allowed fields of a JSON object, and of each list its count and the ids of its items."""
    if not isinstance(data, dict):
        return {}
    summary: dict[str, Any] = {}
    for key, value in data.items():
        if key in SUMMARY_FIELDS and not isinstance(value, dict | list):
            summary[key] = _scalar(value)
        elif isinstance(value, list):
            summary[f"{key}_count"] = len(value)
            ids = (
                [item.get("id") if isinstance(item, dict) else item for item in value]
                if key in ("ids", "messages")
                else []
            )
            kept = [_scalar(i) for i in ids[:_MAX_IDS] if isinstance(i, str | int) and not isinstance(i, bool)]
            if kept:
                summary["ids" if key == "ids" else f"{key}_ids"] = kept
    return summary


def _body_json(body: bytes, headers: dict[bytes, bytes]) -> Any:
    if not body or b"json" not in headers.get(b"content-type", b"application/json"):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class AuditTrail:
    """Records one audit entry (mailproxy/dal/audit.py) for every call of a non-GET route, whatever its
    router, after it has answered: who (admin, a tenant key's tenant and key id, or anonymous), the route,
    the tenant acted on, the HTTP status and a summary of ids and counts. A request that matched no route
    is not recorded. A failed write is logged and counted (`write_failures`, the `AuditWriteFailures`
    metric); it never fails the call."""

    write_failures = 0

    def __init__(self, app: Any, audit_log: Callable[[], AuditLog]) -> None:
        self._app = app
        self._audit_log = audit_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self._app(scope, receive, send)
            return
        body = bytearray()
        status = 500  # an exception with no answer yet: the error middleware answers 500

        async def reading() -> Any:
            message = await receive()
            if message.get("type") == "http.request" and len(body) <= MAX_REQUEST_BYTES:
                body.extend(message.get("body", b""))
            return message

        async def answering(message: Any) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, reading, answering)
        finally:
            if scope.get("route") is not None:
                await self._record(scope, status, bytes(body))

    async def _record(self, scope: Any, status: int, body: bytes) -> None:
        try:
            entry = _entry(scope, status, body)
            await run_in_threadpool(self._audit_log().record, entry)
        except Exception:
            AuditTrail.write_failures += 1
            logger.exception("audit write failed", extra={"route": getattr(scope.get("route"), "path", None)})
            with single_metric(name="AuditWriteFailures", unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE):
                pass


SECRET_PATH_PARAMS = {"token"}  # an unsubscribe link's token is a bearer credential: never in the log


def _entry(scope: Any, status: int, body: bytes) -> AuditEntry:
    now_ms = int(time.time() * 1000)
    method = scope["method"]
    route = scope["route"].path
    path = {k: "***" if k in SECRET_PATH_PARAMS else _scalar(v) for k, v in (scope.get("path_params") or {}).items()}
    query = summarize(dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))))
    content = summarize(_body_json(body, dict(scope.get("headers") or [])))
    principal = (scope.get("state") or {}).get("principal")
    tenant = _tenant_acted_on(principal, path, query, content)
    summary = {name: part for name, part in (("path", path), ("query", query), ("body", content)) if part}
    if principal is not None and len(principal.acted_on) > 1:
        summary["tenants"] = principal.acted_on[:_MAX_IDS]
    return AuditEntry(
        id=new_entry_id(now_ms),
        ts=now_ms,
        method=method,
        route=route,
        endpoint=f"{method} {route}",
        status=status,
        caller=principal.caller if principal is not None else "anonymous",
        caller_tenant_id=principal.tenant_id if principal is not None else None,
        key_id=principal.key_id if principal is not None else None,
        tenant_id=tenant,
        summary=summary,
    )


def _tenant_acted_on(
    principal: AuditedPrincipal | None, path: dict[str, Any], query: dict[str, Any], content: dict[str, Any]
) -> str | None:
    """The tenant the route resolved, else the one the request names (a refused or failed call)."""
    if principal is not None and len(principal.acted_on) == 1:
        return principal.acted_on[0]
    if principal is not None and principal.acted_on:
        return None  # several: listed in the summary
    for named in (path.get("tenant_id"), query.get("tenant_id"), content.get("tenant_id")):
        if isinstance(named, str):
            return named
    if principal is not None and principal.tenant_id is not None:
        return principal.tenant_id
    return None
