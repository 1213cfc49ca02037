"""Typed request and response models of the proxy's REST API (pydantic v2).

Response models accept fields they do not know (``extra="allow"``), so a newer proxy never breaks an
older client. Request models are conveniences: plain dicts are accepted wherever a model is, and the
proxy, not the client, is the judge of what is valid.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

__all__ = [
    "DUPLICATE_REASON_PREFIX",
    "Account",
    "AddMessagesResult",
    "Attachment",
    "DeliveryReport",
    "HistoryEvent",
    "Message",
    "MessageInfo",
    "MessagesPage",
    "PriorityValue",
    "Rejection",
    "SmtpCheck",
    "SmtpStep",
    "Status",
    "Tenant",
]

DUPLICATE_REASON_PREFIX = "id: already known"
"""A rejection whose reason starts with this is a message the proxy already holds: accepted, not lost."""

PriorityValue = int | Literal["immediate", "high", "medium", "low"]


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- requests


class Attachment(BaseModel):
    """An inline attachment: ``content`` is base64. Other sources (``storage_path``...) pass through."""

    model_config = ConfigDict(extra="allow")

    filename: str
    content: str | None = None
    mime_type: str | None = None
    content_id: str | None = None  # with disposition "inline": the html shows it as cid:<content_id>
    disposition: Literal["attachment", "inline"] | None = None

    @classmethod
    def from_file(cls, path: str | Path, *, mime_type: str | None = None) -> Attachment:
        path = Path(path)
        guessed = mime_type or mimetypes.guess_type(path.name)[0]
        return cls(filename=path.name, content=base64.b64encode(path.read_bytes()).decode("ascii"), mime_type=guessed)


class Message(BaseModel):
    """One message of ``add-messages``. ``from`` is a Python keyword: pass ``from_addr=`` (sent as ``from``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    id: str
    account_id: str
    from_addr: str = Field(
        validation_alias=AliasChoices("from_addr", "from"),
        serialization_alias="from",
    )
    to: list[str] | str
    cc: list[str] | str | None = None
    bcc: list[str] | str | None = None
    reply_to: str | None = None
    return_path: str | None = None
    subject: str = ""
    body: str = ""
    html: str | None = None  # the html alternative of body (multipart/alternative)
    content_type: Literal["plain", "html"] = "plain"
    headers: dict[str, str] | None = None
    attachments: list[Attachment] | None = None
    priority: PriorityValue | None = None
    deferred_ts: int | None = None
    batch_code: str | None = None
    tenant_id: str | None = None
    metadata: dict[str, str | int | float | bool] | None = None  # at most 20 keys, 2 KB; echoed in reports
    tags: list[str] | None = None  # at most 10; echoed in reports

    def to_payload(self) -> dict[str, Any]:
        """The JSON object the API expects (``from``, no null fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- responses


class Rejection(_Response):
    id: str | None = None
    reason: str
    code: str | None = None  # duplicate, invalid, unknown_account, suppressed; absent from older proxies

    @property
    def is_duplicate(self) -> bool:
        """The proxy already holds this id and a sender has taken it (e.g. a retried batch): it was accepted
        before. Proxies older than the `code` field are recognised by the reason's wording."""
        if self.code is not None:
            return self.code == "duplicate"
        return self.reason.startswith(DUPLICATE_REASON_PREFIX)


class AddMessagesResult(_Response):
    """``add-messages``' answer, with already-known ids moved from ``rejected`` to ``duplicates``.

    ``queued``: new messages stored by this call; ``duplicates``: ids the proxy already had (accepted
    earlier, e.g. by a retried or repeated call: not queued again, never sent twice); ``rejected``:
    messages refused, each with a reason naming the field.
    """

    ok: bool = True
    queued: int = 0
    rejected: list[Rejection] = Field(default_factory=list)
    duplicates: list[str] = Field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Messages the proxy holds after this call: new ones plus duplicates."""
        return self.queued + len(self.duplicates)


class Account(_Response):
    """An SMTP account as ``GET /accounts`` lists it: ``password`` is ``"***"`` or None, never the password."""

    id: str
    tenant_id: str = "default"
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    use_tls: bool = False
    timeout: float | None = None
    limit_per_minute: int | None = None
    limit_per_hour: int | None = None
    limit_per_day: int | None = None
    limit_per_second: int | None = None
    max_concurrent: int | None = None
    limit_behavior: str = "defer"
    batch_size: int | None = None
    suppression: bool = True
    is_pec_account: bool = False
    imap_host: str | None = None
    imap_port: int | None = None
    imap_user: str | None = None
    imap_password: str | None = None  # "***" when the inbox has a password of its own, never the password
    imap_folder: str | None = None


class HistoryEvent(_Response):
    """One event of a message's history (``GET /messages?include_history=true``)."""

    event: str  # queued, deferred, sent, error, reported, suspended, ...
    ts: int
    reason: str | None = None
    next_ts: int | None = None
    status: str | None = None


class Notices(_Response):
    """What came back after the SMTP reply (newer proxies): a bounce or complaint, the latest PEC receipt, a
    hosted unsubscribe."""

    bounce_type: str | None = None  # hard | soft | complaint
    bounce_code: str | None = None  # e.g. "511" (5.1.1) or "550"
    bounce_reason: str | None = None
    bounce_ts: int | None = None
    pec_event: str | None = None  # pec_acceptance | pec_relay | pec_delivery | pec_error | pec_timeout
    pec_ts: int | None = None
    pec_details: str | None = None
    unsubscribed_ts: int | None = None  # the recipient used the proxy's hosted one-click unsubscribe link


class MessageInfo(Notices):
    """A message as ``GET /messages`` lists it, with its state and report fields."""

    id: str
    tenant_id: str = "default"
    account_id: str
    priority: int
    status: str  # queued | sending | sent | error | deferred
    batch_code: str | None = None
    created_ts: int | None = None
    attempts: int = 0
    sent_ts: int | None = None
    error_ts: int | None = None
    error: str | None = None
    deferred_ts: int | None = None
    deferred_reason: str | None = None
    reported_ts: int | None = None
    suspended: bool = False
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    sandbox: bool = False
    history: list[HistoryEvent] | None = None


class MessagesPage(_Response):
    ok: bool = True
    messages: list[MessageInfo] = Field(default_factory=list)
    cursor: str | None = None


class Tenant(_Response):
    """A tenant as ``GET /tenants`` lists it: ``client_auth`` secrets are masked."""

    id: str
    name: str | None = None
    client_base_url: str | None = None
    client_sync_path: str | None = None
    client_attachment_path: str | None = None
    client_auth: dict[str, Any] | None = None
    active: bool = True
    has_api_key: bool = False
    has_signing_secret: bool = False
    suppression: bool = True


class Suppression(_Response):
    """An address on a tenant's suppression list: its mail no longer goes there."""

    address: str
    reason: str  # hard_bounce | complaint | unsubscribe | manual
    source_message_id: str | None = None
    ts: int


class SuppressionsPage(_Response):
    ok: bool = True
    tenant_id: str = "default"
    suppressions: list[Suppression] = Field(default_factory=list)
    cursor: str | None = None


class Status(_Response):
    """``GET /status``: ``ok`` is False (the proxy answers 503) when a dependency is down."""

    ok: bool
    mode: str | None = None
    dependencies: dict[str, str] = Field(default_factory=dict)
    queues: dict[str, int] = Field(default_factory=dict)


class SmtpStep(_Response):
    """One step of an SMTP check: ``connect`` (with the implicit TLS handshake), ``ehlo``, ``starttls``, ``auth``."""

    step: str
    ok: bool
    detail: str = ""


class SmtpCheck(_Response):
    """``POST /commands/test-smtp``: the steps stop at the first failure; ``ok`` says the account works."""

    ok: bool
    steps: list[SmtpStep] = Field(default_factory=list)


class DeliveryReport(Notices):
    """One entry of a delivery report (``{"delivery_report": [...]}``) the proxy POSTs to your endpoint.

    Exactly one of ``sent_ts`` / ``error_ts`` / ``deferred_ts`` is set (unix seconds); ``error`` goes
    with ``error_ts``. A deferred message is reported again with its final outcome; a bounce or PEC receipt
    reports it again with ``bounce_*`` or ``pec_*`` set.
    """

    id: str
    tenant_id: str | None = None  # the message's tenant; sent by newer proxies, absent from older entries
    account_id: str
    priority: int | None = None
    sent_ts: int | None = None
    error_ts: int | None = None
    error: str | None = None
    deferred_ts: int | None = None
    deferred_reason: str | None = None  # set with deferred_ts by newer proxies
    metadata: dict[str, Any] | None = None  # the message's own metadata and tags, from newer proxies
    tags: list[str] | None = None
    sandbox: bool | None = None  # true: a sandbox account's message, built and recorded, delivered to nobody

    @property
    def status(self) -> Literal["sent", "error", "deferred", "unknown"]:
        if self.sent_ts is not None:
            return "sent"
        if self.error_ts is not None:
            return "error"
        if self.deferred_ts is not None:
            return "deferred"
        return "unknown"
