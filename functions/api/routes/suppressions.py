"""A tenant's suppression list: addresses its mail no longer goes to (docs/tenants.md). Hard bounces and
complaints add themselves (the bouncer); these routes list, add and remove by hand."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from functions.api.dependencies import Caller, ServicesDep, TenantQuery, tenant_of_call
from mailproxy.dal.suppressions import MAX_PAGE
from mailproxy.logic import policy
from mailproxy.models import MAX_ADDRESS_LENGTH, SuppressionsAddRequest
from mailproxy.views import SuppressionRemoved, SuppressionsAdded, SuppressionsPage, SuppressionView

router = APIRouter(tags=["suppressions"])


@router.get("/suppressions")
def list_suppressions(
    caller: Caller,
    services: ServicesDep,
    tenant_id: TenantQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048, description="from the previous page")] = None,
) -> SuppressionsPage:
    tenant = tenant_of_call(caller, tenant_id, None)
    entries, next_cursor = services.suppressions.list(tenant, limit, cursor)
    return SuppressionsPage(
        tenant_id=tenant, suppressions=[SuppressionView.from_record(entry) for entry in entries], cursor=next_cursor
    )


@router.post("/suppressions")
def add_suppressions(request: SuppressionsAddRequest, caller: Caller, services: ServicesDep) -> SuppressionsAdded:
    tenant = tenant_of_call(caller, None, request)
    added = services.suppressions.add_many(tenant, request.addresses, request.reason)
    return SuppressionsAdded(tenant_id=tenant, added=added)


@router.delete("/suppressions/{address}")
def remove_suppression(
    address: Annotated[str, Path(min_length=1, max_length=MAX_ADDRESS_LENGTH)],
    caller: Caller,
    services: ServicesDep,
    tenant_id: TenantQuery = None,
) -> SuppressionRemoved:
    tenant = tenant_of_call(caller, tenant_id, None)
    if not services.suppressions.remove(tenant, address):
        raise policy.NotFound(f"address: {address!r} is not on the suppression list of tenant {tenant!r}")
    return SuppressionRemoved(tenant_id=tenant, address=address)
