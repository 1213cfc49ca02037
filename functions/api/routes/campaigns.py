"""Campaign control: delete unsent messages, clean up acknowledged ones, suspend and activate batches.
Each route takes `tenant_id` (and `batch_code`) in the query, the January-2026 form, or in the body.
Cleanup, suspend and activate walk the tenant's messages as jobs (functions/api/routes/jobs.py): their usual
answer with a `job_id` when done within the call, else 202."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from functions.api.dependencies import BatchQuery, Caller, ServicesDep, TenantQuery, agreeing, tenant_of_call
from functions.api.routes.jobs import ACCEPTED, job_answer
from mailproxy.logic import campaigns, jobs
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


@router.post("/commands/cleanup-messages", response_model=CleanupResult, responses=ACCEPTED)
def cleanup_messages(
    caller: Caller, services: ServicesDep, request: OptionalCleanup = None, tenant_id: TenantQuery = None
) -> CleanupResult | JSONResponse:
    """Without `older_than_seconds`, the original's retention: 7 days."""
    request = request or CleanupRequest()
    now = time.time()
    before = {"created_before_ms": int((now - request.older_than_seconds) * 1000)}
    job = jobs.start(services, tenant_of_call(caller, tenant_id, request), "cleanup", before, now=now)
    return job_answer(job, lambda done: CleanupResult(removed=done.result["removed"], job_id=done.id))


@router.post("/commands/suspend", response_model=SuspendResult, responses=ACCEPTED)
def suspend(
    caller: Caller,
    services: ServicesDep,
    request: OptionalSuspend = None,
    tenant_id: TenantQuery = None,
    batch_code: BatchQuery = None,
) -> SuspendResult | JSONResponse:
    """Mail added later to the tenant (batch) is held at once; the messages already there by the job."""
    tenant = tenant_of_call(caller, tenant_id, request)
    batch = agreeing("batch_code", batch_code, request.batch_code if request else None)
    job = jobs.start(services, tenant, "suspend", {"batch_code": batch}, now=time.time())
    return job_answer(
        job,
        lambda done: SuspendResult(
            tenant_id=tenant,
            batch_code=batch,
            suspended=done.result["suspended"],
            suspended_batches=campaigns.suspended_batches(services, tenant),
            job_id=done.id,
        ),
    )


@router.post("/commands/activate", response_model=ActivateResult, responses=ACCEPTED)
def activate(
    caller: Caller,
    services: ServicesDep,
    request: OptionalSuspend = None,
    tenant_id: TenantQuery = None,
    batch_code: BatchQuery = None,
) -> ActivateResult | JSONResponse:
    tenant = tenant_of_call(caller, tenant_id, request)
    batch = agreeing("batch_code", batch_code, request.batch_code if request else None)
    job = jobs.start(services, tenant, "activate", {"batch_code": batch}, now=time.time())
    return job_answer(
        job,
        lambda done: ActivateResult(
            tenant_id=tenant,
            batch_code=batch,
            activated=done.result["activated"],
            suspended_batches=campaigns.suspended_batches(services, tenant),
            job_id=done.id,
        ),
    )


@router.get("/commands/suspended-batches")
def suspended_batches(caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None) -> SuspendedBatches:
    tenant = tenant_of_call(caller, tenant_id, None)
    return SuspendedBatches(tenant_id=tenant, suspended_batches=campaigns.suspended_batches(services, tenant))
