"""What the API answers: one response model per route, so that the OpenAPI document (docs/api.md) describes
every body. Secrets never leave: stored passwords and tenant credentials are shown as "***" (`from_item`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mailproxy.dal.records import StoredAccount, StoredTenant

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
    limit_behavior: str = "defer"
    batch_size: int | None = None

    @classmethod
    def from_record(cls, stored: StoredAccount) -> AccountView:
        """A stored account, the password masked."""
        fields = stored.model_dump(include=set(cls.model_fields) - {"password"})
        return cls(**fields, password=MASK if stored.password_enc is not None else None)


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


class NotRemoved(BaseModel):
    id: str
    status: str
    reason: str


class DeleteMessagesResult(Answer):
    removed: list[str]
    not_found: list[str]
    unauthorized: list[str] = Field(description="always empty: a tenant key only ever names its own messages")
    not_removed: list[NotRemoved]


class CleanupResult(Answer):
    removed: int


class SuspendResult(Answer):
    tenant_id: str
    batch_code: str | None
    suspended: int


class ActivateResult(Answer):
    tenant_id: str
    batch_code: str | None
    activated: int


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
    has_signing_secret: bool = False

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
            has_signing_secret=tenant.signing_secret_enc is not None,
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


class TenantDeleted(Answer):
    id: str
    removed: TenantRemoval


class ApiKeyIssued(Answer):
    tenant_id: str
    api_key: str
    note: str = SHOWN_ONCE


class SigningSecretIssued(Answer):
    tenant_id: str
    signing_secret: str
    note: str = SHOWN_ONCE


class TenantSecretRemoved(Answer):
    tenant_id: str
