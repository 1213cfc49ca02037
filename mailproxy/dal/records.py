"""What the stores hand out: typed records built from a stored item in one place (`from_item`), so that the
domain code reads fields, not dictionary keys, and a field's default is written once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from mailproxy.models import (
    DEFAULT_ATTACHMENT_PATH,
    DEFAULT_IMAP_FOLDER,
    DEFAULT_IMAP_PORT,
    DEFAULT_SMTP_TIMEOUT,
    DEFAULT_SYNC_PATH,
    LargeFileConfig,
)

DEFAULT_BOUNCE_POLL_INTERVAL = 60  # seconds, the original's


class Record(BaseModel):
    # Items carry keys and bookkeeping the domain does not read (pk, sk...): ignored, not an error.
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Self:
        return cls.model_validate(item)


class ClaimedMessage(Record):
    """A message's status item as the claim left it: what the sender reads to deliver it and to record
    the outcome (`MessageStore.record` writes only while `claims` is still this claim's)."""

    pk: str
    tenant_id: str
    id: str
    account_id: str
    priority: int
    message_id_header: str
    claims: int
    attempts: int = 0
    outcomes: int = 0  # outcomes recorded: claims beyond them died before theirs (docs/reliability.md)
    history: list[dict[str, Any]] = []
    tags: list[str] = []  # the client's, counted per tag in metrics

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.id)


class StoredAccount(Record):
    """An SMTP account; its password stays encrypted here (`AccountStore.password` decrypts it)."""

    tenant_id: str
    id: str
    host: str
    port: int
    user: str | None = None
    password_enc: str | None = Field(default=None, repr=False)
    use_tls: bool = False
    timeout: float = DEFAULT_SMTP_TIMEOUT
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_per_second: int | None = None
    max_concurrent: int | None = None
    limit_behavior: str = "defer"
    batch_size: int | None = None
    suppression: bool = True
    is_pec_account: bool = False
    ses_configuration_set: str | None = None
    sandbox: bool = False
    keep_raw_seconds: int | None = None
    imap_host: str | None = None
    imap_port: int = DEFAULT_IMAP_PORT
    imap_user: str | None = None
    imap_password_enc: str | None = Field(default=None, repr=False)
    imap_folder: str = DEFAULT_IMAP_FOLDER


class StoredClientAuth(Record):
    """How the proxy authenticates to a tenant's endpoints; secrets encrypted."""

    method: str = "none"
    user: str | None = None
    token_enc: str | None = Field(default=None, repr=False)
    password_enc: str | None = Field(default=None, repr=False)


@dataclass(frozen=True)
class ClientCredentials:
    """A tenant's client auth, decrypted for one request: a bearer token, or a Basic user and password."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)


class StoredTenant(Record):
    id: str
    name: str | None = None
    client_base_url: str | None = None
    client_sync_path: str = DEFAULT_SYNC_PATH
    client_attachment_path: str = DEFAULT_ATTACHMENT_PATH
    client_auth: StoredClientAuth | None = None
    active: bool = True
    api_key_hash: str | None = Field(default=None, repr=False)
    api_key_expires_at: int | None = None  # unix seconds; None: the key never expires
    signing_secret_enc: str | None = Field(default=None, repr=False)
    large_file_config: LargeFileConfig | None = None
    suppression: bool = True

    def key_expired(self, now: float) -> bool:
        """The tenant's current API key is past its expiry (at `now`, unix seconds)."""
        return self.api_key_expires_at is not None and now >= self.api_key_expires_at

    def endpoint(self, path: str) -> str | None:
        """The URL of one of the tenant's endpoints, or None when the tenant has no base URL of its own."""
        return self.client_base_url.rstrip("/") + path if self.client_base_url else None

    @property
    def sync_url(self) -> str | None:
        return self.endpoint(self.client_sync_path)

    @property
    def attachment_url(self) -> str | None:
        return self.endpoint(self.client_attachment_path)


class StoredSuppression(Record):
    """An address on a tenant's suppression list (`SuppressionStore`)."""

    tenant_id: str
    address: str = Field(description="the address as last added; `sk` holds its normalized form")
    reason: str
    source_message_id: str | None = None
    ts: int


class StoredBounceConfig(Record):
    """The deployment's bounce mailbox; its password stays encrypted here (`BounceConfigStore.password`)."""

    enabled: bool = False
    imap_host: str | None = None
    imap_port: int = DEFAULT_IMAP_PORT
    imap_user: str | None = None
    imap_password_enc: str | None = Field(default=None, repr=False)
    imap_folder: str = DEFAULT_IMAP_FOLDER
    imap_ssl: bool = True
    poll_interval: int = DEFAULT_BOUNCE_POLL_INTERVAL
    return_path: str | None = None
