"""Queue messages, trigger a dispatch, list messages."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from functions.api.dependencies import Caller, ReportTrigger, ServicesDep, TenantQuery, tenant_of_call
from mailproxy.dal.throttle import claim_slot
from mailproxy.logic import policy
from mailproxy.logic.ingest import add_messages
from mailproxy.logic.reports import request_sync
from mailproxy.logic.sweep import sweep_due
from mailproxy.models import (
    ACTIVE_STATUSES,
    MAX_ID_BYTES,
    AddMessagesRequest,
    AddMessagesResponse,
    MessagesPage,
    MessageStatus,
    MessageView,
    Tag,
    TenantScoped,
)
from mailproxy.views import RunNowResult

router = APIRouter(tags=["messages"])


@router.post("/commands/add-messages")
def post_messages(request: AddMessagesRequest, caller: Caller, services: ServicesDep) -> AddMessagesResponse:
    policy.check_batch_size(len(request.messages))
    for raw in request.messages:  # a tenant key may not write into another tenant, even one message
        if isinstance(raw, dict) and isinstance(raw.get("tenant_id"), str):
            caller.scope(raw["tenant_id"])
    return add_messages(services, request, now_ms=int(time.time() * 1000), tenant_id=caller.tenant_id)


@router.post("/commands/run-now")
def run_now(
    caller: Caller, services: ServicesDep, trigger_report: ReportTrigger, request: TenantScoped | None = None
) -> RunNowResult:
    named = request.tenant_id if request is not None else None
    if named is not None or not caller.is_admin:  # a tenant's run-now is for its own tenant
        # Before the throttle: a throttled call's tenant is still synced, by the next scheduled run.
        request_sync(services, caller.scope(named), time.time())
    interval = services.settings.run_now_min_interval
    # One trigger per interval for the whole deployment (a conditional write, so across instances);
    # a throttled call still answers ok, as drop-in clients expect.
    if interval > 0 and not claim_slot(
        services.dynamodb, services.settings.config_table, "run-now", now=time.time(), interval=interval
    ):
        return RunNowResult(enqueued=0, throttled=True)
    enqueued = sweep_due(services, now=int(time.time()), lookahead=60)
    trigger_report()
    return RunNowResult(enqueued=enqueued, throttled=False)


@router.get("/messages")
def list_messages(
    caller: Caller,
    services: ServicesDep,
    tenant_id: TenantQuery = None,
    status: Annotated[MessageStatus | None, Query()] = None,
    account_id: Annotated[str | None, Query(max_length=256)] = None,
    active_only: Annotated[bool, Query(description="only queued, deferred and sending messages")] = False,
    include_history: Annotated[bool, Query(description="each message's events")] = False,
    tag: Annotated[Tag | None, Query(description="only messages carrying this tag")] = None,
    bounced: Annotated[
        bool | None, Query(description="true: only messages a bounce or complaint came back for; false: none")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> MessagesPage:
    items, next_cursor = services.queries.list_page(
        caller.scope(tenant_id),
        status=status.value if status else None,
        account_id=account_id,
        limit=limit,
        cursor=cursor,
        statuses=ACTIVE_STATUSES if active_only else None,
        tag=tag,
        bounced=bounced,
    )
    views = [
        MessageView.model_validate({**item, "history": item.get("history", []) if include_history else None})
        for item in items
    ]
    return MessagesPage(messages=views, cursor=next_cursor)


@router.get(
    "/messages/{message_id}/raw",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}, "description": "the MIME message as built"}},
)
def raw_message(
    message_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_BYTES)],
    caller: Caller,
    services: ServicesDep,
    tenant_id: TenantQuery = None,
) -> Response:
    """The message as the sender built it: kept for a sandbox account's messages, and for real sends of an
    account with `keep_raw_seconds`; 404 otherwise."""
    tenant = tenant_of_call(caller, tenant_id, None)
    data = services.messages.contents.raw(tenant, message_id, int(time.time()))
    if data is None:
        raise policy.NotFound(f"message_id: no raw message kept for {message_id!r} of tenant {tenant!r}")
    return Response(content=data, media_type="message/rfc822")
