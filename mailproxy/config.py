"""Configuration from the environment (docs/design.md, "Environment of the functions"): one validated model,
read once per process."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAME = "genro-mail-proxy"  # Powertools service of the three functions, a dimension of every metric
METRICS_NAMESPACE = "GenroMailProxy"
MIN_AWS_TOKEN_LENGTH = 32
SENDER_SAFETY_SECONDS = 5  # what a record needs besides its SMTP transaction: the claim and the outcome writes
LEASE_MARGIN_SECONDS = 30
# Index shards (mailproxy/dal/keys.py): the counts a deployment starts with, which are also the least it may
# set (a count may only grow); ~1,000 writes/s per index partition.
DUE_SHARDS = 4
REPORT_SHARDS = 4
TENANT_INDEX_SHARDS = 8  # >= 5,000 messages/s of one tenant, with headroom
MAX_SHARDS = 256
JOB_RUN_MARGIN_SECONDS = 15  # a jobs-worker run stops paging this long before its function's timeout


class ConfigError(RuntimeError):
    """Bad configuration: the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GMP_", extra="ignore", frozen=True)

    mode: Literal["local", "aws"] = "local"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_token: SecretStr | None = None
    api_token_secret_arn: str | None = None

    client_sync_url: AnyHttpUrl | None = None
    client_sync_user: str | None = None
    client_sync_password: SecretStr | None = None
    client_sync_token: SecretStr | None = None
    client_sync_secret: SecretStr | None = None
    client_sync_secret_arn: str | None = None
    client_sync_timeout: float = Field(default=10.0, gt=0, le=120)
    report_interval: float = Field(default=60.0, gt=0)
    report_batch_size: int = Field(default=100, ge=1, le=1000)
    report_run_budget: float = Field(default=45.0, gt=0, description="seconds a reporter run may take")
    sync_interval: int = Field(
        default=300,
        ge=1,  # seconds are for a local stack and its tests; in AWS the reporter runs once a minute anyway
        le=86400,
        description="seconds between the empty report calls to a tenant with no events (docs/tenants.md)",
    )
    sync_max_defer: int = Field(
        default=86400,
        ge=60,
        le=30 * 86400,
        description="the furthest ahead a client's next_sync_after may hold its reports; later is capped to it",
    )
    run_now_min_interval: float = Field(
        default=5.0, ge=0, le=3600, description="seconds between two reporter triggers by POST /commands/run-now"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_delivery_activity: bool = False

    messages_table: str = "gmp-messages"
    config_table: str = "gmp-config"
    urgent_queue_url: str | None = None
    bulk_queue_url: str | None = None
    body_bucket: str | None = None
    kms_key_id: str | None = None
    reporter_function_name: str | None = None
    local_key: SecretStr | None = Field(default=None, description="Fernet key for SMTP passwords in local mode")

    smtp_host_allowlist: str = Field(
        default="", description="comma-separated hosts allowed although they resolve to internal addresses"
    )
    attachment_max_bytes: int = Field(default=25_000_000, ge=1_000)
    attachment_timeout: float = Field(default=30.0, gt=0, le=300)
    attachment_buckets: str = Field(default="", description="comma-separated S3 buckets attachments may come from")

    inline_content_limit: int = Field(default=96_000, ge=1_000, le=350_000)
    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_base: float = Field(default=60.0, gt=0)
    backoff_cap: float = Field(default=3600.0, gt=0)
    sender_timeout: int = Field(
        default=60, ge=10, le=900, description="the sender function's timeout: bounds account timeouts and the lease"
    )
    lease_seconds: int | None = Field(
        default=None, ge=10, description="how long a claim holds; default: the sender timeout + 30 s (docs/design.md)"
    )
    message_max_bytes: int = Field(
        default=25_000_000, ge=1_000, description="body and attachments of one message, as fetched at send time"
    )
    attachment_s3_prefix: str = Field(
        default="tenants/{tenant_id}/",
        description="s3:// attachment keys must start with this (the tenant's own objects of a shared bucket)",
    )
    enqueue_grace: int = Field(default=900, ge=60, description="seconds before the sweep re-enqueues a queued message")
    audit_retention_days: int = Field(
        default=90, ge=1, le=3650, description="days an audit (command-log) entry is kept before its TTL removes it"
    )
    # Index shard counts (mailproxy/dal/keys.py): readers query shards 0..count-1, so a count may only grow;
    # the minimum is the count every deployment started with.
    due_shards: int = Field(
        default=DUE_SHARDS, ge=DUE_SHARDS, le=MAX_SHARDS, description="partitions of the due index (sweep)"
    )
    report_shards: int = Field(
        default=REPORT_SHARDS, ge=REPORT_SHARDS, le=MAX_SHARDS, description="partitions of each tenant's outbox"
    )
    tenant_index_shards: int = Field(
        default=TENANT_INDEX_SHARDS,
        ge=TENANT_INDEX_SHARDS,
        le=MAX_SHARDS,
        description="partitions of each tenant's index of its messages, its listing items (~1,000 writes/s each)",
    )
    jobs_queue_url: str | None = Field(default=None, description="SQS queue that carries bulk jobs' continuations")
    jobs_dlq_arn: str | None = Field(
        default=None, description="the jobs queue's DLQ: a continuation arriving from it ends its job as failed"
    )
    stream_failures_queue_url: str | None = Field(
        default=None, description="where Lambda describes stream batches it gave up on; the reporter reads them again"
    )
    job_inline_budget: float = Field(
        default=5.0, gt=0, le=20, description="seconds a bulk operation runs inside its API call before it answers 202"
    )

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="the API's public base URL, for hosted unsubscribe links (aws: the stack sets it; local: the API)",
    )

    # Bounces and PEC receipts (docs/bounces.md).
    bounce_return_path: str | None = Field(
        default=None, description="envelope sender (MAIL FROM) of messages that set none, so bounces reach the mailbox"
    )
    correlation_secret: SecretStr | None = Field(
        default=None, description="signs X-Genro-Mail-ID; default: derived from GMP_LOCAL_KEY (local mode)"
    )
    correlation_secret_arn: str | None = Field(
        default=None, description="the Secrets Manager secret the stack generates for it (aws mode)"
    )
    imap_ca_file: str | None = Field(default=None, description="CA bundle for IMAPS; default: the system store")
    pec_acceptance_timeout: int = Field(
        default=1800, ge=60, le=7 * 86400, description="seconds a PEC message may wait for its acceptance receipt"
    )

    @property
    def claim_lease_seconds(self) -> int:
        """A claim outlives the longest invocation that can hold it, so a live send is never re-claimed."""
        return self.lease_seconds if self.lease_seconds is not None else claim_lease_for(self.sender_timeout)

    @property
    def max_account_timeout(self) -> float:
        """An account's SMTP timeout must leave a fresh sender invocation time for one whole attempt."""
        return float(self.sender_timeout - 2 * SENDER_SAFETY_SECONDS)

    @field_validator("client_sync_token", "client_sync_user", "client_sync_password")
    @classmethod
    def _header_safe(cls, value: SecretStr | str | None) -> SecretStr | str | None:
        """Sent in the Authorization header: printable ASCII without line breaks; never echoed."""
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if plain is not None and not all(" " <= ch <= "~" for ch in plain):
            raise ValueError("must be printable ASCII, without line breaks")
        return value


def claim_lease_for(sender_timeout: int) -> int:
    """The lease that outlives the longest sender invocation that can hold a claim (the stack sets it)."""
    return sender_timeout + LEASE_MARGIN_SECONDS


def names(value: str) -> frozenset[str]:
    """A comma-separated setting as a set of names."""
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _variable(loc: tuple[int | str, ...]) -> str:
    return "GMP_" + str(loc[0]).upper() if loc else "GMP_*"


def load_settings() -> Settings:
    """Read and check the environment; raise ConfigError naming the variable on bad input."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"bad configuration: {problems}") from None
    if settings.mode == "aws" and settings.api_token is not None:
        check_aws_token(settings.api_token.get_secret_value())
    return settings


def check_aws_token(token: str) -> None:
    if len(token) < MIN_AWS_TOKEN_LENGTH:
        raise ConfigError(f"GMP_API_TOKEN: must be at least {MIN_AWS_TOKEN_LENGTH} characters in aws mode")


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
