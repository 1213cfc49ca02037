"""What the API answers: one response model per route, so that the OpenAPI document (docs/api.md) describes
every body. Secrets never leave: stored passwords and tenant credentials are shown as "***" (`from_item`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mailproxy.dal.audit import AuditEntry
from mailproxy.dal.records import (
    DEFAULT_BOUNCE_POLL_INTERVAL,
    StoredAccount,
    StoredBounceConfig,
    StoredSuppression,
    StoredTenant,
)
from mailproxy.models import (
    DEFAULT_IMAP_FOLDER,
    DEFAULT_IMAP_PORT,
    HistoryEvent,
    LargeFileConfig,
    MessageStatus,
    MessageView,
)

MASK = "***"
SHOWN_ONCE = "shown once; store it now"


class Answer(BaseModel):
    ok: bool = True


class HealthReport(BaseModel):
    status: Literal["ok"] = "ok"


class StatusReport(BaseModel):
    ok: bool = Field(description="every dependency answered")
    mode: str
    dependencies: dict[str, str] = Field(description='"ok" or "unavailable: <error>" for dynamodb and sqs')
    queues: dict[str, int] = Field(description="approximate messages waiting in each delivery queue")


# -- accounts ------------------------------------------------------------------------------------------


class AccountView(BaseModel):
    id: str
    tenant_id: str
    host: str
    port: int
    user: str | None = None
    password: str | None = Field(default=None, description="'***' when a password is stored; never the password")
    use_tls: bool
    timeout: float
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_per_second: int | None = None
    max_concurrent: int | None = None
    limit_behavior: str = "defer"
    batch_size: int | None = None
    suppression: bool = Field(default=True, description="the tenant's suppression list applies to its mail")
    is_pec_account: bool = False
    ses_configuration_set: str | None = None
    sandbox: bool = Field(default=False, description="messages are built and recorded, sent nowhere")
    keep_raw_seconds: int | None = None
    imap_host: str | None = None
    imap_port: int = DEFAULT_IMAP_PORT
    imap_user: str | None = Field(default=None, description="null: the SMTP user")
    imap_password: str | None = Field(
        default=None, description="'***' when an inbox password of its own is stored; null: the SMTP password"
    )
    imap_folder: str = DEFAULT_IMAP_FOLDER

    @classmethod
    def from_record(cls, stored: StoredAccount) -> AccountView:
        """A stored account, the passwords masked."""
        fields = stored.model_dump(include=set(cls.model_fields) - {"password", "imap_password"})
        return cls(
            **fields,
            password=MASK if stored.password_enc is not None else None,
            imap_password=MASK if stored.imap_password_enc is not None else None,
        )


class AccountSaved(Answer):
    id: str
    tenant_id: str


class AccountDeleted(Answer):
    id: str


class AccountsPage(Answer):
    accounts: list[AccountView]


class ProbeStep(BaseModel):
    step: str = Field(description="connect, ehlo, starttls or auth")
    ok: bool
    detail: str = Field(description="the server's answer or the failure; never the password")


class SmtpProbeResult(BaseModel):
    ok: bool = Field(description="every step passed, through auth")
    steps: list[ProbeStep] = Field(description="in order; they stop at the first failure")

    @classmethod
    def from_steps(cls, steps: list[tuple[str, bool, str]]) -> SmtpProbeResult:
        """`mailproxy.logic.smtp.probe`'s steps. The account works when every step passed and the last is
        `auth` (which passes, skipped, for an account without credentials)."""
        ok = bool(steps) and all(passed for _, passed, _ in steps) and steps[-1][0] == "auth"
        return cls(ok=ok, steps=[ProbeStep(step=name, ok=passed, detail=detail) for name, passed, detail in steps])

    @classmethod
    def failed(cls, step: str, detail: str) -> SmtpProbeResult:
        """A probe that could not start: one failed step."""
        return cls(ok=False, steps=[ProbeStep(step=step, ok=False, detail=detail)])


# -- messages and campaigns ----------------------------------------------------------------------------


class RunNowResult(Answer):
    enqueued: int = Field(description="due deferred messages put on the queues")
    throttled: bool = Field(description="a trigger came within GMP_RUN_NOW_MIN_INTERVAL: nothing was done")


class TenantSyncStatus(BaseModel):
    id: str
    name: str | None = None
    active: bool
    client_base_url: str | None = None
    last_sync_ts: int | None = Field(description="unix seconds of the last call the client answered 2xx")
    next_sync_due: int | None = Field(
        description="unix seconds from which the next empty call may go; null: no own endpoint, no periodic call"
    )
    in_dnd: bool = Field(description="the client's next_sync_after is still ahead: no call to it until then")


class SyncStatus(Answer):
    """`reports.sync_status` as the API answers it: `SyncStatus.model_validate(overview, from_attributes=True)`."""

    tenants: list[TenantSyncStatus]
    sync_interval_seconds: int = Field(description="GMP_SYNC_INTERVAL")


class NotRemoved(BaseModel):
    id: str
    status: str
    reason: str


class DeleteMessagesResult(Answer):
    removed: list[str]
    not_found: list[str]
    unauthorized: list[str] = Field(description="always empty: a tenant key only ever names its own messages")
    not_removed: list[NotRemoved]


class RanAsJob(Answer):
    job_id: str | None = Field(
        default=None, description="the job that walked the tenant's messages (GET /jobs/{job_id})"
    )


class JobAccepted(BaseModel):
    """202: the operation goes on in the background; GET /jobs/{job_id} tells its progress."""

    job_id: str
    status: str
    processed: int = Field(description="messages looked at so far")


class JobView(BaseModel):
    id: str
    tenant_id: str
    kind: str
    status: str = Field(description="queued, running, done or failed (result.error says why)")
    parameters: dict[str, Any]
    processed: int = Field(description="messages looked at so far")
    affected: int = Field(description="messages held, released or removed so far")
    result: dict[str, Any] = Field(
        description="once done: the counts the operation's own route answers; once failed: `error`"
    )
    created_ts: int
    updated_ts: int


class JobList(Answer):
    jobs: list[JobView] = Field(description="newest first, per tenant")


class CleanupResult(RanAsJob):
    removed: int


class SuspendResult(RanAsJob):
    tenant_id: str
    batch_code: str | None
    suspended: int
    suspended_batches: list[str] = Field(description='the tenant\'s suspensions after the call; "*" = all its mail')


class ActivateResult(RanAsJob):
    tenant_id: str
    batch_code: str | None
    activated: int
    suspended_batches: list[str] = Field(description='the tenant\'s suspensions after the call; "*" = all its mail')


class SuspendedBatches(Answer):
    tenant_id: str
    suspended_batches: list[str] = Field(description='sorted; "*" = all the tenant\'s mail is held')


# -- tenants -------------------------------------------------------------------------------------------


class TenantView(BaseModel):
    id: str
    name: str | None = None
    client_base_url: str | None = None
    client_sync_path: str
    client_attachment_path: str
    client_auth: dict[str, Any] | None = Field(default=None, description="method and user; secrets masked")
    active: bool
    has_api_key: bool = False
    api_key_expires_at: int | None = Field(default=None, description="unix seconds; null: the key never expires")
    has_signing_secret: bool = False
    large_file_config: LargeFileConfig | None = Field(default=None, description="null: large-file offloading off")
    suppression: bool = Field(default=True, description="the tenant's suppression list applies to its mail")

    @classmethod
    def from_record(cls, tenant: StoredTenant) -> TenantView:
        """A stored tenant: its client credentials masked, its key and signing secret only as flags."""
        auth = tenant.client_auth
        masked: dict[str, Any] | None = None
        if auth:
            masked = {"method": auth.method, "user": auth.user}
            masked.update({"token": MASK} if auth.token_enc is not None else {})
            masked.update({"password": MASK} if auth.password_enc is not None else {})
        return cls(
            id=tenant.id,
            name=tenant.name,
            client_base_url=tenant.client_base_url,
            client_sync_path=tenant.client_sync_path,
            client_attachment_path=tenant.client_attachment_path,
            client_auth=masked,
            active=tenant.active,
            has_api_key=tenant.api_key_hash is not None,
            api_key_expires_at=tenant.api_key_expires_at if tenant.api_key_hash is not None else None,
            has_signing_secret=tenant.signing_secret_enc is not None,
            large_file_config=tenant.large_file_config,
            suppression=tenant.suppression,
        )


class TenantSaved(Answer):
    id: str


class TenantsPage(Answer):
    tenants: list[TenantView]


class TenantDetail(Answer):
    tenant: TenantView


class TenantRemoval(BaseModel):
    accounts: int
    messages: int = Field(description="unsent messages removed; sent history stays until its TTL")


class TenantDeleted(RanAsJob):
    id: str
    removed: TenantRemoval


class ApiKeyIssued(Answer):
    tenant_id: str
    api_key: str
    expires_at: int | None = Field(default=None, description="unix seconds; null: the key never expires")
    note: str = SHOWN_ONCE


class SigningSecretIssued(Answer):
    tenant_id: str
    signing_secret: str
    note: str = SHOWN_ONCE


class TenantSecretRemoved(Answer):
    tenant_id: str


# -- suppression list ----------------------------------------------------------------------------------


class SuppressionView(BaseModel):
    address: str
    reason: str = Field(description="hard_bounce, complaint, unsubscribe or manual")
    source_message_id: str | None = Field(default=None, description="the message whose bounce or complaint added it")
    ts: int = Field(description="unix seconds it was (last) added")

    @classmethod
    def from_record(cls, stored: StoredSuppression) -> SuppressionView:
        return cls.model_validate(stored.model_dump(include=set(cls.model_fields)))


class SuppressionsPage(Answer):
    tenant_id: str
    suppressions: list[SuppressionView] = Field(description="in address order")
    cursor: str | None = Field(description="pass as `cursor` to read the next page; null at the end")


class SuppressionsAdded(Answer):
    tenant_id: str
    added: int = Field(description="distinct addresses put on the list (or refreshed)")


class SuppressionRemoved(Answer):
    tenant_id: str
    address: str


# -- bounce mailbox (the deployment's) -----------------------------------------------------------------


class BounceConfigView(Answer):
    """`instance/get_bounce_config`: the original's fields; the password only as `has_password`."""

    enabled: bool = False
    imap_host: str | None = None
    imap_port: int = DEFAULT_IMAP_PORT
    imap_user: str | None = None
    has_password: bool = False
    imap_folder: str = DEFAULT_IMAP_FOLDER
    imap_ssl: bool = True
    poll_interval: int = DEFAULT_BOUNCE_POLL_INTERVAL
    return_path: str | None = None

    @classmethod
    def from_record(cls, stored: StoredBounceConfig) -> BounceConfigView:
        fields = stored.model_dump(exclude={"imap_password_enc"})
        return cls(**fields, has_password=stored.imap_password_enc is not None)


class BounceConfigSaved(Answer):
    message: str = "bounce configuration saved"


class BounceReloaded(Answer):
    enabled: bool
    message: str


# -- audit (command) log -------------------------------------------------------------------------------


class AuditEntryView(BaseModel):
    """One state-changing call: who, what, on which tenant, with what status, when. Never a secret."""

    id: str = Field(description="sortable: <unix ms>-<random>; `GET /command_log/get` takes it")
    ts: int = Field(description="unix milliseconds")
    method: str
    route: str = Field(description="the route's path template")
    endpoint: str = Field(description='"<METHOD> <route>", what `endpoint_filter` matches')
    status: int = Field(description="the HTTP status answered")
    caller: Literal["admin", "tenant", "anonymous"]
    caller_tenant_id: str | None = Field(default=None, description="the tenant of the key that called")
    key_id: str | None = Field(default=None, description="the first 8 hex of the key's SHA-256; never the key")
    tenant_id: str | None = Field(default=None, description="the tenant the call acted on")
    summary: dict[str, Any] = Field(default_factory=dict, description="ids and counts of the request, nothing else")

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> AuditEntryView:
        return cls.model_validate(entry.model_dump())


class CommandLogPage(Answer):
    commands: list[AuditEntryView] = Field(description="oldest first")
    total: int = Field(description="entries in this answer")
    cursor: str | None = Field(description="pass as `cursor` to read the next page; null at the end")


class CommandLogPurged(Answer):
    deleted: int


# -- the February-2026 surface (functions/api/routes/upstream.py): the original's layouts, our masking ------


class InstanceStatus(Answer):
    """`instance/status`: the original's `{"ok": true, "active": bool}`; always 200 here."""

    active: bool = Field(description="every dependency (DynamoDB, SQS) answered")
    dependencies: dict[str, str] = Field(description='"ok" or "unavailable: <error>" for dynamodb and sqs')


class TenantAdded(TenantView):
    """`tenants/add`: the tenant as `tenants/get` shows it and, for a tenant that did not exist, its first key."""

    api_key: str | None = Field(default=None, description="only when the tenant is new: shown once; store it now")


class ApiKeyCreated(ApiKeyIssued):
    message: str = SHOWN_ONCE


class ApiKeyRevoked(TenantSecretRemoved):
    message: str = "API key revoked"


class UpstreamAccountRow(AccountView):
    """An account as `accounts/add|get|list` answer it: ours (password masked) with the original's `pk`."""

    pk: str = Field(description="<tenant_id>/<id>")

    @classmethod
    def from_stored(cls, stored: StoredAccount) -> UpstreamAccountRow:
        return cls.from_view(AccountView.from_record(stored))

    @classmethod
    def from_view(cls, view: AccountView) -> UpstreamAccountRow:
        return cls(**view.model_dump(), pk=f"{view.tenant_id}/{view.id}")


# The original's four statuses (UPSTREAM-API.md §2): not yet sent or given up is "pending" there.
UPSTREAM_STATUS: dict[MessageStatus, Literal["pending", "deferred", "sent", "error"]] = {
    MessageStatus.QUEUED: "pending",
    MessageStatus.SENDING: "pending",
    MessageStatus.DEFERRED: "deferred",
    MessageStatus.SENT: "sent",
    MessageStatus.ERROR: "error",
}


class UpstreamMessageRow(BaseModel):
    """A message as `messages/get|list` answer it: ours (`MessageView`) with the original's `pk`, `status`
    and `smtp_ts`; our own status is `state`. The stored content (the original's `message`) is not shown."""

    pk: str = Field(description="<tenant_id>/<id>: what messages/delete takes")
    id: str
    tenant_id: str
    account_id: str
    priority: int
    status: Literal["pending", "deferred", "sent", "error"] = Field(
        description="the original's: queued and sending are pending"
    )
    state: MessageStatus = Field(description="ours (docs/design.md, Life of a message)")
    smtp_ts: int | None = Field(description="when the SMTP attempt ended: sent_ts, or error_ts for an error")
    batch_code: str | None = None
    created_ts: int
    attempts: int = 0
    sent_ts: int | None = None
    error_ts: int | None = None
    error: str | None = None
    deferred_ts: int | None = None
    deferred_reason: str | None = None
    reported_ts: int | None = None
    suspended: bool = False
    history: list[HistoryEvent] | None = None

    @classmethod
    def from_view(cls, view: MessageView) -> UpstreamMessageRow:
        return cls(
            **view.model_dump(exclude={"status", "history"}),
            history=view.history,
            pk=f"{view.tenant_id}/{view.id}",
            status=UPSTREAM_STATUS[view.status],
            state=view.status,
            smtp_ts=view.sent_ts if view.status == MessageStatus.SENT else view.error_ts,
        )


class MessageAdded(BaseModel):
    """`messages/add`: the original's `{"id", "pk"}`."""

    id: str
    pk: str = Field(description="<tenant_id>/<id>: what messages/delete takes")


class MessagesRemoved(Answer):
    """`messages/delete_batch`: the original's layout (`removed` a count), with ours beside it."""

    removed: int
    not_found: list[str]
    unauthorized: list[str] = Field(description="always empty: a tenant key only ever names its own messages")
    not_removed: list[NotRemoved] = Field(description="already sending, sent or failed: left as they are")


class CommandExported(BaseModel):
    """`command_log/export`: the original's entry layout."""

    endpoint: str = Field(description='"<METHOD> <route>"')
    tenant_id: str | None
    payload: dict[str, Any] = Field(description="ids and counts of the request only (our audit summary)")
    command_ts: int = Field(description="unix seconds")

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> CommandExported:
        return cls(
            endpoint=entry.endpoint, tenant_id=entry.tenant_id, payload=entry.summary, command_ts=entry.ts // 1000
        )
