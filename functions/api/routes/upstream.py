"""The February-2026 surface (UPSTREAM-API.md §2): `/{entity}/{method}`, a GET taking its parameters in the
query, a POST taking a JSON body keyed by parameter name (always required: `{}` when every parameter is
optional), answered in the original's shapes (bare lists, bools, null).

Each method calls our own route (functions/api/routes/*.py) or the store it reads, so that auth, tenant
scoping, validation, masking and errors are ours: a tenant key acts on its own tenant only (403 otherwise),
admin-only stays admin-only, a bad field is a 422 naming it, an unknown tenant, account or message a 404,
never a 500. A method with no counterpart here answers 501 saying why, an unknown method of a known entity
404 listing the entity's methods, a known one called with the other HTTP method 405 (docs/tenants.md,
"Two surfaces")."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import SecretStr

from functions.api.dependencies import Caller, ReportTrigger, ServicesDep
from functions.api.routes import accounts as our_accounts
from functions.api.routes import audit as our_audit
from functions.api.routes import campaigns as our_campaigns
from functions.api.routes import messages as our_messages
from functions.api.routes import tenants as our_tenants
from functions.api.routes.audit import EndpointFilter, Since, Until
from functions.api.routes.jobs import ACCEPTED
from functions.api.routes.status import reached
from mailproxy.crypto import DecryptionError
from mailproxy.dal.records import StoredTenant
from mailproxy.logic import metrics_text, policy
from mailproxy.logic.policy import Principal
from mailproxy.logic.reports import sync_status
from mailproxy.models import (
    ACTIVE_STATUSES,
    DEFAULT_TENANT,
    AccountIdentifier,
    AddMessagesRequest,
    AddMessagesResponse,
    BounceConfigIn,
    CleanupRequest,
    ClientAuth,
    CommandLogPurgeRequest,
    DeleteMessagesRequest,
    MessageIdentifier,
    MessageView,
    Rejection,
    RejectionCode,
    TenantId,
    TenantIn,
    TenantScoped,
    UpstreamAccountIn,
    UpstreamAccountRef,
    UpstreamApiKeyBody,
    UpstreamBatchBody,
    UpstreamDeleteBatch,
    UpstreamMessageIn,
    UpstreamMessageRef,
    UpstreamNoParameters,
    UpstreamPecAccountIn,
    UpstreamTenantBody,
    UpstreamTenantUpdate,
)
from mailproxy.services import Services
from mailproxy.views import (
    ActivateResult,
    ApiKeyCreated,
    ApiKeyRevoked,
    AuditEntryView,
    BounceConfigSaved,
    BounceConfigView,
    BounceReloaded,
    CleanupResult,
    CommandExported,
    CommandLogPurged,
    HealthReport,
    InstanceStatus,
    MessageAdded,
    MessagesRemoved,
    RunNowResult,
    SuspendedBatches,
    SuspendResult,
    SyncStatus,
    TenantAdded,
    TenantView,
    UpstreamAccountRow,
    UpstreamMessageRow,
)

router = APIRouter(tags=["february-2026"])

Tenant = Annotated[TenantId, Query(description="the tenant; a tenant key: its own")]
MAX_LISTED = 1000  # messages/list answers a bare list, so no cursor: at most this many, newest first


def _known_tenant(services: Services, tenant_id: str) -> str:
    """A tenant with an item, or `default` (which works without one); else 404, where the original answered 500."""
    if tenant_id != DEFAULT_TENANT and services.tenants.get(tenant_id) is None:
        raise policy.NotFound(f"tenant_id: tenant {tenant_id!r} not found")
    return tenant_id


# -- instance ------------------------------------------------------------------------------------------


@router.get("/instance/health")
def instance_health(caller: Caller) -> HealthReport:
    """`GET /health`, with a token (every generated route of the original needs one)."""
    return HealthReport()


@router.get("/instance/status")
def instance_status(caller: Caller, services: ServicesDep) -> InstanceStatus:
    """`active`: DynamoDB and SQS answer (`GET /status`); always 200, as the original."""
    dependencies = {"dynamodb": reached(services.messages.ping)[0], "sqs": reached(services.queues.depth)[0]}
    return InstanceStatus(active=all(state == "ok" for state in dependencies.values()), dependencies=dependencies)


@router.post("/instance/run_now")
def instance_run_now(
    request: TenantScoped, caller: Caller, services: ServicesDep, trigger_report: ReportTrigger
) -> RunNowResult:
    """`POST /commands/run-now`; a named tenant is synced on the next report run, even in do-not-disturb."""
    return our_messages.run_now(caller, services, trigger_report, request)


@router.get("/instance/get_bounce_config")
def instance_get_bounce_config(caller: Caller, services: ServicesDep) -> BounceConfigView:
    """The deployment's bounce mailbox (admin); the password only as `has_password`."""
    caller.require_admin()
    return BounceConfigView.from_record(services.bounce_config.get())


@router.post("/instance/set_bounce_config")
def instance_set_bounce_config(request: BounceConfigIn, caller: Caller, services: ServicesDep) -> BounceConfigSaved:
    """Change the fields given (null or absent: kept); the password stored encrypted, never shown (admin)."""
    caller.require_admin()
    config = services.bounce_config.merged(services.bounce_config.get(), request)
    if config.enabled and config.imap_host is None:
        raise policy.Refused("imap_host: required when the bounce mailbox is enabled")
    if request.imap_host is not None:
        policy.refuse_internal_imap_host(request.imap_host, services.settings)
    password = request.imap_password.get_secret_value() if request.imap_password is not None else None
    services.bounce_config.put(config, password)
    return BounceConfigSaved()


@router.post("/instance/reload_bounce")
def instance_reload_bounce(request: UpstreamNoParameters, caller: Caller, services: ServicesDep) -> BounceReloaded:
    """Forget what the bounce poller remembers of the mailbox, so that its next run reads it afresh (admin);
    400 when enabled with no host, as the original. The body is `{}`."""
    caller.require_admin()
    config = services.bounce_config.get()
    if config.enabled and config.imap_host is None:
        raise policy.Refused("imap_host: the bounce mailbox is enabled with no host; set_bounce_config first")
    services.bounce_config.reset_mailbox_state()
    message = "the next poll reads the mailbox afresh" if config.enabled else "the bounce mailbox is disabled"
    return BounceReloaded(enabled=config.enabled, message=message)


@router.get("/instance/get_sync_status")
def instance_get_sync_status(caller: Caller, services: ServicesDep) -> SyncStatus:
    """Every tenant's report-sync state (admin); a tenant key sees its own tenant only."""
    status = SyncStatus.model_validate(sync_status(services, time.time()), from_attributes=True)
    if not caller.is_admin:
        status.tenants = [tenant for tenant in status.tenants if tenant.id == caller.tenant_id]
    return status


# -- tenants (and the instance's suspend/activate, the same calls) -----------------------------------------


@router.post("/instance/suspend", response_model=SuspendResult, responses=ACCEPTED)
@router.post("/tenants/suspend_batch", response_model=SuspendResult, responses=ACCEPTED)
def suspend_batch(request: UpstreamBatchBody, caller: Caller, services: ServicesDep) -> SuspendResult | JSONResponse:
    """`POST /commands/suspend`: hold the tenant's unsent mail, of one batch or (no batch_code) all."""
    _known_tenant(services, caller.scope(request.tenant_id))
    return our_campaigns.suspend(caller, services, request=request)


@router.post("/instance/activate", response_model=ActivateResult, responses=ACCEPTED)
@router.post("/tenants/activate_batch", response_model=ActivateResult, responses=ACCEPTED)
def activate_batch(request: UpstreamBatchBody, caller: Caller, services: ServicesDep) -> ActivateResult | JSONResponse:
    """`POST /commands/activate`: send the held mail, of one batch or (no batch_code) all."""
    _known_tenant(services, caller.scope(request.tenant_id))
    return our_campaigns.activate(caller, services, request=request)


@router.get("/tenants/get_suspended_batches")
def tenants_get_suspended_batches(tenant_id: Tenant, caller: Caller, services: ServicesDep) -> SuspendedBatches:
    return our_campaigns.suspended_batches(caller, services, tenant_id=tenant_id)


@router.post("/tenants/add")
def tenants_add(tenant: TenantIn, caller: Caller, services: ServicesDep) -> TenantAdded:
    """`POST /tenant` (admin); a tenant that did not exist gets its first API key, shown once, as the
    original did. Its row: `tenants/get`'s, never a secret or a key hash."""
    caller.require_admin()
    new = services.tenants.get(tenant.id) is None
    our_tenants.post_tenant(tenant, caller, services)
    api_key = our_tenants.new_api_key(tenant.id, caller, services).api_key if new else None
    return TenantAdded(**tenants_get(tenant.id, caller, services).model_dump(), api_key=api_key)


@router.get("/tenants/get")
def tenants_get(tenant_id: Tenant, caller: Caller, services: ServicesDep) -> TenantView:
    return our_tenants.get_tenant(tenant_id, caller, services).tenant


@router.get("/tenants/list")
def tenants_list(
    caller: Caller, services: ServicesDep, active_only: Annotated[bool, Query()] = False
) -> list[TenantView]:
    """`GET /tenants`: every tenant for the admin, its own for a tenant key."""
    return [tenant for tenant in our_tenants.list_tenants(caller, services).tenants if tenant.active or not active_only]


@router.post("/tenants/update")
def tenants_update(request: UpstreamTenantUpdate, caller: Caller, services: ServicesDep) -> TenantView:
    """`PUT /tenant/{tenant_id}` with the stored tenant's fields where the body leaves them out or null."""
    tenant_id = caller.scope(request.tenant_id)
    stored = services.tenants.get(tenant_id)
    if stored is None:
        raise policy.NotFound(f"tenant_id: tenant {tenant_id!r} not found")
    changes = {
        name: value for name in UpstreamTenantUpdate.model_fields if (value := getattr(request, name)) is not None
    }
    changes.pop("tenant_id")
    current = _as_submitted(services, stored, keep_auth="client_auth" not in changes)
    our_tenants.put_tenant(tenant_id, current.model_copy(update=changes), caller, services)
    return tenants_get(tenant_id, caller, services)


def _as_submitted(services: Services, stored: StoredTenant, *, keep_auth: bool) -> TenantIn:
    """The stored tenant as a `TenantIn`, its client credentials decrypted when they are to be kept (the
    store writes a tenant whole, encrypting them again)."""
    fields = stored.model_dump(include=set(TenantIn.model_fields) - {"client_auth", "large_file_config"})
    tenant = TenantIn(**fields, large_file_config=stored.large_file_config)
    if not keep_auth or stored.client_auth is None:
        return tenant
    try:
        plain = services.tenants.credentials(stored)
    except DecryptionError:
        raise policy.Refused("client_auth: the stored credentials cannot be decrypted; send client_auth") from None
    auth = ClientAuth(
        method=stored.client_auth.method,
        user=stored.client_auth.user,
        token=SecretStr(plain.token) if plain.token is not None else None,
        password=SecretStr(plain.password) if plain.password is not None else None,
    )
    return tenant.model_copy(update={"client_auth": auth})


@router.post("/tenants/delete")
def tenants_delete(request: UpstreamTenantBody, caller: Caller, services: ServicesDep) -> bool:
    """`DELETE /tenant/{tenant_id}` (admin): its accounts and unsent mail too (a large tenant's unsent mail
    by a job that goes on after the answer: GET /jobs)."""
    our_tenants.delete_tenant(request.tenant_id, caller, services)
    return True


@router.post("/tenants/create_api_key")
def tenants_create_api_key(request: UpstreamApiKeyBody, caller: Caller, services: ServicesDep) -> ApiKeyCreated:
    """`POST /tenant/{tenant_id}/api-key`: a new key replacing the old one, shown once; `expires_at` optional."""
    issued = our_tenants.new_api_key(request.tenant_id, caller, services, request)
    return ApiKeyCreated(**issued.model_dump())


@router.post("/tenants/revoke_api_key")
def tenants_revoke_api_key(request: UpstreamTenantBody, caller: Caller, services: ServicesDep) -> ApiKeyRevoked:
    """`DELETE /tenant/{tenant_id}/api-key`; 404 when the tenant has no key."""
    return ApiKeyRevoked(**our_tenants.revoke_api_key(request.tenant_id, caller, services).model_dump())


# -- accounts --------------------------------------------------------------------------------------------


@router.post("/accounts/add")
def accounts_add(account: UpstreamAccountIn, caller: Caller, services: ServicesDep) -> UpstreamAccountRow:
    """`POST /account`; answered with the stored account, the password masked."""
    saved = our_accounts.put_account(account, caller, services)
    return accounts_get(saved.tenant_id, saved.id, caller, services)


@router.post("/accounts/add_pec")
def accounts_add_pec(account: UpstreamPecAccountIn, caller: Caller, services: ServicesDep) -> UpstreamAccountRow:
    """`accounts/add` of a PEC account: its inbox (`imap_*`, user and password the SMTP ones when absent)."""
    return accounts_add(account, caller, services)


@router.get("/accounts/get")
def accounts_get(
    tenant_id: Tenant, account_id: Annotated[AccountIdentifier, Query()], caller: Caller, services: ServicesDep
) -> UpstreamAccountRow:
    stored = services.accounts.get(caller.scope(tenant_id), account_id)
    if stored is None:
        raise policy.NotFound(f"account_id: account {account_id!r} not found")
    return UpstreamAccountRow.from_stored(stored)


@router.get("/accounts/list")
def accounts_list(tenant_id: Tenant, caller: Caller, services: ServicesDep) -> list[UpstreamAccountRow]:
    page = our_accounts.list_accounts(caller, services, tenant_id=tenant_id)
    return [UpstreamAccountRow.from_view(account) for account in page.accounts]


@router.post("/accounts/delete")
def accounts_delete(request: UpstreamAccountRef, caller: Caller, services: ServicesDep) -> None:
    """`DELETE /account/{account_id}`: null, or 404 for an unknown account."""
    our_accounts.delete_account(request.account_id, caller, services, tenant_id=request.tenant_id)


# -- messages --------------------------------------------------------------------------------------------


@router.post("/messages/add_batch")
def messages_add_batch(request: AddMessagesRequest, caller: Caller, services: ServicesDep) -> AddMessagesResponse:
    """`POST /commands/add-messages`: the sender as `from` or `from_addr`, a string `to` split at its commas."""
    return our_messages.post_messages(request, caller, services)


# A single message's rejection as an error: the status the same fault has elsewhere in the API.
_REJECTED: dict[RejectionCode, Callable[[str], policy.PolicyError]] = {
    RejectionCode.INVALID: policy.Invalid,
    RejectionCode.UNKNOWN_ACCOUNT: policy.NotFound,
    RejectionCode.DUPLICATE: policy.Refused,
    RejectionCode.SUPPRESSED: policy.Refused,
}


def _refusal(rejection: Rejection) -> policy.PolicyError:
    return _REJECTED[rejection.code](rejection.reason)


@router.post("/messages/add")
def messages_add(message: UpstreamMessageIn, caller: Caller, services: ServicesDep) -> MessageAdded:
    """`add_batch` of one message; its rejection is the error (422 invalid, 404 unknown account, 400 an id
    already claimed or sent), a still-queued id is replaced."""
    answer = our_messages.post_messages(AddMessagesRequest(messages=[message.model_dump()]), caller, services)
    if answer.rejected:
        raise _refusal(answer.rejected[0])
    return MessageAdded(id=message.id, pk=f"{message.tenant_id}/{message.id}")


@router.get("/messages/get")
def messages_get(
    tenant_id: Tenant, message_id: Annotated[MessageIdentifier, Query()], caller: Caller, services: ServicesDep
) -> UpstreamMessageRow:
    item = services.messages.get(caller.scope(tenant_id), message_id)
    if item is None:
        raise policy.NotFound(f"message_id: message {message_id!r} not found")
    return UpstreamMessageRow.from_view(MessageView.model_validate({**item, "history": None}))


@router.get("/messages/list")
def messages_list(
    tenant_id: Tenant,
    caller: Caller,
    services: ServicesDep,
    active_only: Annotated[bool, Query(description="only queued, deferred and sending messages")] = False,
    include_history: Annotated[bool, Query(description="each message's events")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED, description="newest first; more: GET /messages")] = MAX_LISTED,
) -> list[UpstreamMessageRow]:
    """`GET /messages`, page after page, as one bare list (no cursor): at most `limit`, newest first."""
    rows: list[UpstreamMessageRow] = []
    cursor: str | None = None
    while len(rows) < limit:
        page = our_messages.list_messages(
            caller,
            services,
            tenant_id=tenant_id,
            status=None,
            account_id=None,
            active_only=active_only,
            include_history=include_history,
            limit=min(500, limit - len(rows)),
            cursor=cursor,
        )
        rows += [UpstreamMessageRow.from_view(view) for view in page.messages]
        cursor = page.cursor
        if cursor is None:
            break
    return rows


@router.post("/messages/delete")
def messages_delete(request: UpstreamMessageRef, caller: Caller, services: ServicesDep) -> bool:
    """True when the message was removed; false when there is none, or it is already being sent or done."""
    named = DeleteMessagesRequest(tenant_id=request.tenant_id, ids=[request.message_id])
    return request.message_id in our_campaigns.delete_messages(named, caller, services).removed


@router.post("/messages/delete_batch")
def messages_delete_batch(request: UpstreamDeleteBatch, caller: Caller, services: ServicesDep) -> MessagesRemoved:
    """`POST /commands/delete-messages`, `removed` counted as in the original."""
    outcome = our_campaigns.delete_messages(request, caller, services)
    return MessagesRemoved(**outcome.model_dump(exclude={"removed"}), removed=len(outcome.removed))


@router.get("/messages/cleanup", response_model=CleanupResult, responses=ACCEPTED)
def messages_cleanup(
    tenant_id: Tenant,
    caller: Caller,
    services: ServicesDep,
    older_than_seconds: Annotated[
        int, Query(ge=0, le=10 * 365 * 86400, description="default: 1 day, the original's here")
    ] = 86400,
) -> CleanupResult | JSONResponse:
    """`POST /commands/cleanup-messages`: acknowledged final messages created over `older_than_seconds` ago."""
    request = CleanupRequest(tenant_id=tenant_id, older_than_seconds=older_than_seconds)
    return our_campaigns.cleanup_messages(caller, services, request=request)


def _active_in_tenant(services: Services, tenant_id: str, batch_code: str | None) -> int:
    """Reads every status item of the tenant through its index (no Scan): its cost grows with the
    tenant's messages, sent history included until its TTL."""
    return sum(
        1
        for item in services.queries.tenant_messages(tenant_id)
        if item["status"] in ACTIVE_STATUSES and (batch_code is None or item.get("batch_code") == batch_code)
    )


@router.get("/messages/count_active")
def messages_count_active(caller: Caller, services: ServicesDep) -> int:
    """Messages not yet sent or given up. Admin: the whole deployment, from the counters `/metrics` reads
    (`gmp_pending_messages`: a bounded read, best effort). A tenant key: its own tenant, counted exactly."""
    if caller.is_admin:
        return metrics_text.snapshot(services).pending
    return _active_in_tenant(services, caller.scope(None), None)


@router.get("/messages/count_pending_for_tenant")
def messages_count_pending_for_tenant(
    tenant_id: Tenant,
    caller: Caller,
    services: ServicesDep,
    batch_code: Annotated[str | None, Query(max_length=64)] = None,
) -> int:
    """The tenant's messages (of one batch) queued, deferred or being sent."""
    return _active_in_tenant(services, caller.scope(tenant_id), batch_code)


# -- command log (admin) -----------------------------------------------------------------------------------


@router.get("/command_log/list")
def command_log_list(
    caller: Caller,
    services: ServicesDep,
    tenant_id: Annotated[TenantId | None, Query()] = None,
    since_ts: Since = None,
    until_ts: Until = None,
    endpoint_filter: EndpointFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000, description="entries skipped: each costs a read")] = 0,
) -> list[AuditEntryView]:
    """`GET /command-log`, oldest first, by offset instead of our cursor."""
    caller.require_admin()
    entries = services.audit.export(
        tenant_id=tenant_id, since_ts=since_ts, until_ts=until_ts, endpoint_filter=endpoint_filter
    )
    return [AuditEntryView.from_entry(entry) for entry in islice(entries, offset, offset + limit)]


@router.get("/command_log/get")
def command_log_get(
    command_id: Annotated[str, Query(max_length=64)], caller: Caller, services: ServicesDep
) -> AuditEntryView:
    caller.require_admin()
    entry = services.audit.get(command_id)
    if entry is None:
        raise policy.NotFound(f"command_id: entry {command_id!r} not found")
    return AuditEntryView.from_entry(entry)


@router.get("/command_log/export")
def command_log_export(
    caller: Caller,
    services: ServicesDep,
    tenant_id: Annotated[TenantId | None, Query()] = None,
    since_ts: Since = None,
    until_ts: Until = None,
) -> list[CommandExported]:
    """Every matching entry in the original's layout, one JSON list (`GET /command-log/export` streams
    JSON lines instead, for large logs)."""
    caller.require_admin()
    entries = services.audit.export(tenant_id=tenant_id, since_ts=since_ts, until_ts=until_ts)
    return [CommandExported.from_entry(entry) for entry in entries]


@router.post("/command_log/purge")
def command_log_purge(request: CommandLogPurgeRequest, caller: Caller, services: ServicesDep) -> CommandLogPurged:
    return our_audit.purge_command_log(request, caller, services)


# -- what the surface does not serve ---------------------------------------------------------------------

_PEC_OF_EVERY_TENANT = (
    "no listing of every tenant's PEC accounts (issue 17): they are listed per tenant (accounts/list, "
    "is_pec_account), and their inbox passwords never leave the deployment"
)
_NOT_SERVED: dict[str, dict[str, str]] = {
    "instance": {
        "get": "the instance is the deployment: its API token is a secret in Secrets Manager "
        "(GMP_API_TOKEN_SECRET_ARN; GMP_API_TOKEN locally), never shown; GET /status tells its health",
        "update": "the API token is a deployment secret, changed in Secrets Manager (docs/deploy.md, "
        "'Secret 1: the API token'); the instance has no other settings of its own",
        "upgrade_to_ee": "there are no editions here: every feature of this deployment is on",
    },
    "accounts": {name: _PEC_OF_EVERY_TENANT for name in ("list_pec", "get_pec_ids")},
    "storages": {
        name: "no named storages: attachments come inline, by URL, from the tenant's endpoint or from the "
        "deployment's S3 buckets (s3://), and large files are offloaded to its contents bucket"
        for name in ("add", "delete", "get", "list")
    },
    "tenants": {},
    "messages": {},
    "command_log": {},
}


def _served() -> dict[str, dict[str, str]]:
    """entity -> method -> its HTTP method, from the routes above."""
    served: dict[str, dict[str, str]] = {entity: {} for entity in _NOT_SERVED}
    for route in router.routes:
        if isinstance(route, APIRoute):
            entity, _, method = route.path.strip("/").partition("/")
            for http in route.methods or ():
                served[entity][method] = http
    return served


_SERVED = _served()


def _fallback(entity: str) -> Callable[[str, Request, Principal], None]:
    def unserved_method(method: str, request: Request, caller: Caller) -> None:
        reason = _NOT_SERVED[entity].get(method)
        if reason is not None:
            raise HTTPException(status_code=501, detail=f"{entity}/{method}: not on this surface: {reason}")
        wanted = _SERVED[entity].get(method)
        if wanted is not None:
            where = "parameters in the query" if wanted == "GET" else "a JSON body keyed by parameter name"
            raise HTTPException(status_code=405, detail=f"{entity}/{method} is a {wanted}: {where}")
        known = ", ".join(sorted({*_SERVED[entity], *_NOT_SERVED[entity]}))
        raise HTTPException(status_code=404, detail=f"{entity}/{method}: no such method; {entity} has: {known}")

    unserved_method.__name__ = f"unserved_{entity}_method"
    return unserved_method


for _entity in _NOT_SERVED:  # after every served route: Starlette takes the first route that matches
    router.add_api_route(
        f"/{_entity}/{{method}}",
        _fallback(_entity),
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
