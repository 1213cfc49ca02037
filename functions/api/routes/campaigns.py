"""Campaign control: delete unsent messages, clean up acknowledged ones, suspend and activate batches."""

from __future__ import annotations

import time

from fastapi import APIRouter

from functions.api.dependencies import Caller, ServicesDep
from mailproxy.logic import campaigns
from mailproxy.models import CleanupRequest, DeleteMessagesRequest, SuspendRequest
from mailproxy.views import ActivateResult, CleanupResult, DeleteMessagesResult, SuspendResult

router = APIRouter(tags=["campaigns"])


@router.post("/commands/delete-messages")
def delete_messages(request: DeleteMessagesRequest, caller: Caller, services: ServicesDep) -> DeleteMessagesResult:
    outcome = campaigns.delete_messages(services, caller.scope_of(request), request.ids)
    return DeleteMessagesResult.model_validate(outcome)


@router.post("/commands/cleanup-messages")
def cleanup_messages(request: CleanupRequest, caller: Caller, services: ServicesDep) -> CleanupResult:
    removed = campaigns.cleanup_messages(
        services, caller.scope_of(request), older_than_seconds=request.older_than_seconds, now=time.time()
    )
    return CleanupResult(removed=removed)


@router.post("/commands/suspend")
def suspend(request: SuspendRequest, caller: Caller, services: ServicesDep) -> SuspendResult:
    tenant_id = caller.scope_of(request)
    held = campaigns.suspend(services, tenant_id, request.batch_code, now=int(time.time()))
    return SuspendResult(tenant_id=tenant_id, batch_code=request.batch_code, suspended=held)


@router.post("/commands/activate")
def activate(request: SuspendRequest, caller: Caller, services: ServicesDep) -> ActivateResult:
    tenant_id = caller.scope_of(request)
    released = campaigns.activate(services, tenant_id, request.batch_code, now=int(time.time()))
    return ActivateResult(tenant_id=tenant_id, batch_code=request.batch_code, activated=released)
