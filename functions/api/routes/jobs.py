"""Bulk jobs (docs/operations.md, "Jobs"): the progress of a suspend, activate, cleanup or tenant deletion
that outlasted its call. A tenant key reads its own tenant's jobs; the admin token every tenant's.

`job_answer` is how the bulk routes answer: their usual body (with `job_id`) when the job ended inside
the call, else 202 with the job's id and progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from functions.api.dependencies import Caller, ServicesDep, TenantQuery
from mailproxy.dal.jobs import Job
from mailproxy.logic import policy
from mailproxy.models import DEFAULT_TENANT
from mailproxy.services import Services
from mailproxy.views import JobAccepted, JobList, JobView

router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{25}$", description="as a bulk route's answer gives it")]
Finished = TypeVar("Finished", bound=BaseModel)

# The OpenAPI entry of a bulk route's 202.
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": JobAccepted, "description": "not done within the call: continues in the background"}
}


def job_answer(job: Job, finished: Callable[[Job], Finished]) -> Finished | JSONResponse:
    if job.finished:
        return finished(job)
    accepted = JobAccepted(job_id=job.id, status=job.status, processed=job.processed)
    return JSONResponse(status_code=202, content=accepted.model_dump())


def _view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        tenant_id=job.tenant_id,
        kind=job.kind,
        status=job.status,
        parameters=job.parameters,
        processed=job.processed,
        affected=job.affected,
        result=job.result,
        created_ts=job.created_ts,
        updated_ts=job.updated_ts,
    )


def _tenants_in_view(caller: Caller, services: Services, tenant_id: str | None) -> list[str]:
    """The named tenant (a tenant key: its own); the admin naming none: every tenant."""
    if tenant_id is not None or not caller.is_admin:
        return [caller.scope(tenant_id)]
    return [DEFAULT_TENANT, *(tenant.id for tenant in services.tenants.list() if tenant.id != DEFAULT_TENANT)]


@router.get("/jobs/{job_id}")
def get_job(job_id: JobId, caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None) -> JobView:
    for tenant in _tenants_in_view(caller, services, tenant_id):
        job = services.jobs.get(tenant, job_id)
        if job is not None:
            return _view(job)
    raise policy.NotFound(f"job_id: job {job_id!r} not found")


@router.get("/jobs")
def list_jobs(caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None) -> JobList:
    """Jobs kept for 7 days after their last change, newest first per tenant."""
    return JobList(
        jobs=[
            _view(job) for tenant in _tenants_in_view(caller, services, tenant_id) for job in services.jobs.list(tenant)
        ]
    )
