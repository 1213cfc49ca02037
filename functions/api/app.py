"""The REST API (SPEC §3): thin routes over the shared domain package."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from mailproxy.dal.messages import BadCursor
from mailproxy.logic import metrics_text
from mailproxy.logic.ingest import add_messages
from mailproxy.logic.sweep import sweep_due
from mailproxy.models import (
    DEFAULT_TENANT,
    MAX_MESSAGES_PER_REQUEST,
    AccountIn,
    AccountOut,
    AddMessagesRequest,
    AddMessagesResponse,
    MessagesPage,
    MessageStatus,
    MessageView,
    TenantId,
    describe_errors,
)
from mailproxy.services import Services

logger = Logger(child=True)


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

    def token_matches(self, given: str | None) -> bool:
        expected = self._api_token()
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    # Never echo the input: it may hold a password.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="genro-mail-proxy (serverless)",
        version="0.1.0",
        description="Queue e-mail for delivery through your SMTP accounts; delivery reports go back to your app.",
    )

    def require_token(x_api_token: Annotated[str | None, Header()] = None) -> None:
        if not context.token_matches(x_api_token):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Token")

    authorized = [Depends(require_token)]

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={"ok": False, "error": describe_errors(list(exc.errors())), "detail": _field_errors(exc.errors())},
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

    @app.get("/health", tags=["status"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status", tags=["status"], dependencies=authorized)
    def status() -> JSONResponse:
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

    @app.post("/account", tags=["accounts"], dependencies=authorized)
    def put_account(account: AccountIn) -> dict[str, Any]:
        context.services.accounts.put(account)
        return {"ok": True, "id": account.id, "tenant_id": account.tenant_id}

    @app.delete("/account/{account_id}", tags=["accounts"], dependencies=authorized)
    def delete_account(account_id: str, tenant_id: Annotated[TenantId, Query()] = DEFAULT_TENANT) -> dict[str, Any]:
        if not context.services.accounts.delete(tenant_id, account_id):
            raise HTTPException(status_code=404, detail=f"account {account_id!r} not found")
        return {"ok": True, "id": account_id}

    @app.get("/accounts", tags=["accounts"], dependencies=authorized)
    def list_accounts(tenant_id: Annotated[TenantId, Query()] = DEFAULT_TENANT) -> dict[str, Any]:
        accounts = [
            AccountOut(
                **{k: v for k, v in item.items() if k in AccountOut.model_fields and k != "password"},
                password="***" if "password_enc" in item else None,
            ).model_dump()
            for item in context.services.accounts.list(tenant_id)
        ]
        return {"ok": True, "accounts": accounts}

    @app.post("/commands/add-messages", tags=["messages"], dependencies=authorized)
    def post_messages(request: AddMessagesRequest) -> AddMessagesResponse:
        if len(request.messages) > MAX_MESSAGES_PER_REQUEST:
            raise HTTPException(
                status_code=400,
                detail=f"messages: at most {MAX_MESSAGES_PER_REQUEST} per request, got {len(request.messages)}",
            )
        return add_messages(context.services, request, now_ms=int(time.time() * 1000))

    @app.post("/commands/run-now", tags=["messages"], dependencies=authorized)
    def run_now() -> dict[str, Any]:
        enqueued = sweep_due(context.services, now=int(time.time()), lookahead=60)
        context.trigger_report()
        return {"ok": True, "enqueued": enqueued}

    @app.get("/messages", tags=["messages"], dependencies=authorized)
    def list_messages(
        tenant_id: Annotated[TenantId, Query()] = DEFAULT_TENANT,
        status: Annotated[MessageStatus | None, Query()] = None,
        account_id: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> MessagesPage:
        items, next_cursor = context.services.messages.list_page(
            tenant_id, status=status.value if status else None, account_id=account_id, limit=limit, cursor=cursor
        )
        views = [MessageView.model_validate(item) for item in items]
        return MessagesPage(messages=views, cursor=next_cursor)

    @app.get("/metrics", tags=["status"], dependencies=authorized, response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        services = context.services
        text = metrics_text.render(services.messages.status_counts(), services.queues.depth())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
