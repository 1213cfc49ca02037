"""Reading one incoming mail of a bounce or PEC mailbox: an RFC 3464 delivery-status report, an RFC 5965
complaint (ARF), a non-standard bounce (`flufl.bounce`'s detectors), or a PEC receipt (`X-Ricevuta`).
Pure: bytes in, a BounceNotice, a PecReceipt or an Unparsed out; the mailbox poller applies the result.

The message a notice is about is found by the `X-Genro-Mail-ID` header the sender set
(`correlation.py`), looked for in the returned original (`message/rfc822`, `text/rfc822-headers`), then in
the notice's own headers and text (bounces that quote the original inline). A value that does not verify
under the deployment key correlates nothing: the Message-ID alone is not trusted (it is the client's, or
random, and names no tenant)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Literal

from flufl.bounce import all_failures
from pydantic import BaseModel

from mailproxy.logic.bounces.correlation import HEADER, parse_correlation_id

REASON_LIMIT = 500  # bounce_reason, pec_details: UPSTREAM-API.md §5
_ENHANCED_STATUS = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"\b([45]\d\d)\b")
_QUOTED_HEADER = re.compile(rf"^\s*>?\s*{HEADER}:\s*(\S+)", re.IGNORECASE | re.MULTILINE)

BounceType = Literal["hard", "soft", "complaint"]
PecEvent = Literal["pec_acceptance", "pec_relay", "pec_delivery", "pec_error"]

# X-Ricevuta values (DPR 68/2005 technical rules) -> the event reported.
PEC_EVENTS: dict[str, PecEvent] = {
    "accettazione": "pec_acceptance",
    "non-accettazione": "pec_error",
    "presa-in-carico": "pec_relay",
    "avvenuta-consegna": "pec_delivery",
    "mancata-consegna": "pec_error",
    # Receipts a provider may send besides the five above: errors too.
    "errore-consegna": "pec_error",
    "preavviso-errore-consegna": "pec_error",
    "rilevazione-virus": "pec_error",
}


class BounceNotice(BaseModel):
    tenant_id: str
    message_id: str
    recipient: str | None
    bounce_type: BounceType
    bounce_code: str | None  # 3 digits: the enhanced status without dots (5.1.1 -> "511"), or a reply code
    bounce_reason: str | None
    bounce_ts: int


class PecReceipt(BaseModel):
    tenant_id: str
    message_id: str
    pec_event: PecEvent
    receipt: str  # the X-Ricevuta value
    pec_ts: int
    pec_details: str


class Unparsed(BaseModel):
    reason: Literal["not_a_notice", "uncorrelated", "bad_correlation"]
    detail: str = ""


ParseResult = BounceNotice | PecReceipt | Unparsed


# A PEC message's (tenant, id) by the Message-ID a receipt quotes, within one PEC account's inbox.
ReferenceLookup = Callable[[str], tuple[str, str] | None]


def parse_mail(raw: bytes, *, key: bytes, now: int, referenced: ReferenceLookup | None = None) -> ParseResult:
    """What the mail `raw` says about one of our messages (see the module docstring). `referenced`: in a PEC
    account's inbox, a receipt without a verifiable X-Genro-Mail-ID (a short receipt carries no original)
    is correlated by its `X-Riferimento-Message-ID` among the messages that account sent."""
    mail = message_from_bytes(raw, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    receipt = mail.get("X-Ricevuta")
    if receipt is not None:
        return _pec_receipt(mail, str(receipt).strip().lower(), key=key, now=now, referenced=referenced)
    report_type = str(mail.get_param("report-type", "", header="content-type")).lower()
    if mail.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _complaint(mail, key=key, now=now)
    delivery = _delivery_status(mail)
    if delivery is not None:
        return _correlated(mail, key, lambda t, m: _notice(t, m, *delivery, now=now))
    heuristic = _heuristic(mail)
    if heuristic is not None:
        return _correlated(mail, key, lambda t, m: _notice(t, m, *heuristic, now=now))
    return Unparsed(reason="not_a_notice", detail=_subject(mail))


# -- correlation ---------------------------------------------------------------------------------------------
def _candidates(mail: EmailMessage) -> list[str]:
    """X-Genro-Mail-ID values, the returned original's first."""
    found: list[str] = []
    for part in mail.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            for inner in part.iter_parts() if isinstance(part, EmailMessage) else []:
                found += [str(v) for v in inner.get_all(HEADER, [])]
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
            found += _QUOTED_HEADER.findall(_text(part))
    found += [str(v) for v in mail.get_all(HEADER, [])]
    for part in mail.walk():
        if part.get_content_maintype() == "text":
            found += _QUOTED_HEADER.findall(_text(part))
    return list(dict.fromkeys(value.strip() for value in found))


def _correlated(mail: EmailMessage, key: bytes, build: Callable[[str, str], ParseResult]) -> ParseResult:
    candidates = _candidates(mail)
    for value in candidates:
        parsed = parse_correlation_id(value, key=key)
        if parsed is not None:
            return build(*parsed)
    if candidates:
        return Unparsed(reason="bad_correlation", detail=f"{HEADER} does not verify")
    return Unparsed(reason="uncorrelated", detail=f"no {HEADER} in {_subject(mail)!r}")


# -- delivery status (RFC 3464) ------------------------------------------------------------------------------
def _delivery_status(mail: EmailMessage) -> tuple[str | None, BounceType, str | None, str | None] | None:
    """(recipient, type, code, reason) of the first failed or delayed recipient of a DSN."""
    for part in mail.walk():
        if part.get_content_type() not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        for fields in _status_blocks(part):
            action = str(fields.get("Action", "")).strip().lower()
            if action not in ("failed", "delayed"):
                continue
            status = str(fields.get("Status", "")).strip()
            diagnostic = _unfold(str(fields.get("Diagnostic-Code", "")))
            diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic else diagnostic
            code = _code(status) or _code(diagnostic)
            bounce_type: BounceType = "soft" if action == "delayed" or (code or "5").startswith("4") else "hard"
            return (
                _address(fields.get("Final-Recipient") or fields.get("Original-Recipient")),
                bounce_type,
                code,
                (diagnostic or status or None),
            )
    return None


def _status_blocks(part: Message) -> Sequence[Message]:
    """The per-recipient field blocks of a delivery-status part (the first block is per-message)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)][1:] or list(payload)
    text = payload if isinstance(payload, str) else ""
    blocks = [message_from_bytes(chunk.encode(), policy=policy.default) for chunk in re.split(r"\r?\n\r?\n", text)]
    return [b for b in blocks if len(b.keys())][1:]


# -- complaints (RFC 5965) -----------------------------------------------------------------------------------
def _complaint(mail: EmailMessage, *, key: bytes, now: int) -> ParseResult:
    feedback = next(
        (_fields(part) for part in mail.walk() if part.get_content_type() == "message/feedback-report"), None
    )
    recipient = _address(feedback.get("Original-Rcpt-To")) if feedback is not None else None
    if recipient is None:
        recipient = _original_recipient(mail)
    kind = str(feedback.get("Feedback-Type", "abuse")).strip() if feedback is not None else "abuse"
    return _correlated(
        mail, key, lambda t, m: _notice(t, m, recipient, "complaint", None, f"complaint: {kind}", now=now)
    )


def _fields(part: Message) -> Message | None:
    """The header fields of a machine-readable part, however the parser left its payload."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return next((item for item in payload if isinstance(item, Message)), None)
    return message_from_bytes(payload.encode(), policy=policy.default) if isinstance(payload, str) else None


def _original_recipient(mail: EmailMessage) -> str | None:
    for part in mail.walk():
        if part.get_content_type() == "message/rfc822" and isinstance(part, EmailMessage):
            for inner in part.iter_parts():
                return _address(inner.get("To"))
    return None


# -- non-standard bounces ------------------------------------------------------------------------------------
def _heuristic(mail: EmailMessage) -> tuple[str | None, BounceType, str | None, str | None] | None:
    try:
        temporary, permanent = all_failures(mail)
    except Exception:  # a detector that trips over hostile mail (flufl.bounce re-raises): no bounce found
        return None
    failed = permanent or temporary
    if not failed:
        return None
    recipient = sorted(failed)[0].decode(errors="replace")
    text = " ".join(_text(p) for p in mail.walk() if p.get_content_type() == "text/plain")
    code = _code(text)
    if permanent:
        bounce_type: BounceType = "soft" if code and code.startswith("4") else "hard"
    else:
        bounce_type = "soft"
    return recipient, bounce_type, code, _reason_line(text, recipient)


def _reason_line(text: str, recipient: str) -> str | None:
    """The line of a free-form bounce that explains the failure: the one with a status code, else the
    recipient's."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if _ENHANCED_STATUS.search(line) or _REPLY_CODE.search(line):
            return line
    return next((line for line in lines if recipient in line), None)


# -- PEC receipts --------------------------------------------------------------------------------------------
def _pec_receipt(
    mail: EmailMessage, receipt: str, *, key: bytes, now: int, referenced: ReferenceLookup | None
) -> ParseResult:
    event = PEC_EVENTS.get(receipt, "pec_acceptance" if receipt.startswith("accett") else None)
    if event is None:
        return Unparsed(reason="not_a_notice", detail=f"unknown X-Ricevuta {receipt!r}")
    details = f"PEC {receipt}"
    error = mail.get("X-VerificaSicurezza") or mail.get("X-Errore") or None
    if event == "pec_error" and error:
        details += f": {error}"

    def build(tenant_id: str, message_id: str) -> PecReceipt:
        return PecReceipt(
            tenant_id=tenant_id,
            message_id=message_id,
            pec_event=event,
            receipt=receipt,
            pec_ts=now,
            pec_details=details[:REASON_LIMIT],
        )

    correlated = _correlated(mail, key, build)
    reference = mail.get("X-Riferimento-Message-ID")
    if isinstance(correlated, Unparsed) and correlated.reason == "uncorrelated" and referenced and reference:
        found = referenced(str(reference).strip())
        if found is not None:
            return build(*found)
    return correlated


# -- helpers -------------------------------------------------------------------------------------------------
def _notice(
    tenant_id: str,
    message_id: str,
    recipient: str | None,
    bounce_type: BounceType,
    code: str | None,
    reason: str | None,
    *,
    now: int,
) -> BounceNotice:
    return BounceNotice(
        tenant_id=tenant_id,
        message_id=message_id,
        recipient=recipient,
        bounce_type=bounce_type,
        bounce_code=code,
        bounce_reason=reason[:REASON_LIMIT] if reason else None,
        bounce_ts=now,
    )


def _code(text: str) -> str | None:
    enhanced = _ENHANCED_STATUS.search(text)
    if enhanced:
        digits = enhanced.groups()
        # The original's 3-digit form when it is one (5.1.1 -> "511"); a longer status keeps its dots.
        return "".join(digits) if all(len(d) == 1 for d in digits) else enhanced.group(0)
    reply = _REPLY_CODE.search(text)
    return reply.group(1) if reply else None


def _address(value: object) -> str | None:
    """The address of a `rfc822; user@host` field, or of an address header."""
    if value is None:
        return None
    text = _unfold(str(value))
    text = text.split(";", 1)[1] if ";" in text else text
    match = re.search(r"[^\s<>;\"]+@[^\s<>;\"]+", text)
    return match.group(0) if match else None


def _unfold(text: str) -> str:
    return " ".join(text.split())


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _subject(mail: EmailMessage) -> str:
    return str(mail.get("Subject", ""))[:120]
