"""The REST API (SPEC §3 and the drop-in routes of issue 10): thin routes over the shared domain package.

Two kinds of credential go in `X-API-Token`: the admin token (`GMP_API_TOKEN`), which acts on every
tenant, and a tenant API key, which acts on its own tenant alone."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from mailproxy.config import SENDER_SAFETY_SECONDS
from mailproxy.dal.messages import BadCursor
from mailproxy.dal.throttle import claim_slot
from mailproxy.logic import campaigns, metrics_text
from mailproxy.logic.ingest import add_messages
from mailproxy.logic.ssrf import UnresolvableHost, check_host, parse_allowlist
from mailproxy.logic.sweep import sweep_due
from mailproxy.models import (
    DEFAULT_TENANT,
    MAX_MESSAGES_PER_REQUEST,
    AccountIn,
    AccountOut,
    AddMessagesRequest,
    AddMessagesResponse,
    CleanupRequest,
    DeleteMessagesRequest,
    MessagesPage,
    MessageStatus,
    MessageView,
    SuspendRequest,
    TenantId,
    TenantIn,
    TenantOut,
    TenantScoped,
    describe_errors,
)
from mailproxy.services import Services

logger = Logger(child=True)
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
    """Refuse what the deployed stack would (issue 13): a Content-Length or a streamed body over 6 MB is
    a 413 with a JSON message, locally as in AWS."""

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


_ACTIVE = {MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value, MessageStatus.SENDING.value}


class ApiContext:
    """What the routes need, created lazily so that importing the app needs no AWS."""

    def __init__(
        self,
        services: Callable[[], Services],
        api_token: Callable[[], str],
        trigger_report: Callable[[], None],
    ) -> None:
        self._services = services
        self._api_token = api_token
        self.trigger_report = trigger_report

    @property
    def services(self) -> Services:
        return self._services()

    def is_admin_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._api_token().encode())


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin (tenant None) or one tenant's key."""

    tenant_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def scope(self, requested: str | None) -> str:
        """The tenant a call acts on; a tenant key may name only its own tenant."""
        if self.tenant_id is None:
            return requested or DEFAULT_TENANT
        if requested is not None and requested != self.tenant_id:
            raise HTTPException(status_code=403, detail=f"tenant_id: this key acts on tenant {self.tenant_id!r} only")
        return self.tenant_id

    def require_admin(self) -> None:
        if not self.is_admin:
            raise HTTPException(status_code=403, detail="this route needs the admin token")


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    # Never echo the input: it may hold a password.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]


def _explicit_tenant(model: Any) -> str | None:
    return model.tenant_id if "tenant_id" in model.model_fields_set else None


def _tenant_view(services: Services, item: dict[str, Any]) -> TenantOut:
    auth = item.get("client_auth")
    masked = None
    if auth:
        masked = {"method": auth.get("method"), "user": auth.get("user")}
        masked.update({field: "***" for field in ("token", "password") if f"{field}_enc" in auth})
    return TenantOut(
        id=item["id"],
        name=item.get("name"),
        client_base_url=item.get("client_base_url"),
        client_sync_path=item.get("client_sync_path", "/mail-proxy/sync"),
        client_attachment_path=item.get("client_attachment_path", "/mail-proxy/attachments"),
        client_auth=masked,
        active=bool(item.get("active", True)),
        has_api_key="api_key_hash" in item,
        has_signing_secret="signing_secret_enc" in item,
    )


def principal(request: Request, x_api_token: Annotated[str | None, Header()] = None) -> Principal:
    context: ApiContext = request.app.state.context
    if x_api_token:
        if context.is_admin_token(x_api_token):
            return Principal(None)
        # Only the tenant's current key: a lookup item left behind by a race or a revocation is refused.
        tenant = context.services.tenants.tenant_of_key(x_api_token)
        if tenant is not None and tenant.get("active", True):
            return Principal(str(tenant["id"]))
    raise HTTPException(status_code=401, detail="missing or wrong X-API-Token")


Caller = Annotated[Principal, Depends(principal)]
TenantQuery = Annotated[TenantId | None, Query()]


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="genro-mail-proxy (serverless)",
        version="0.1.0",
        description="Queue e-mail for delivery through your SMTP accounts; delivery reports go back to your app.",
    )

    app.state.context = context
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={
                "ok": False,
                "error": describe_errors(list(exc.errors()), request_location=True),
                "detail": _field_errors(exc.errors()),
            },
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"ok": False, "error": exc.detail})

    @app.exception_handler(BadCursor)
    async def _cursor(_: Request, exc: BadCursor) -> JSONResponse:
        return JSONResponse(status_code=400, content={"ok": False, "error": str(exc)})

    @app.exception_handler(ClientError)
    @app.exception_handler(BotoCoreError)
    async def _aws(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("AWS call failed")
        return JSONResponse(status_code=503, content={"ok": False, "error": "storage or queue unavailable; retry"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return JSONResponse(status_code=500, content={"ok": False, "error": "internal error"})

    # -- status ----------------------------------------------------------------------------------------
    @app.get("/health", tags=["status"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status", tags=["status"])
    def status(caller: Caller) -> JSONResponse:
        services = context.services
        dependencies: dict[str, str] = {}
        queues: dict[str, int] = {}
        try:
            services.dynamodb.describe_table(TableName=services.settings.messages_table)
            dependencies["dynamodb"] = "ok"
        except (ClientError, BotoCoreError) as exc:
            dependencies["dynamodb"] = f"unavailable: {type(exc).__name__}"
        try:
            queues = services.queues.depth()
            dependencies["sqs"] = "ok"
        except (ClientError, BotoCoreError) as exc:
            dependencies["sqs"] = f"unavailable: {type(exc).__name__}"
        ok = all(v == "ok" for v in dependencies.values())
        body = {"ok": ok, "mode": services.settings.mode, "dependencies": dependencies, "queues": queues}
        return JSONResponse(status_code=200 if ok else 503, content=body)

    @app.get("/metrics", tags=["status"], response_class=PlainTextResponse)
    def metrics(caller: Caller) -> PlainTextResponse:
        caller.require_admin()
        services = context.services
        text = metrics_text.render(services.messages.status_counts(), services.queues.depth())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- accounts --------------------------------------------------------------------------------------
    def refuse_internal_host(host: str) -> None:
        """The SSRF guard: in aws mode a host resolving to an internal address is refused (422)."""
        configured = context.services.settings
        try:
            check_host(host, mode=configured.mode, allowlist=parse_allowlist(configured.smtp_host_allowlist))
        except UnresolvableHost as exc:
            if configured.mode == "aws":  # locally, a name may come to exist later (a test server, a VPN)
                raise HTTPException(status_code=422, detail=str(exc)) from None
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    @app.post("/account", tags=["accounts"])
    def put_account(account: AccountIn, caller: Caller) -> dict[str, Any]:
        tenant_id = caller.scope(_explicit_tenant(account))
        limit = context.services.settings.max_account_timeout
        if account.timeout > limit:
            raise HTTPException(
                status_code=422,
                detail=f"timeout: at most {limit:g} seconds here (the sender's time budget: GMP_SENDER_TIMEOUT "
                f"{context.services.settings.sender_timeout} s less {2 * SENDER_SAFETY_SECONDS} s for its own writes)",
            )
        refuse_internal_host(account.host)
        account = account.model_copy(update={"tenant_id": tenant_id})
        context.services.accounts.put(account)
        return {"ok": True, "id": account.id, "tenant_id": tenant_id}

    @app.delete("/account/{account_id}", tags=["accounts"])
    def delete_account(account_id: str, caller: Caller, tenant_id: TenantQuery = None) -> dict[str, Any]:
        if not context.services.accounts.delete(caller.scope(tenant_id), account_id):
            raise HTTPException(status_code=404, detail=f"account {account_id!r} not found")
        return {"ok": True, "id": account_id}

    @app.get("/accounts", tags=["accounts"])
    def list_accounts(caller: Caller, tenant_id: TenantQuery = None) -> dict[str, Any]:
        accounts = [
            AccountOut(
                **{k: v for k, v in item.items() if k in AccountOut.model_fields and k != "password"},
                password="***" if "password_enc" in item else None,
            ).model_dump()
            for item in context.services.accounts.list(caller.scope(tenant_id))
        ]
        return {"ok": True, "accounts": accounts}

    # -- messages --------------------------------------------------------------------------------------
    @app.post("/commands/add-messages", tags=["messages"])
    def post_messages(request: AddMessagesRequest, caller: Caller) -> AddMessagesResponse:
        if len(request.messages) > MAX_MESSAGES_PER_REQUEST:
            raise HTTPException(
                status_code=400,
                detail=f"messages: at most {MAX_MESSAGES_PER_REQUEST} per request, got {len(request.messages)}",
            )
        for raw in request.messages:  # a tenant key may not write into another tenant, even one message
            if isinstance(raw, dict) and isinstance(raw.get("tenant_id"), str):
                caller.scope(raw["tenant_id"])
        return add_messages(context.services, request, now_ms=int(time.time() * 1000), tenant_id=caller.tenant_id)

    @app.post("/commands/run-now", tags=["messages"])
    def run_now(caller: Caller, request: TenantScoped | None = None) -> dict[str, Any]:
        if request is not None:
            caller.scope(_explicit_tenant(request))
        services = context.services
        interval = services.settings.run_now_min_interval
        # One trigger per interval for the whole deployment (a conditional write, so across instances);
        # a throttled call still answers ok, as drop-in clients expect.
        if interval > 0 and not claim_slot(
            services.dynamodb, services.settings.config_table, "run-now", now=time.time(), interval=interval
        ):
            return {"ok": True, "enqueued": 0, "throttled": True}
        enqueued = sweep_due(services, now=int(time.time()), lookahead=60)
        context.trigger_report()
        return {"ok": True, "enqueued": enqueued, "throttled": False}

    @app.post("/commands/delete-messages", tags=["campaigns"])
    def delete_messages(request: DeleteMessagesRequest, caller: Caller) -> dict[str, Any]:
        return campaigns.delete_messages(context.services, caller.scope(_explicit_tenant(request)), request.ids)

    @app.post("/commands/cleanup-messages", tags=["campaigns"])
    def cleanup_messages(request: CleanupRequest, caller: Caller) -> dict[str, Any]:
        removed = campaigns.cleanup_messages(
            context.services,
            caller.scope(_explicit_tenant(request)),
            older_than_seconds=request.older_than_seconds,
            now=time.time(),
        )
        return {"ok": True, "removed": removed}

    @app.post("/commands/suspend", tags=["campaigns"])
    def suspend(request: SuspendRequest, caller: Caller) -> dict[str, Any]:
        tenant_id = caller.scope(_explicit_tenant(request))
        held = campaigns.suspend(context.services, tenant_id, request.batch_code, now=int(time.time()))
        return {"ok": True, "tenant_id": tenant_id, "batch_code": request.batch_code, "suspended": held}

    @app.post("/commands/activate", tags=["campaigns"])
    def activate(request: SuspendRequest, caller: Caller) -> dict[str, Any]:
        tenant_id = caller.scope(_explicit_tenant(request))
        released = campaigns.activate(context.services, tenant_id, request.batch_code, now=int(time.time()))
        return {"ok": True, "tenant_id": tenant_id, "batch_code": request.batch_code, "activated": released}

    @app.get("/messages", tags=["messages"])
    def list_messages(
        caller: Caller,
        tenant_id: TenantQuery = None,
        status: Annotated[MessageStatus | None, Query()] = None,
        account_id: Annotated[str | None, Query(max_length=256)] = None,
        active_only: Annotated[bool, Query(description="only queued, deferred and sending messages")] = False,
        include_history: Annotated[bool, Query(description="each message's events")] = False,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> MessagesPage:
        items, next_cursor = context.services.messages.list_page(
            caller.scope(tenant_id),
            status=status.value if status else None,
            account_id=account_id,
            limit=limit,
            cursor=cursor,
            statuses=_ACTIVE if active_only else None,
        )
        views = [
            MessageView.model_validate({**item, "history": item.get("history", []) if include_history else None})
            for item in items
        ]
        return MessagesPage(messages=views, cursor=next_cursor)

    # -- tenants ---------------------------------------------------------------------------------------
    def refuse_internal_url(url: str | None) -> None:
        if url and context.services.settings.mode == "aws":
            if urlsplit(url).scheme.lower() != "https":
                raise HTTPException(status_code=422, detail="client_base_url: must be https in aws mode")
            host = urlsplit(url).hostname or ""
            try:
                refuse_internal_host(host)
            except HTTPException as exc:
                raise HTTPException(status_code=422, detail=f"client_base_url: {exc.detail}") from None

    @app.post("/tenant", tags=["tenants"])
    def post_tenant(tenant: TenantIn, caller: Caller) -> dict[str, Any]:
        caller.scope(tenant.id)
        refuse_internal_url(tenant.client_base_url)
        if not caller.is_admin and context.services.tenants.get(tenant.id) is None:
            caller.require_admin()
        if not context.services.tenants.put(tenant, must_exist=not caller.is_admin):
            raise HTTPException(status_code=404, detail=f"tenant {tenant.id!r} not found")
        return {"ok": True, "id": tenant.id}

    @app.get("/tenants", tags=["tenants"])
    def list_tenants(caller: Caller) -> dict[str, Any]:
        services = context.services
        items = services.tenants.list() if caller.is_admin else [services.tenants.get(caller.scope(None)) or {}]
        return {"ok": True, "tenants": [_tenant_view(services, item).model_dump() for item in items if item]}

    def _existing_tenant(tenant_id: str) -> dict[str, Any]:
        item = context.services.tenants.get(tenant_id)
        if item is None:
            raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} not found")
        return item

    @app.get("/tenant/{tenant_id}", tags=["tenants"])
    def get_tenant(tenant_id: TenantId, caller: Caller) -> dict[str, Any]:
        item = _existing_tenant(caller.scope(tenant_id))
        return {"ok": True, "tenant": _tenant_view(context.services, item).model_dump()}

    @app.put("/tenant/{tenant_id}", tags=["tenants"])
    def put_tenant(tenant_id: TenantId, tenant: TenantIn, caller: Caller) -> dict[str, Any]:
        if tenant.id != tenant_id:
            raise HTTPException(status_code=422, detail="id: must match the tenant in the path")
        _existing_tenant(caller.scope(tenant_id))
        refuse_internal_url(tenant.client_base_url)
        if not context.services.tenants.put(tenant, must_exist=True):  # deleted meanwhile: not recreated
            raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} not found")
        return {"ok": True, "id": tenant_id}

    @app.delete("/tenant/{tenant_id}", tags=["tenants"])
    def delete_tenant(tenant_id: TenantId, caller: Caller) -> dict[str, Any]:
        caller.require_admin()
        _existing_tenant(tenant_id)
        removed = campaigns.delete_tenant(context.services, tenant_id)
        return {"ok": True, "id": tenant_id, "removed": removed}

    @app.post("/tenant/{tenant_id}/api-key", tags=["tenants"])
    def new_api_key(tenant_id: TenantId, caller: Caller) -> dict[str, Any]:
        key = context.services.tenants.new_api_key(caller.scope(tenant_id))
        if key is None:
            raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} not found")
        return {"ok": True, "tenant_id": tenant_id, "api_key": key, "note": "shown once; store it now"}

    @app.post("/tenant/{tenant_id}/signing-secret", tags=["tenants"])
    def new_signing_secret(tenant_id: TenantId, caller: Caller) -> dict[str, Any]:
        """Generate or rotate the tenant's report signing secret: shown once. Reports to the tenant's own
        endpoint are signed with it (`X-GMP-Signature`), never with the deployment's secret."""
        secret = context.services.tenants.new_signing_secret(caller.scope(tenant_id))
        if secret is None:
            raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} not found")
        return {"ok": True, "tenant_id": tenant_id, "signing_secret": secret, "note": "shown once; store it now"}

    @app.delete("/tenant/{tenant_id}/signing-secret", tags=["tenants"])
    def delete_signing_secret(tenant_id: TenantId, caller: Caller) -> dict[str, Any]:
        if not context.services.tenants.delete_signing_secret(caller.scope(tenant_id)):
            raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} has no signing secret")
        return {"ok": True, "tenant_id": tenant_id}

    @app.delete("/tenant/{tenant_id}/api-key", tags=["tenants"])
    def revoke_api_key(tenant_id: TenantId, caller: Caller) -> dict[str, Any]:
        if not context.services.tenants.revoke_api_key(caller.scope(tenant_id)):
            raise HTTPException(status_code=404, detail=f"tenant {tenant_id!r} has no API key")
        return {"ok": True, "tenant_id": tenant_id}

    return app
