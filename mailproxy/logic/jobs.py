"""Bulk tenant operations as jobs (docs/operations.md, "Jobs"): suspend, activate, cleanup and tenant
deletion walk every message of a tenant, which can outlast an API call (API Gateway stops at 29 s).

`start` takes the operation's immediate step (a suspension holds new mail at once), creates the job and runs
it for `GMP_JOB_INLINE_BUDGET` seconds: a small tenant's job ends inside the call, whose answer is then the
route's usual one. An unfinished job is handed to the jobs queue; the worker (functions/jobs) runs it for
its own budget from the checkpoint and sends a continuation when that runs out. Each page is applied, then
recorded with its checkpoint by one conditional write: a run that dies resumes after the last recorded page,
and the operations are idempotent, so a page applied but not recorded is looked at again without being
counted twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mailproxy.dal.jobs import Job, JobKind
from mailproxy.dal.message_queries import WalkPosition
from mailproxy.dal.queues import QueueEntry
from mailproxy.dal.suspensions import is_suspended
from mailproxy.logic.campaigns import remove_acknowledged
from mailproxy.models import UNSENT_STATUSES
from mailproxy.observability import logger
from mailproxy.services import Services

Clock = Callable[[], float]
Page = list[dict[str, Any]]


def _in_batch(job: Job, item: dict[str, Any]) -> bool:
    batch_code = job.parameters.get("batch_code")
    return item["status"] in UNSENT_STATUSES and (batch_code is None or item.get("batch_code") == batch_code)


def _suspend_page(services: Services, job: Job, page: Page, now: int) -> int:
    return sum(
        services.messages.set_suspended(item, True, now=now)
        for item in page
        if _in_batch(job, item) and not item.get("suspended")
    )


def _activate_page(services: Services, job: Job, page: Page, now: int) -> int:
    """Release the page's held messages whose suspension is lifted; urgent priorities first within the page."""
    still_suspended = services.suspensions.suspended(job.tenant_id)
    released = [
        item
        for item in page
        if _in_batch(job, item)
        and item.get("suspended")
        and not is_suspended(still_suspended, item.get("batch_code"))
        and services.messages.set_suspended(item, False, now=now)
    ]
    released.sort(key=lambda item: (int(item["priority"]), item["created_ts"], item["id"]))
    services.queues.enqueue(
        [
            QueueEntry(
                i["tenant_id"], i["id"], i["account_id"], int(i["priority"]), delay=max(0, i.get("not_before", 0) - now)
            )
            for i in released
        ]
    )
    return len(released)


def _cleanup_page(services: Services, job: Job, page: Page, now: int) -> int:
    return remove_acknowledged(services, page, now)


def _delete_tenant_page(services: Services, job: Job, page: Page, now: int) -> int:
    return sum(
        services.messages.delete_unsent(job.tenant_id, item["id"]) == "removed"
        for item in page
        if item["status"] in UNSENT_STATUSES
    )


_PAGE_OPERATIONS: dict[str, Callable[[Services, Job, Page, int], int]] = {
    "suspend": _suspend_page,
    "activate": _activate_page,
    "cleanup": _cleanup_page,
    "delete_tenant": _delete_tenant_page,
}

_RESULT_NAMES = {"suspend": "suspended", "activate": "activated", "cleanup": "removed", "delete_tenant": "messages"}


def _begin(services: Services, tenant_id: str, kind: JobKind, parameters: dict[str, Any]) -> dict[str, Any]:
    """The step that takes effect at once, before the walk; returns the parameters the job keeps."""
    if kind == "suspend":
        services.suspensions.suspend(tenant_id, parameters.get("batch_code"))
    elif kind == "activate":
        services.suspensions.activate(tenant_id, parameters.get("batch_code"))
    elif kind == "delete_tenant":
        accounts = services.accounts.list(tenant_id)
        for account in accounts:
            services.accounts.delete(tenant_id, account.id)
        return {**parameters, "accounts": len(accounts)}
    return parameters


def _end(services: Services, job: Job) -> dict[str, Any]:
    """The step after the walk; returns the counts the operation's route answers."""
    if job.kind == "delete_tenant":
        services.suspensions.activate(job.tenant_id, None)
        services.tenants.delete(job.tenant_id)
        services.counters.forget_tenant(job.tenant_id)
        return {"accounts": job.parameters["accounts"]}
    return {}


def start(
    services: Services,
    tenant_id: str,
    kind: JobKind,
    parameters: dict[str, Any],
    *,
    now: float,
    clock: Clock = time.monotonic,
) -> Job:
    """Begin the operation and run it within the inline budget; an unfinished job continues in the
    background. Without a jobs queue (tests' services) it runs to its end here."""
    job = services.jobs.create(tenant_id, kind, _begin(services, tenant_id, kind, parameters), now=now)
    background = services.job_queue.url is not None
    try:
        job = run(
            services, job, budget_seconds=services.settings.job_inline_budget if background else None, clock=clock
        )
    except Exception:
        if not background:
            raise
        # The worker takes it from the last recorded page; the caller gets its 202.
        logger.exception("job run failed inside the API call; continued by the worker", extra={"job_id": job.id})
        job = services.jobs.get(tenant_id, job.id) or job
    if job.active:
        services.job_queue.send(job)
    return job


def continue_job(
    services: Services,
    tenant_id: str,
    job_id: str,
    checkpoint: dict[str, Any] | None,
    *,
    budget_seconds: float,
    clock: Clock = time.monotonic,
) -> Job | None:
    """The worker's run of a continuation; another continuation is sent when the budget runs out. A
    continuation whose checkpoint is no longer the job's (a redelivered or superseded message) is dropped."""
    job = _still_at(services, tenant_id, job_id, checkpoint)
    if job is None:
        return None
    job = run(services, job, budget_seconds=budget_seconds, clock=clock)
    if job.active:
        services.job_queue.send(job)
    return job


def _still_at(services: Services, tenant_id: str, job_id: str, checkpoint: dict[str, Any] | None) -> Job | None:
    """The job, if a continuation carrying `checkpoint` is still its own: the job goes on and stands there."""
    job = services.jobs.get(tenant_id, job_id)
    return job if job is not None and job.active and job.checkpoint == checkpoint else None


def fail_abandoned(services: Services, tenant_id: str, job_id: str, checkpoint: dict[str, Any] | None) -> Job | None:
    """A continuation the jobs queue gave up on (it failed in the worker as often as the queue allows, then
    moved to its DLQ): the job ends as failed where it stands, unless it moved on since (another run took it
    further, or it ended)."""
    job = _still_at(services, tenant_id, job_id, checkpoint)
    if job is None:
        return None
    reason = (
        "its continuation kept failing in the jobs worker (its log names the cause); what was applied stays "
        "applied: re-issue the same call to finish the operation"
    )
    return services.jobs.fail(job, reason=reason, now=time.time())


def run(services: Services, job: Job, *, budget_seconds: float | None, clock: Clock = time.monotonic) -> Job:
    """Page through the tenant's messages from the job's checkpoint until the walk ends (the job is then
    done) or the budget is spent after a page. Stops, returning the job as last read, if another run moved it."""
    deadline = None if budget_seconds is None else clock() + budget_seconds
    operation = _PAGE_OPERATIONS[job.kind]
    created_before_ms = job.parameters.get("created_before_ms")
    while True:
        now = int(time.time())
        page, following = services.queries.tenant_page(
            job.tenant_id, WalkPosition.from_dict(job.checkpoint), created_before_ms=created_before_ms
        )
        affected = operation(services, job, page, now)
        if following is None:
            result = {_RESULT_NAMES[job.kind]: job.affected + affected, **_end(services, job)}
            moved = services.jobs.finish(job, processed=len(page), affected=affected, result=result, now=now)
        else:
            moved = services.jobs.advance(
                job, processed=len(page), affected=affected, checkpoint=following.as_dict(), now=now
            )
        if moved is None:
            return services.jobs.get(job.tenant_id, job.id) or job
        job = moved
        if not job.active or (deadline is not None and clock() >= deadline):
            return job
