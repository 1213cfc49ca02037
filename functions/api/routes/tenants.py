"""Tenants: their endpoints and credentials (masked when read), API keys and report signing secrets."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from functions.api.dependencies import Caller, ServicesDep
from functions.api.routes.jobs import ACCEPTED, job_answer
from mailproxy.dal.records import StoredTenant
from mailproxy.logic import jobs, policy
from mailproxy.models import ApiKeyRequest, TenantId, TenantIn
from mailproxy.services import Services
from mailproxy.views import (
    ApiKeyIssued,
    SigningSecretIssued,
    TenantDeleted,
    TenantDetail,
    TenantRemoval,
    TenantSaved,
    TenantSecretRemoved,
    TenantsPage,
    TenantView,
)

router = APIRouter(tags=["tenants"])


def _not_found(tenant_id: str) -> policy.NotFound:
    return policy.NotFound(f"tenant {tenant_id!r} not found")


def _existing_tenant(services: Services, tenant_id: str) -> StoredTenant:
    item = services.tenants.get(tenant_id)
    if item is None:
        raise _not_found(tenant_id)
    return item


@router.post("/tenant")
def post_tenant(tenant: TenantIn, caller: Caller, services: ServicesDep) -> TenantSaved:
    """Create or replace a tenant (admin); a tenant key may replace its own tenant, not create it."""
    caller.scope(tenant.id)
    policy.refuse_internal_url(tenant.client_base_url, services.settings)
    if not caller.is_admin and services.tenants.get(tenant.id) is None:
        caller.require_admin()
    if not services.tenants.put(tenant, must_exist=not caller.is_admin):
        raise _not_found(tenant.id)
    return TenantSaved(id=tenant.id)


@router.get("/tenants")
def list_tenants(caller: Caller, services: ServicesDep) -> TenantsPage:
    items = services.tenants.list() if caller.is_admin else [services.tenants.get(caller.scope(None))]
    return TenantsPage(tenants=[TenantView.from_record(item) for item in items if item])


@router.get("/tenant/{tenant_id}")
def get_tenant(tenant_id: TenantId, caller: Caller, services: ServicesDep) -> TenantDetail:
    return TenantDetail(tenant=TenantView.from_record(_existing_tenant(services, caller.scope(tenant_id))))


@router.put("/tenant/{tenant_id}")
def put_tenant(tenant_id: TenantId, tenant: TenantIn, caller: Caller, services: ServicesDep) -> TenantSaved:
    if tenant.id != tenant_id:
        raise policy.Invalid("id: must match the tenant in the path")
    _existing_tenant(services, caller.scope(tenant_id))
    policy.refuse_internal_url(tenant.client_base_url, services.settings)
    if not services.tenants.put(tenant, must_exist=True):  # deleted meanwhile: not recreated
        raise _not_found(tenant_id)
    return TenantSaved(id=tenant_id)


@router.delete("/tenant/{tenant_id}", response_model=TenantDeleted, responses=ACCEPTED)
def delete_tenant(tenant_id: TenantId, caller: Caller, services: ServicesDep) -> TenantDeleted | JSONResponse:
    """Its accounts go at once, its unsent mail by a job (functions/api/routes/jobs.py), the tenant last."""
    caller.require_admin()
    _existing_tenant(services, tenant_id)
    job = jobs.start(services, tenant_id, "delete_tenant", {}, now=time.time())
    return job_answer(
        job, lambda done: TenantDeleted(id=tenant_id, removed=TenantRemoval.model_validate(done.result), job_id=done.id)
    )


@router.post("/tenant/{tenant_id}/api-key")
def new_api_key(
    tenant_id: TenantId, caller: Caller, services: ServicesDep, options: ApiKeyRequest | None = None
) -> ApiKeyIssued:
    """A new key replacing the tenant's old one, shown once; with `expires_at` it is refused (401) after it."""
    expires_at = options.expires_at if options is not None else None
    key = services.tenants.new_api_key(caller.scope(tenant_id), expires_at=expires_at)
    if key is None:
        raise _not_found(tenant_id)
    return ApiKeyIssued(tenant_id=tenant_id, api_key=key, expires_at=expires_at)


@router.post("/tenant/{tenant_id}/signing-secret")
def new_signing_secret(tenant_id: TenantId, caller: Caller, services: ServicesDep) -> SigningSecretIssued:
    """Generate or rotate the tenant's report signing secret: shown once. Reports to the tenant's own
    endpoint are signed with it (`X-GMP-Signature`), never with the deployment's secret."""
    secret = services.tenants.new_signing_secret(caller.scope(tenant_id))
    if secret is None:
        raise _not_found(tenant_id)
    return SigningSecretIssued(tenant_id=tenant_id, signing_secret=secret)


@router.delete("/tenant/{tenant_id}/signing-secret")
def delete_signing_secret(tenant_id: TenantId, caller: Caller, services: ServicesDep) -> TenantSecretRemoved:
    if not services.tenants.delete_signing_secret(caller.scope(tenant_id)):
        raise policy.NotFound(f"tenant {tenant_id!r} has no signing secret")
    return TenantSecretRemoved(tenant_id=tenant_id)


@router.delete("/tenant/{tenant_id}/api-key")
def revoke_api_key(tenant_id: TenantId, caller: Caller, services: ServicesDep) -> TenantSecretRemoved:
    if not services.tenants.revoke_api_key(caller.scope(tenant_id)):
        raise policy.NotFound(f"tenant {tenant_id!r} has no API key")
    return TenantSecretRemoved(tenant_id=tenant_id)
