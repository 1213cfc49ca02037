"""What the routes receive through `Depends`: the services, the report trigger and the caller (`Caller`).
The app's `ApiContext` (functions/api/app.py) is read from `app.state` here, and nowhere else."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Protocol

from fastapi import Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel

from functions.api.middleware import AuditedPrincipal
from mailproxy.dal.tenants import key_hash
from mailproxy.logic import policy
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


def principal(
    request: Request, context: ApiContextDep, x_api_token: Annotated[str | None, Header()] = None
) -> Principal:
    """The admin token, or a tenant's current, unexpired key (a lookup item left behind by a race or a
    revocation is refused, as is the key of an inactive tenant; an expired key is refused saying so, on
    admin routes too). The caller is left on `request.state` for the audit trail (functions/api/middleware.py)."""
    caller: AuditedPrincipal | None = None
    if x_api_token:
        if context.is_admin_token(x_api_token):
            caller = AuditedPrincipal(None)
        else:
            tenant = context.services.tenants.tenant_of_key(x_api_token)
            if tenant is not None and tenant.active:
                if tenant.key_expired(time.time()):
                    raise HTTPException(status_code=401, detail="X-API-Token: this API key has expired")
                caller = AuditedPrincipal(tenant.id, caller="tenant", key_id=key_hash(x_api_token)[:8])
    if caller is None:
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Token")
    request.state.principal = caller
    return caller


ServicesDep = Annotated[Services, Depends(services)]
ReportTrigger = Annotated[Callable[[], None], Depends(report_trigger)]
Caller = Annotated[Principal, Depends(principal)]
TenantQuery = Annotated[TenantId | None, Query()]
BatchQuery = Annotated[str | None, Query(max_length=64)]


def agreeing(field: str, query: str | None, body: str | None) -> str | None:
    """The value a call gives in the query (the January-2026 form) or in its body (ours); naming it in both
    is fine only when they agree, else 400 naming the field."""
    if query is not None and body is not None and query != body:
        raise policy.Refused(f"{field}: the query says {query!r}, the body {body!r}; name it once or the same")
    return query if query is not None else body


def tenant_of_call(caller: Principal, query_tenant: str | None, body: BaseModel | None) -> str:
    """The tenant a call acts on, named in the query or in the body (`Principal.scope`: `default` for an
    admin naming none, 403 for a tenant key naming another)."""
    named = getattr(body, "tenant_id", None) if body is not None and "tenant_id" in body.model_fields_set else None
    return caller.scope(agreeing("tenant_id", query_tenant, named))
