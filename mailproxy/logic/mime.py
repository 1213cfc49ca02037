"""Build the MIME message and the SMTP envelope of an outgoing mail.

Everything goes through the standard ``email`` package with ``email.policy.SMTP`` (CRLF line ends,
RFC 2047 encoded words for non-ASCII headers, RFC 2231 for non-ASCII attachment names). The body is
UTF-8; it is sent as 7bit when it is plain ASCII with short lines, otherwise as quoted-printable or
base64 (whichever is smaller), so the message never needs the server's 8BITMIME extension.
"""

from __future__ import annotations

import html as html_text
import mimetypes
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel

from mailproxy.headers import HEADER_NAME, PROTECTED_HEADERS, parse_address
from mailproxy.logic.bounces.correlation import HEADER as CORRELATION_HEADER

__all__ = [
    "Download",
    "Envelope",
    "ListUnsubscribe",
    "MailAttachment",
    "OutgoingMail",
    "build_message",
    "guess_mime_type",
    "with_download_links",
]


_DEFAULT_MIME_TYPE = "application/octet-stream"


class MailAttachment(BaseModel):
    filename: str
    content: bytes
    mime_type: str | None = None  # guessed from filename when None, fallback application/octet-stream
    content_id: str | None = None  # with inline: an image the html references as ``cid:<content_id>``
    inline: bool = False


class ListUnsubscribe(BaseModel):
    """Where a recipient unsubscribes (RFC 2369); a url makes it one-click (RFC 8058)."""

    url: str | None = None
    mailto: str | None = None


class OutgoingMail(BaseModel):
    from_addr: str
    to: list[str]
    cc: list[str] = []
    bcc: list[str] = []
    reply_to: str | None = None
    return_path: str | None = None  # envelope sender (MAIL FROM) when given; else from_addr's addr-spec
    subject: str
    body: str
    content_type: Literal["plain", "html"] = "plain"
    html: str | None = None  # with body: multipart/alternative, body as its text part
    headers: dict[str, str] = {}  # extra headers; protected names are ignored
    attachments: list[MailAttachment] = []
    list_unsubscribe: ListUnsubscribe | None = None


class Envelope(NamedTuple):
    sender: str  # addr-spec for MAIL FROM ("" = null reverse-path)
    recipients: list[str]  # addr-specs: to + cc + bcc, de-duplicated (case-insensitively), order kept


class Download(NamedTuple):
    """A large attachment replaced by a link (a tenant's large-file `rewrite`)."""

    filename: str
    size: int  # bytes
    url: str


DOWNLOADS_TITLE = "Large attachments available for download"


def with_download_links(body: str, downloads: list[Download], *, html: bool) -> str:
    """The body with the footer that lists the offloaded attachments: name, size in MB, URL. In HTML, a
    list placed before ``</body>`` when there is one, names and URLs escaped."""
    if not downloads:
        return body
    if not html:
        lines = [f"- {d.filename} ({_megabytes(d.size)} MB): {d.url}" for d in downloads]
        return body.rstrip("\n") + "\n\n--\n" + DOWNLOADS_TITLE + ":\n" + "\n".join(lines) + "\n"
    items = "".join(
        f'<li><a href="{html_text.escape(d.url)}">{html_text.escape(d.filename)}</a> ({_megabytes(d.size)} MB)</li>'
        for d in downloads
    )
    footer = f"<hr><p>{DOWNLOADS_TITLE}:</p><ul>{items}</ul>"
    end = body.lower().rfind("</body>")
    return body[:end] + footer + body[end:] if end >= 0 else body + footer


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}"


def _envelope_sender(mail: OutgoingMail, from_address: Address) -> str:
    if mail.return_path is None:
        return from_address.addr_spec
    if mail.return_path.strip() in ("", "<>"):
        return ""  # null reverse-path (bounces)
    return parse_address(mail.return_path).addr_spec


def guess_mime_type(filename: str, mime_type: str | None = None) -> tuple[str, str]:
    """(maintype, subtype) for an attachment: the given type when well-formed, else a guess.

    ``multipart/*`` and ``message/*`` cannot be carried as opaque base64 bytes (RFC 2046), so they
    become ``application/octet-stream``, as does anything malformed.
    """
    candidate = (mime_type or "").strip().lower()
    if not candidate:
        candidate = mimetypes.guess_type(filename, strict=False)[0] or _DEFAULT_MIME_TYPE
    maintype, sep, subtype = candidate.partition("/")
    if (
        not sep
        or not maintype
        or not subtype
        or "/" in subtype
        or any(ch in candidate for ch in ';"\\ \t\r\n')
        or maintype in ("multipart", "message")
    ):
        maintype, _, subtype = _DEFAULT_MIME_TYPE.partition("/")
    return maintype, subtype


def _body_cte(body: str) -> str | None:
    """7bit (None: let the email package decide) for short-lined ASCII, else QP or base64."""
    if body.isascii() and all(len(line) <= 78 for line in body.splitlines()):
        return None
    non_ascii_bytes = len(body.encode("utf-8")) - sum(1 for ch in body if ch.isascii())
    # quoted-printable triples every non-ASCII byte; base64 costs 4/3 on everything
    return "base64" if non_ascii_bytes * 3 > len(body) else "quoted-printable"


def _normalise_message_id(message_id: str) -> str:
    mid = message_id.strip()
    if not mid or any(ch in mid for ch in " \t\r\n"):
        raise ValueError(f"invalid Message-ID {message_id!r}")
    if not mid.startswith("<"):
        mid = "<" + mid
    if not mid.endswith(">"):
        mid += ">"
    return mid


def _set_body(msg: EmailMessage, mail: OutgoingMail) -> MIMEPart | None:
    """Put the body (and the html alternative) in ``msg``; the html part, which inline images join, or None."""
    if mail.html is None:
        msg.set_content(mail.body, subtype=mail.content_type, charset="utf-8", cte=_body_cte(mail.body))
        return msg if mail.content_type == "html" else None
    msg.set_content(mail.body, subtype="plain", charset="utf-8", cte=_body_cte(mail.body))
    msg.add_alternative(mail.html, subtype="html", charset="utf-8", cte=_body_cte(mail.html))
    *_, html_part = msg.iter_parts()  # msg is now a multipart/alternative: [text, html]
    return html_part


def _attach(msg: EmailMessage, html_part: MIMEPart | None, attachment: MailAttachment) -> None:
    """An inline attachment joins the html in a multipart/related; any other goes in a multipart/mixed."""
    maintype, subtype = guess_mime_type(attachment.filename, attachment.mime_type)
    if not (attachment.inline and attachment.content_id):
        msg.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename, cte="base64"
        )
        return
    if html_part is None:
        raise ValueError(f"inline attachment {attachment.filename!r} needs an html body")
    html_part.add_related(
        attachment.content,
        maintype=maintype,
        subtype=subtype,
        filename=attachment.filename,
        cid=_normalise_message_id(attachment.content_id),
        disposition="inline",
        cte="base64",
    )


def _set_extra_headers(msg: EmailMessage, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        key = name.strip().lower()
        if not HEADER_NAME.match(key):
            raise ValueError(f"invalid header name {name!r}")
        # Content-* headers describe the MIME parts the builder makes: never a client's to set.
        if key in PROTECTED_HEADERS or key.startswith("content-"):
            continue
        msg[name.strip()] = value  # a value with CR/LF raises ValueError


def _set_list_unsubscribe(msg: EmailMessage, target: ListUnsubscribe) -> None:
    targets = [f"<{target.url}>"] if target.url else []
    if target.mailto:
        targets.append(f"<mailto:{parse_address(target.mailto).addr_spec}>")
    if not targets:
        raise ValueError("list_unsubscribe needs a url or a mailto address")
    msg["List-Unsubscribe"] = ", ".join(targets)
    if target.url:  # RFC 8058: the receiver may POST to the url, with no further step
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def build_message(
    mail: OutgoingMail, *, message_id: str, date: datetime | None = None, correlation: str | None = None
) -> tuple[EmailMessage, Envelope]:
    """Build the MIME message (``email.policy.SMTP``) and the SMTP envelope of ``mail``.

    text/plain or text/html body (utf-8); with ``html`` too, multipart/alternative (text first, html
    last); inline attachments in a multipart/related around the html, the others in a multipart/mixed
    outside; List-Unsubscribe (+ List-Unsubscribe-Post with a url) from ``list_unsubscribe``; non-ASCII subject
    and display names encoded (RFC 2047), Date (given or now, UTC; a naive datetime is taken as UTC)
    and Message-ID (``<...>`` form) set, Bcc never in the headers, Reply-To when given. Extra headers
    are applied unless their name is protected (see ``PROTECTED_HEADERS``, plus ``Content-*``), which
    are silently ignored. ``correlation``: the ``X-Genro-Mail-ID`` value (``logic/bounces/correlation.py``);
    a client's own header of that name is ignored.

    Raises ``ValueError`` on an invalid address, Message-ID, header name or header value (CR/LF).
    """
    from_address = parse_address(mail.from_addr)
    to = [parse_address(a) for a in mail.to]
    cc = [parse_address(a) for a in mail.cc]
    bcc = [parse_address(a) for a in mail.bcc]

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_address
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if mail.reply_to:
        msg["Reply-To"] = parse_address(mail.reply_to)
    msg["Subject"] = mail.subject
    when = date if date is not None else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    msg["Date"] = format_datetime(when.astimezone(UTC))
    msg["Message-ID"] = _normalise_message_id(message_id)
    if correlation is not None:  # X-Genro-Mail-ID (logic/bounces/correlation.py): bounces find the message by it
        msg[CORRELATION_HEADER] = correlation

    _set_extra_headers(msg, mail.headers)
    if mail.list_unsubscribe is not None:
        _set_list_unsubscribe(msg, mail.list_unsubscribe)

    html_part = _set_body(msg, mail)
    for attachment in mail.attachments:
        _attach(msg, html_part, attachment)

    recipients: list[str] = []
    seen: set[str] = set()
    for address in (*to, *cc, *bcc):
        spec = address.addr_spec
        if spec.lower() not in seen:
            seen.add(spec.lower())
            recipients.append(spec)
    return msg, Envelope(sender=_envelope_sender(mail, from_address), recipients=recipients)
