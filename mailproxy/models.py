"""Pydantic models of the API and of what is stored: validation lives here, once."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address as _HeaderAddress
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mailproxy.headers import HEADER_NAME, PROTECTED_HEADERS, parse_address

DEFAULT_TENANT = "default"
MAX_MESSAGES_PER_REQUEST = 1000
MAX_ADDRESS_LENGTH = 320
MAX_RECIPIENTS = 100
MAX_SUBJECT_LENGTH = 998
# Inline content fits the 6 MB request that API Gateway + Lambda accept (base64 adds a third); larger
# attachments go by reference (storage_path), fetched at send time within GMP_MESSAGE_MAX_BYTES.
MAX_BODY_BYTES = 4_000_000
MAX_ATTACHMENT_BYTES = 4_000_000
MAX_INLINE_MESSAGE_BYTES = 4_400_000
MAX_HEADERS = 50
IMPLICIT_TLS_PORT = 465  # `use_tls` null on this port means implicit TLS (mailproxy/logic/smtp/transport.py)
DEFAULT_SMTP_TIMEOUT = 30.0  # seconds an SMTP account waits for each reply, unless it says otherwise
DEFAULT_SYNC_PATH = "/mail-proxy/sync"  # a tenant's report endpoint, under its client_base_url
DEFAULT_ATTACHMENT_PATH = "/mail-proxy/attachments"
MAX_HEADER_VALUE_BYTES = 8_192  # the email package folds a header in quadratic time: 64 KB already costs ~0.4 s
MAX_HEADERS_TOTAL_BYTES = 32_768
MAX_ID_BYTES = 512  # every key built from an id stays far below DynamoDB's 1,024-byte sort-key limit (docs/design.md)
MAX_ACCOUNT_ID_BYTES = 256
MAX_LIMIT = 1_000_000_000
MAX_PER_SECOND = 10_000
MAX_CONCURRENT = 100  # lease items tried in turn by each sender batch (dal/connections.py)
# Set from the message's list_unsubscribe field, so a client's extra header may not set them.
# A message's metadata and tags ride on its status item, so that every report entry echoes them without
# reading the content: bounded so the item stays within one 1 KB write unit (docs/cost.md), hence 512 bytes
# of metadata JSON rather than a larger budget.
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_BYTES = 512
MAX_TAGS = 10
Tag = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.:-]+$")]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_BYTES)] | int | float | bool
MAX_KEEP_RAW_SECONDS = 7 * 86_400  # a debugging aid, not an archive: the contents' lifecycle removes it anyway
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01: beyond it a deferral is a mistake, and DynamoDB numbers stay exact


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    ERROR = "error"
    DEFERRED = "deferred"

    @property
    def is_final(self) -> bool:
        return self in (MessageStatus.SENT, MessageStatus.ERROR)


# Not yet sent and not given up: what `GET /messages?active_only=true` lists.
ACTIVE_STATUSES = frozenset({MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value, MessageStatus.SENDING.value})
# Waiting for a send: what campaign control may still hold back, release or delete.
UNSENT_STATUSES = frozenset({MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value})


class Priority(IntEnum):
    IMMEDIATE = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3

    @property
    def is_urgent(self) -> bool:
        return self <= Priority.HIGH


# Every character the email package (str.splitlines) treats as a line break, and NUL.
_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _no_line_breaks(value: str) -> str:
    """Refuse anything that could end a header line: line breaks, also inside RFC 2047 encoded words,
    which the email package decodes when it sets the header."""
    texts = [value]
    if _ENCODED_WORD.search(value):
        try:
            texts.append(str(make_header(decode_header(value))))
        except (ValueError, LookupError, HeaderParseError):
            raise ValueError("holds an RFC 2047 encoded word that cannot be decoded") from None
    if any(_LINE_BREAKS.intersection(text) for text in texts):
        raise ValueError("must not contain CR, LF, NUL or other line breaks (header injection)")
    return value


def _render_address(name: str, addr_spec: str) -> str:
    if not name:
        return addr_spec
    try:
        return str(_HeaderAddress(display_name=name, addr_spec=addr_spec))
    except Exception as exc:  # the email package raises its own (non-ValueError) parse errors
        raise ValueError(f"not an e-mail address: {name!r} <{addr_spec}>") from exc


def _address(value: str) -> str:
    """One RFC 5322 address, with or without display name; returned in canonical form."""
    _no_line_breaks(value)
    if len(value) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"address longer than {MAX_ADDRESS_LENGTH} characters")
    try:
        parsed = parse_address(value)  # strict: exactly one mailbox, nothing silently dropped
    except ValueError:
        raise ValueError(f"not an e-mail address: {value!r}") from None
    name, addr = parsed.display_name, parsed.addr_spec
    if not addr or "@" not in addr:
        raise ValueError(f"not an e-mail address: {value!r}")
    try:
        checked = validate_email(
            addr,
            check_deliverability=False,
            test_environment=True,
            globally_deliverable=False,
            allow_domain_literal=True,
        )
    except EmailNotValidError as exc:
        raise ValueError(f"not an e-mail address: {value!r} ({exc})") from None
    rendered = _render_address(name, checked.normalized)
    parse_address(rendered)  # what the sender will parse must parse: refuse it here, not at send time
    return rendered


def split_addresses(value: str) -> list[str]:
    """A comma-separated address list cut at the commas that separate addresses (not those inside a
    quoted display name, a comment or angle brackets), in linear time: the email package's list parser
    grows faster than linearly (1,000 addresses cost it ~0.7 s), so each piece is parsed on its own."""
    pieces: list[str] = []
    start, depth, quoted, escaped = 0, 0, False, False
    for position, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "(<":
            depth += 1
        elif char in ")>":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            pieces.append(value[start:position])
            start = position + 1
    pieces.append(value[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def _address_list(value: Any) -> Any:
    """`to`/`cc`/`bcc` come as a list or as one comma-separated string. The recipient cap is applied
    before any address is parsed, so an oversized list costs nothing."""
    if isinstance(value, str):
        _no_line_breaks(value)
        if len(value) > MAX_RECIPIENTS * (MAX_ADDRESS_LENGTH + 2):
            raise ValueError(f"longer than {MAX_RECIPIENTS} addresses of {MAX_ADDRESS_LENGTH} characters can be")
        value = split_addresses(value) or [value]
    if isinstance(value, list) and len(value) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} addresses, not {len(value)}")
    return value


def _utf8_at_most(limit: int) -> Any:
    def check(value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueError(f"at most {limit} bytes in UTF-8, not {size} (keys built from it must fit DynamoDB's)")
        return value

    return AfterValidator(check)


def check_headers_size(headers: dict[str, str]) -> None:
    """Custom headers within the caps (also re-checked by the sender on what it reads back)."""
    total = 0
    for name, value in headers.items():
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_HEADER_VALUE_BYTES:
            raise ValueError(f"header {name!r} is {size} bytes; at most {MAX_HEADER_VALUE_BYTES}")
        total += size + len(name)
    if total > MAX_HEADERS_TOTAL_BYTES:
        raise ValueError(f"headers are {total} bytes in all; at most {MAX_HEADERS_TOTAL_BYTES}")


def _priority(value: Any) -> Any:
    if isinstance(value, str) and value.strip().upper() in Priority.__members__:
        return Priority[value.strip().upper()]
    return value


HeaderText = Annotated[str, AfterValidator(_no_line_breaks)]
Address = Annotated[str, AfterValidator(_address)]
AddressList = Annotated[list[Address], BeforeValidator(_address_list), Field(max_length=MAX_RECIPIENTS)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
MessageIdentifier = Annotated[Identifier, _utf8_at_most(MAX_ID_BYTES)]
AccountIdentifier = Annotated[Identifier, _utf8_at_most(MAX_ACCOUNT_ID_BYTES)]
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
PriorityField = Annotated[Priority, BeforeValidator(_priority)]


# An SMTP server and its credentials, as `POST /account` stores them and `POST /commands/test-smtp` tries them.
SmtpHost = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]_-]+$")]
SmtpPort = Annotated[int, Field(ge=1, le=65535)]
SmtpUser = Annotated[HeaderText, StringConstraints(max_length=320)]
SmtpPassword = Annotated[SecretStr, Field(max_length=1024)]
SmtpTimeout = Annotated[float, Field(ge=0.1, le=300)]
# An IMAP mailbox (a PEC account's inbox, the deployment's bounce mailbox): the original's defaults.
DEFAULT_IMAP_PORT = 993
DEFAULT_IMAP_FOLDER = "INBOX"
ImapFolder = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: AccountIdentifier
    tenant_id: TenantId = DEFAULT_TENANT
    host: SmtpHost
    port: SmtpPort
    user: SmtpUser | None = None
    password: SmtpPassword | None = None
    use_tls: bool = Field(
        default=None,  # null/absent: the port decides (_tls_by_port)
        validate_default=True,
        description=(
            "`true` on port 465: implicit TLS; `true` on any other port: STARTTLS, required (a server that"
            " does not offer it fails the send, permanently); `false`: STARTTLS whenever the server offers"
            " it, plain otherwise; null or absent: the port decides (465: `true`, any other: `false`) and"
            " the account is stored so. Ports other than 465 with implicit TLS: GMP_SMTP_IMPLICIT_TLS_PORTS."
        ),
    )
    timeout: SmtpTimeout = DEFAULT_SMTP_TIMEOUT
    limit_per_minute: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    limit_per_hour: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    limit_per_day: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    limit_per_second: int | None = Field(
        default=None, ge=1, le=MAX_PER_SECOND, description="a provider's send rate, e.g. SES SMTP's 14"
    )
    max_concurrent: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENT,
        description="SMTP connections open at once across all senders, e.g. Office 365's 3 per mailbox",
    )
    limit_behavior: Literal["defer", "reject"] = "defer"
    batch_size: int | None = Field(default=None, ge=1, le=10_000)
    suppression: bool = Field(
        default=True, description="false: the tenant's suppression list is not applied to this account's mail"
    )
    is_pec_account: bool = Field(default=False, description="Italian certified mail: its inbox is read for receipts")
    ses_configuration_set: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="an SES SMTP account: the configuration set that publishes its bounces and complaints to the "
        "deployment's SesEventsTopic (sent as X-SES-CONFIGURATION-SET)",
    )
    sandbox: bool = Field(
        default=False,
        description="true: messages are built and validated as for delivery, recorded `sent` with `sandbox: true`, "
        "and sent nowhere; their MIME is kept for GET /messages/{id}/raw",
    )
    keep_raw_seconds: int | None = Field(
        default=None, ge=60, le=MAX_KEEP_RAW_SECONDS, description="keep the MIME of real sends this long, for /raw"
    )
    imap_host: SmtpHost | None = Field(default=None, description="the PEC inbox; required with is_pec_account")
    imap_port: SmtpPort = DEFAULT_IMAP_PORT
    imap_user: SmtpUser | None = Field(default=None, description="absent: the SMTP user")
    imap_password: SmtpPassword | None = Field(default=None, description="absent: the SMTP password")
    imap_folder: ImapFolder = DEFAULT_IMAP_FOLDER

    @model_validator(mode="after")
    def _pec_inbox(self) -> AccountIn:
        if self.is_pec_account and self.imap_host is None:
            raise ValueError("imap_host: required when is_pec_account is true")
        return self

    @field_validator("use_tls", mode="before")
    @classmethod
    def _tls_by_port(cls, value: Any, info: ValidationInfo) -> Any:
        """The original's null (UPSTREAM-API.md §6): true on 465, false elsewhere, stored as decided."""
        if value is None:
            return info.data.get("port") == IMPLICIT_TLS_PORT
        return value


def _printable_ascii(value: Any) -> Any:
    """Credentials sent in an HTTP header: printable ASCII, no line breaks, so that none can inject a header
    line (docs/tenants.md, "Report isolation, signing and keys"). The error never quotes the value."""
    plain = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(plain, str) and not all(" " <= ch <= "~" for ch in plain):
        raise ValueError("must be printable ASCII, without line breaks")
    return value


Credential = Annotated[str, AfterValidator(_printable_ascii)]
SecretCredential = Annotated[SecretStr, AfterValidator(_printable_ascii)]


class AttachmentAuth(BaseModel):
    model_config = ConfigDict(extra="ignore")

    method: Literal["none", "bearer", "basic"] = Field(
        default="bearer", description="`none`: no credentials sent, not even the tenant's client_auth"
    )
    token: Credential | None = Field(default=None, max_length=4096)
    user: Annotated[Credential, StringConstraints(max_length=320)] | None = None
    password: Credential | None = Field(default=None, max_length=1024)


FetchMode = Literal["base64", "http_url", "endpoint", "s3"]
# A Content-ID is a msg-id (RFC 2392): dot-atom text, optionally @ a domain, in <> or bare.
CONTENT_ID_PATTERN = r"^<?[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(@[A-Za-z0-9.-]+)?>?$"


class ListUnsubscribeIn(BaseModel):
    """Where a recipient unsubscribes: List-Unsubscribe (RFC 2369), one-click with a url (RFC 8058)."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(pattern=r"^https://[^\s<>,]+$", max_length=2048)] | None = None
    mailto: Address | None = None
    hosted: bool = Field(
        default=False,
        description="true: the proxy's own one-click URL (POST /unsubscribe/{token}), which puts the recipient on "
        "the tenant's suppression list and reports `unsubscribed_ts`; the message must have one recipient",
    )

    @model_validator(mode="after")
    def _one_target(self) -> ListUnsubscribeIn:
        if self.url is None and self.mailto is None and not self.hosted:
            raise ValueError("list_unsubscribe: give a url (https), a mailto address, or hosted: true")
        if self.url is not None and self.hosted:
            raise ValueError("list_unsubscribe: url and hosted are both one-click URLs; give one of them")
        return self


class AttachmentIn(BaseModel):
    """Inline (`content`, base64) or by reference (`storage_path`, fetched by the sender at send time)."""

    model_config = ConfigDict(extra="ignore")

    filename: Annotated[HeaderText, StringConstraints(min_length=1, max_length=255)]
    content: str | None = Field(default=None, description="base64")
    storage_path: (
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTACHMENT_BYTES * 4 // 3 + 16)] | None
    ) = Field(
        default=None,
        description="`base64:<data>`, an http(s) URL, `s3://bucket/key`, or a path for the tenant's endpoint",
    )
    mime_type: Annotated[str, StringConstraints(pattern=r"^[\w.+-]+/[\w.+-]+$", max_length=127)] | None = None
    fetch_mode: FetchMode | None = None
    content_md5: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{32}$")] | None = None
    auth: AttachmentAuth | None = None
    content_id: Annotated[str, StringConstraints(pattern=CONTENT_ID_PATTERN, max_length=250)] | None = Field(
        default=None, description="with disposition `inline`: the html references the image as `cid:<content_id>`"
    )
    disposition: Literal["attachment", "inline"] = "attachment"

    @model_validator(mode="after")
    def _inline_needs_content_id(self) -> AttachmentIn:
        if (self.disposition == "inline") != (self.content_id is not None):
            raise ValueError("content_id: required with disposition inline, and only with it")
        return self

    @model_validator(mode="after")
    def _source(self) -> AttachmentIn:
        self.filename, marked_md5 = split_md5_marker(self.filename)
        if not self.filename.strip():
            raise ValueError("filename: nothing left once the {MD5:...} marker is removed")
        self.content_md5 = self.content_md5 or marked_md5
        if (self.content is None) == (self.storage_path is None):
            raise ValueError("exactly one of content (base64) or storage_path is required")
        if self.storage_path is not None:
            _no_line_breaks(self.storage_path)
            self.fetch_mode = self.fetch_mode or _infer_fetch_mode(self.storage_path)
            if self.fetch_mode == "base64":
                self.content = _checked_base64(self.storage_path.removeprefix("base64:"))
                self.storage_path = None
            elif self.fetch_mode == "http_url" and not re.match(r"^https?://[^\s/]+", self.storage_path):
                raise ValueError("storage_path: fetch_mode http_url needs an http(s):// URL")
            elif self.fetch_mode == "s3" and not re.match(
                r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+", self.storage_path
            ):
                raise ValueError("storage_path: fetch_mode s3 needs s3://bucket/key")
        else:
            self.content = _checked_base64(self.content or "")
        return self


_MD5_MARKER = re.compile(r"\{MD5:([0-9a-fA-F]{32})\}", re.IGNORECASE)


def split_md5_marker(filename: str) -> tuple[str, str | None]:
    """`report{MD5:<32 hex>}.pdf` -> (`report.pdf`, the hash, lower case): the original's cache-key marker,
    which the recipient must not see. Without a marker: (filename, None)."""
    match = _MD5_MARKER.search(filename)
    if match is None:
        return filename, None
    return _MD5_MARKER.sub("", filename), match.group(1).lower()


def _infer_fetch_mode(storage_path: str) -> FetchMode:
    if storage_path.startswith("base64:"):
        return "base64"
    if storage_path.startswith(("http://", "https://")):
        return "http_url"
    if storage_path.startswith("s3://"):
        return "s3"
    return "endpoint"


def _checked_base64(value: str) -> str:
    if len(value) > MAX_ATTACHMENT_BYTES * 4 // 3 + 4:
        raise ValueError(f"attachment larger than {MAX_ATTACHMENT_BYTES} bytes")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("content: not valid base64") from None
    return value


class MessageIn(BaseModel):
    """One message of `add-messages`. Validated one by one so that a bad message is rejected alone."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: MessageIdentifier
    tenant_id: TenantId = DEFAULT_TENANT
    account_id: AccountIdentifier
    from_addr: Address = Field(validation_alias=AliasChoices("from", "from_addr"))
    to: AddressList = Field(min_length=1)
    cc: AddressList = []
    bcc: AddressList = []
    reply_to: Address | None = None
    return_path: Address | None = None
    subject: Annotated[HeaderText, StringConstraints(max_length=MAX_SUBJECT_LENGTH)] = ""
    body: str = ""
    content_type: Literal["plain", "html"] = "plain"
    html: str | None = Field(default=None, description="the html alternative of `body` (multipart/alternative)")
    headers: dict[str, HeaderText] = Field(default_factory=dict, max_length=MAX_HEADERS)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    list_unsubscribe: ListUnsubscribeIn | None = None
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA_KEYS,
        description=f"echoed in every report entry; keys of at most {MAX_METADATA_KEY_LENGTH} characters, "
        f"at most {MAX_METADATA_BYTES} bytes as JSON",
    )
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="echoed in reports; GET /messages?tag="
    )
    priority: PriorityField = Priority.MEDIUM
    deferred_ts: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP)
    batch_code: Annotated[HeaderText, StringConstraints(max_length=64)] | None = None
    message_id: (
        Annotated[HeaderText, StringConstraints(max_length=250, pattern=r"^<?[^<>\s@]+@[^<>\s@]+>?$")] | None
    ) = Field(default=None, description="your own Message-ID header; one is generated when absent")

    @field_validator("body", "html")
    @classmethod
    def _body_size(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
            raise ValueError(f"{info.field_name} larger than {MAX_BODY_BYTES} bytes")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in PROTECTED_HEADERS:
                raise ValueError(f"header {name!r} is set by the proxy; use the message field instead")
        check_headers_size(value)
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key or len(key) > MAX_METADATA_KEY_LENGTH:
                raise ValueError(f"metadata: key {key[:50]!r} is not 1 to {MAX_METADATA_KEY_LENGTH} characters")
        if any(isinstance(v, float) and not math.isfinite(v) for v in value.values()):
            raise ValueError("metadata: numbers must be finite")
        if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata: larger than {MAX_METADATA_BYTES} bytes as JSON")
        return value

    @model_validator(mode="after")
    def _inline_attachments(self) -> MessageIn:
        content_ids = [a.content_id.strip("<>") for a in self.attachments if a.content_id is not None]
        if len(set(content_ids)) != len(content_ids):
            raise ValueError("attachments: content_id must be unique within the message")
        if content_ids and self.html is None and self.content_type != "html":
            raise ValueError("attachments: inline (content_id) attachments need an html body")
        return self

    @model_validator(mode="after")
    def _hosted_unsubscribe_names_one_recipient(self) -> MessageIn:
        hosted = self.list_unsubscribe is not None and self.list_unsubscribe.hosted
        if hosted and len(self.to) + len(self.cc) + len(self.bcc) != 1:
            raise ValueError("list_unsubscribe.hosted: the link unsubscribes one address; send one message each")
        return self

    @model_validator(mode="after")
    def _total_size(self) -> MessageIn:
        total = (
            len(self.body.encode("utf-8", "surrogatepass"))
            + len((self.html or "").encode("utf-8", "surrogatepass"))
            + sum(len(a.content or "") * 3 // 4 for a in self.attachments)
        )
        if total > MAX_INLINE_MESSAGE_BYTES:
            raise ValueError(f"message larger than {MAX_INLINE_MESSAGE_BYTES} bytes (body + html + inline attachments)")
        return self

    def content(self) -> dict[str, Any]:
        """What the sender needs to build the mail: stored once, apart from the status."""
        return self.model_dump(
            include={
                "from_addr",
                "to",
                "cc",
                "bcc",
                "reply_to",
                "return_path",
                "subject",
                "body",
                "content_type",
                "html",
                "headers",
                "attachments",
                "list_unsubscribe",
            }
        )


class AddMessagesRequest(BaseModel):
    messages: list[Any] = Field(
        description="messages as described by the MessageIn schema; each is validated on its own, so a bad "
        "message is rejected alone while the good ones are queued",
    )
    default_priority: PriorityField | None = None


class RejectionCode(StrEnum):
    """Why a message was not queued, for programs (`reason` is for people)."""

    DUPLICATE = "duplicate"  # the id is known and already claimed, sent or failed: not replaced
    INVALID = "invalid"  # the message fails validation (`reason` names the field)
    UNKNOWN_ACCOUNT = "unknown_account"  # `account_id` names no account of the tenant
    SUPPRESSED = "suppressed"  # reserved: a recipient on the suppression list (issue 17)


class Rejection(BaseModel):
    id: str | None
    reason: str
    code: RejectionCode


class AddMessagesResponse(BaseModel):
    ok: bool = True
    queued: int
    rejected: list[Rejection]


class NoticeFields(BaseModel):
    """What a notice after the SMTP reply adds to a message (docs/bounces.md): a bounce or complaint, the
    latest PEC receipt, a hosted unsubscribe. Unset until one arrives; the message's status does not change."""

    bounce_type: Literal["hard", "soft", "complaint"] | None = None
    bounce_code: str | None = None  # 3 digits: the enhanced status without dots (5.1.1 -> "511") or a reply code
    bounce_reason: str | None = None
    bounce_ts: int | None = None
    pec_event: str | None = None  # pec_acceptance | pec_relay | pec_delivery | pec_error | pec_timeout
    pec_ts: int | None = None
    pec_details: str | None = None
    unsubscribed_ts: int | None = None  # the recipient used the hosted one-click link (list_unsubscribe.hosted)


NOTICE_FIELDS = tuple(NoticeFields.model_fields)


class MessageView(NoticeFields):
    id: str
    tenant_id: str
    account_id: str
    priority: int
    status: MessageStatus
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
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    sandbox: bool = False
    history: list[HistoryEvent] | None = None


class MessagesPage(BaseModel):
    ok: bool = True
    messages: list[MessageView]
    cursor: str | None = Field(description="pass as `cursor` to read the next page; null at the end")


class HistoryEvent(BaseModel):
    event: str
    ts: int
    reason: str | None = None
    next_ts: int | None = None
    status: str | None = None


class TenantScoped(BaseModel):
    """Commands that act on one tenant (its own, for a tenant key; `default` when absent)."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: TenantId | None = None


class DeleteMessagesRequest(TenantScoped):
    ids: list[MessageIdentifier] = Field(min_length=1, max_length=MAX_MESSAGES_PER_REQUEST)


DEFAULT_CLEANUP_AGE = 7 * 86400  # the original's retention: cleanup-messages without `older_than_seconds`


class CleanupRequest(TenantScoped):
    older_than_seconds: int = Field(
        default=DEFAULT_CLEANUP_AGE,
        ge=0,
        le=10 * 365 * 86400,
        description="remove acknowledged messages created longer ago than this; absent: 7 days (604800)",
    )


class SuspendRequest(TenantScoped):
    batch_code: Annotated[str, StringConstraints(max_length=64)] | None = None


class SmtpProbeRequest(TenantScoped):
    """`POST /commands/test-smtp`: a stored account (`account_id`, of `tenant_id`) or an ad-hoc one
    (`host`, `port` and optionally `user`, `password`, `use_tls`, `timeout`), never both."""

    account_id: AccountIdentifier | None = Field(default=None, description="a stored account of the tenant")
    host: SmtpHost | None = None
    port: SmtpPort | None = None
    user: SmtpUser | None = None
    password: SmtpPassword | None = None
    use_tls: bool = False
    timeout: SmtpTimeout = DEFAULT_SMTP_TIMEOUT

    @model_validator(mode="after")
    def _one_form(self) -> SmtpProbeRequest:
        ad_hoc = {"host", "port", "user", "password", "use_tls", "timeout"} & self.model_fields_set
        if self.account_id is not None and ad_hoc:
            raise ValueError(f"account_id: names a stored account; leave out {', '.join(sorted(ad_hoc))}")
        if self.account_id is None and (self.host is None or self.port is None):
            raise ValueError("account_id, or host and port: one of the two is required")
        return self


class DeliveryReportItem(NoticeFields):
    """One entry of `{"delivery_report": [...]}` (docs/network.md, "The proxy → your application"): the seed
    document's fields; a deferred entry also carries `deferred_reason`, the others do not. `tenant_id` names
    the tenant the message belongs to, in every entry (docs/tenants.md). A bounce or PEC receipt adds its
    fields (NoticeFields) to the message's entry, as the original's bounce and pec_* entries carry them."""

    id: str
    tenant_id: str
    account_id: str
    priority: int
    sent_ts: int | None
    error_ts: int | None
    error: str | None
    deferred_ts: int | None
    deferred_reason: str | None = None
    metadata: dict[str, Any] | None = None  # the message's own, echoed; absent when it has none
    tags: list[str] | None = None
    sandbox: bool | None = None  # true: a sandbox account's message, delivered to nobody

    def wire(self) -> dict[str, Any]:
        data = self.model_dump()
        for optional in ("deferred_reason", "metadata", "tags", "sandbox", *NOTICE_FIELDS):
            if not data[optional]:
                del data[optional]
        return data


def describe_errors(errors: list[Any], *, request_location: bool = False) -> str:
    """A pydantic error list as one line naming each field. `request_location`: the first element of
    each path is FastAPI's location (body, query, path), not a field."""
    parts = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if request_location and loc[:1] == ["body"]:
            loc = loc[1:]
        field = ".".join(str(p) for p in loc) or "message"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class ClientAuth(BaseModel):
    """How the proxy authenticates to a tenant's endpoints (reports, attachments)."""

    model_config = ConfigDict(extra="ignore")

    method: Literal["none", "bearer", "basic"] = "none"
    token: SecretCredential | None = Field(default=None, max_length=4096)
    user: Annotated[Credential, StringConstraints(max_length=320)] | None = None
    password: SecretCredential | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _complete(self) -> ClientAuth:
        if self.method == "bearer" and self.token is None:
            raise ValueError("client_auth.token is required with method 'bearer'")
        if self.method == "basic" and (self.user is None or self.password is None):
            raise ValueError("client_auth.user and client_auth.password are required with method 'basic'")
        return self


UrlPath = Annotated[str, StringConstraints(max_length=512, pattern=r"^/[^\s\x00-\x1f]*$")]
HttpUrlText = Annotated[
    str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s\x00-\x1f/]+(/[^\s\x00-\x1f]*)?$")
]


class LargeFileConfig(BaseModel):
    """A tenant's large-file offloading (UPSTREAM-API.md §5): what the sender does with an attachment above
    `max_size_mb`. The original's `storage_url` / `public_base_url` are accepted and ignored: here `rewrite`
    always uploads to the proxy's own contents bucket and links a presigned URL."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = False
    max_size_mb: float = Field(
        default=10.0, ge=0.001, le=10_000, description="threshold per attachment, in MB (2^20 bytes), from 0.001"
    )
    action: Literal["warn", "reject", "rewrite"] = Field(
        default="warn",
        description="warn: attached, a warning logged; reject: the message ends in error; rewrite: uploaded, "
        "a download link appended to the body",
    )
    file_ttl_days: int = Field(
        default=30, ge=1, le=3650, description="link lifetime in days; a presigned S3 URL lasts at most 7"
    )

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * 1024 * 1024)


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: TenantId
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    client_base_url: HttpUrlText | None = None
    client_sync_path: UrlPath = DEFAULT_SYNC_PATH
    client_attachment_path: UrlPath = DEFAULT_ATTACHMENT_PATH
    client_auth: ClientAuth | None = None
    active: bool = True
    large_file_config: LargeFileConfig | None = Field(
        default=None, description='large-file offloading (docs/tenants.md, "Large attachments"); null: off'
    )
    suppression: bool = Field(
        default=True, description="false: the tenant's suppression list is not applied to any of its mail"
    )


def _in_the_future(value: int) -> int:
    if value <= time.time():
        raise ValueError("must be in the future (unix seconds)")
    return value


# A key's expiry as the API takes it; `POST /tenants/create_api_key` (the February-2026 surface) uses it too.
ApiKeyExpiry = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP), AfterValidator(_in_the_future)]


class ApiKeyRequest(BaseModel):
    """`POST /tenant/{tenant_id}/api-key`: the body is optional; without it (or `expires_at`) the key never expires."""

    expires_at: ApiKeyExpiry | None = Field(default=None, description="unix seconds; after it the key is refused (401)")


class CommandLogPurgeRequest(BaseModel):
    threshold_ts: int = Field(ge=0, le=MAX_TIMESTAMP, description="unix seconds: entries before it are deleted")


class SuppressionReason(StrEnum):
    """Why an address is on a tenant's suppression list."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


MAX_SUPPRESSIONS_PER_REQUEST = 1000


class SuppressionsAddRequest(TenantScoped):
    """`POST /suppressions`: addresses the tenant's mail must no longer go to."""

    addresses: list[Address] = Field(min_length=1, max_length=MAX_SUPPRESSIONS_PER_REQUEST)
    reason: SuppressionReason = SuppressionReason.MANUAL


class BounceConfigIn(BaseModel):
    """`POST /instance/set_bounce_config`: the deployment's bounce mailbox (UPSTREAM-API.md §5). A field left
    out or null keeps its stored value (or its default, the first time)."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool | None = None
    imap_host: SmtpHost | None = None
    imap_port: SmtpPort | None = Field(default=None, description=f"default {DEFAULT_IMAP_PORT}")
    imap_user: SmtpUser | None = None
    imap_password: SmtpPassword | None = Field(default=None, description="write-only: never shown again")
    imap_folder: ImapFolder | None = Field(default=None, description=f"default {DEFAULT_IMAP_FOLDER}")
    imap_ssl: bool | None = Field(default=None, description="default true: IMAPS")
    poll_interval: int | None = Field(default=None, ge=10, le=86400, description="seconds; default 60")
    return_path: Address | None = Field(
        default=None, description="the envelope sender of messages that set none, so that bounces come here"
    )


# -- the February-2026 surface (functions/api/routes/upstream.py, UPSTREAM-API.md §2) -----------------------
# Its POST bodies: a JSON object keyed by the original method's parameter names, always required (`{}` when
# every parameter is optional); a parameter without a default there is required here too.


class UpstreamNoParameters(BaseModel):
    """A method without parameters: the body `{}` (anything in it is ignored)."""

    model_config = ConfigDict(extra="ignore")


class UpstreamTenantBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: TenantId


class UpstreamBatchBody(SuspendRequest):
    """`tenants/suspend_batch`, `tenants/activate_batch`, `instance/suspend`, `instance/activate`."""

    tenant_id: TenantId


class UpstreamTenantUpdate(UpstreamTenantBody):
    """`tenants/update`: the fields to change; absent or null leaves a field as it is (so a field cannot be
    cleared here: `PUT /tenant/{tenant_id}` replaces the whole tenant)."""

    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    client_base_url: HttpUrlText | None = None
    client_sync_path: UrlPath | None = None
    client_attachment_path: UrlPath | None = None
    client_auth: ClientAuth | None = None
    active: bool | None = None
    large_file_config: LargeFileConfig | None = None
    suppression: bool | None = None


class UpstreamApiKeyBody(ApiKeyRequest):
    """`tenants/create_api_key`."""

    tenant_id: TenantId


class UpstreamAccountIn(AccountIn):
    """`accounts/add`: `tenant_id` required; `use_tls` absent means true, the original's default there
    (STARTTLS required on any port but 465); null lets the port decide, as `POST /account` does."""

    tenant_id: TenantId
    use_tls: bool = Field(
        default=True,
        description="absent: true (implicit TLS on 465, STARTTLS required elsewhere); null: the port decides",
    )


class UpstreamPecAccountIn(UpstreamAccountIn):
    """`accounts/add_pec`: `accounts/add` with the PEC inbox, `imap_host` required; always a PEC account."""

    imap_host: SmtpHost
    is_pec_account: Literal[True] = True


class UpstreamAccountRef(UpstreamTenantBody):
    """`accounts/delete`."""

    account_id: AccountIdentifier


class UpstreamMessageIn(MessageIn):
    """`messages/add`: one message, `tenant_id`, `from_addr` (or `from`), `to` and `body` required."""

    tenant_id: TenantId
    body: str


class UpstreamDeleteBatch(DeleteMessagesRequest):
    """`messages/delete_batch`."""

    tenant_id: TenantId


class UpstreamMessageRef(BaseModel):
    """`messages/delete`: `message_pk` as `messages/add` and `messages/list` give it, `<tenant_id>/<id>` (a
    tenant id holds no `/`, so the first `/` splits it)."""

    message_pk: Annotated[
        str, StringConstraints(max_length=64 + 1 + 256, pattern=r"^[A-Za-z0-9_.-]{1,64}/[^\x00-\x1f\x7f]+$")
    ] = Field(description="<tenant_id>/<id>")

    @field_validator("message_pk")
    @classmethod
    def _id_fits(cls, value: str) -> str:
        """The id after the `/` within `MessageIdentifier`'s limits (its pattern is the field's already)."""
        message_id = value.partition("/")[2]
        if len(message_id) > 256 or len(message_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
            raise ValueError(f"the id after '/' is over 256 characters or {MAX_ID_BYTES} bytes in UTF-8")
        return value

    @property
    def tenant_id(self) -> str:
        return self.message_pk.partition("/")[0]

    @property
    def message_id(self) -> str:
        return self.message_pk.partition("/")[2]
