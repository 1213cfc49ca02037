"""What the routes receive through `Depends`: the services, the report trigger and the caller (`Caller`).
The app's `ApiContext` (functions/api/app.py) is read from `app.state` here, and nowhere else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol

from fastapi import Depends, Header, HTTPException, Query, Request

from mailproxy.logic.policy import Principal
from mailproxy.models import TenantId
from mailproxy.services import Services


class Context(Protocol):
    """What `functions.api.app.ApiContext` gives the routes."""

    trigger_report: Callable[[], None]

    @property
    def services(self) -> Services: ...

    def is_admin_token(self, given: str) -> bool: ...


def api_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ApiContextDep = Annotated[Context, Depends(api_context)]


def services(context: ApiContextDep) -> Services:
    return context.services


def report_trigger(context: ApiContextDep) -> Callable[[], None]:
    return context.trigger_report


def principal(context: ApiContextDep, x_api_token: Annotated[str | None, Header()] = None) -> Principal:
    """The admin token, or a tenant's current key (a lookup item left behind by a race or a revocation
    is refused, as is the key of an inactive tenant)."""
    if x_api_token:
        if context.is_admin_token(x_api_token):
            return Principal(None)
        tenant = context.services.tenants.tenant_of_key(x_api_token)
        if tenant is not None and tenant.active:
            return Principal(tenant.id)
    raise HTTPException(status_code=401, detail="missing or wrong X-API-Token")


ServicesDep = Annotated[Services, Depends(services)]
ReportTrigger = Annotated[Callable[[], None], Depends(report_trigger)]
Caller = Annotated[Principal, Depends(principal)]
TenantQuery = Annotated[TenantId | None, Query()]
