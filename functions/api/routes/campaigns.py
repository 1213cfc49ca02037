"""Campaign control: delete unsent messages, clean up acknowledged ones, suspend and activate batches.
Each route takes `tenant_id` (and `batch_code`) in the query, the January-2026 form, or in the body."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body

from functions.api.dependencies import BatchQuery, Caller, ServicesDep, TenantQuery, agreeing, tenant_of_call
from mailproxy.logic import campaigns
from mailproxy.models import CleanupRequest, DeleteMessagesRequest, SuspendRequest
from mailproxy.views import ActivateResult, CleanupResult, DeleteMessagesResult, SuspendedBatches, SuspendResult

router = APIRouter(tags=["campaigns"])

# Absent or empty: the January-2026 form names everything in the query.
OptionalSuspend = Annotated[SuspendRequest | None, Body()]
OptionalCleanup = Annotated[CleanupRequest | None, Body()]


@router.post("/commands/delete-messages")
def delete_messages(
    request: DeleteMessagesRequest, caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None
) -> DeleteMessagesResult:
    outcome = campaigns.delete_messages(services, tenant_of_call(caller, tenant_id, request), request.ids)
    return DeleteMessagesResult.model_validate(outcome)


@router.post("/commands/cleanup-messages")
def cleanup_messages(
    caller: Caller, services: ServicesDep, request: OptionalCleanup = None, tenant_id: TenantQuery = None
) -> CleanupResult:
    """Without `older_than_seconds`, the original's retention: 7 days."""
    request = request or CleanupRequest()
    removed = campaigns.cleanup_messages(
        services,
        tenant_of_call(caller, tenant_id, request),
        older_than_seconds=request.older_than_seconds,
        now=time.time(),
    )
    return CleanupResult(removed=removed)


@router.post("/commands/suspend")
def suspend(
    caller: Caller,
    services: ServicesDep,
    request: OptionalSuspend = None,
    tenant_id: TenantQuery = None,
    batch_code: BatchQuery = None,
) -> SuspendResult:
    tenant = tenant_of_call(caller, tenant_id, request)
    batch = agreeing("batch_code", batch_code, request.batch_code if request else None)
    held = campaigns.suspend(services, tenant, batch, now=int(time.time()))
    return SuspendResult(
        tenant_id=tenant,
        batch_code=batch,
        suspended=held,
        suspended_batches=campaigns.suspended_batches(services, tenant),
    )


@router.post("/commands/activate")
def activate(
    caller: Caller,
    services: ServicesDep,
    request: OptionalSuspend = None,
    tenant_id: TenantQuery = None,
    batch_code: BatchQuery = None,
) -> ActivateResult:
    tenant = tenant_of_call(caller, tenant_id, request)
    batch = agreeing("batch_code", batch_code, request.batch_code if request else None)
    released = campaigns.activate(services, tenant, batch, now=int(time.time()))
    return ActivateResult(
        tenant_id=tenant,
        batch_code=batch,
        activated=released,
        suspended_batches=campaigns.suspended_batches(services, tenant),
    )


@router.get("/commands/suspended-batches")
def suspended_batches(caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None) -> SuspendedBatches:
    tenant = tenant_of_call(caller, tenant_id, None)
    return SuspendedBatches(tenant_id=tenant, suspended_batches=campaigns.suspended_batches(services, tenant))
