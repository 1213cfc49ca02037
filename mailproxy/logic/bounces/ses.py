"""SES notifications: the Bounce, Complaint and Delivery events a SES configuration set publishes to the
deployment's SNS topic (stacks/ses_events.py), read from the SQS queue subscribed to it. They become the same
notices as the bounce mailbox's DSNs (logic/bounces/parse.py) and are applied the same way (apply.py).

Shapes as AWS documents them: event publishing (`eventType`, with the original's `mail.headers`) and the
older identity notifications (`notificationType`); the SQS body is the SES JSON itself (raw message delivery)
or an SNS envelope around it. The message is found by the signed `X-Genro-Mail-ID` among `mail.headers`:
mail sent through the same configuration set by anything else is not ours and is ignored."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailproxy.logic.bounces.apply import Applied, apply_notice, count_bounce
from mailproxy.logic.bounces.correlation import HEADER as CORRELATION_HEADER
from mailproxy.logic.bounces.correlation import parse_correlation_id
from mailproxy.logic.bounces.parse import REASON_LIMIT, BounceNotice, BounceType
from mailproxy.services import Services

SES_CONFIGURATION_SET_HEADER = "X-SES-CONFIGURATION-SET"

_SES_BOUNCE_TYPES: dict[str, BounceType] = {"Permanent": "hard", "Transient": "soft", "Undetermined": "soft"}
_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"\b([245]\d\d)\b")


class NotSesEvent(ValueError):
    """The body is not an SES notification this code reads (not JSON, or no known event type)."""


@dataclass
class SesEvent:
    """What one SES notification holds for us: its notices (one per bounced or complaining recipient), or
    none for a delivery, or for mail that is not ours (`ours` False)."""

    kind: str  # Bounce | Complaint | Delivery | another event type (ignored)
    ours: bool
    notices: list[tuple[str, BounceNotice]] = field(default_factory=list)  # (notice id, notice)


@dataclass
class SesTotals:
    applied: int = 0
    duplicates: int = 0  # delivered again by SNS or SQS: recorded before
    ignored: int = 0  # not our mail, or a message no longer stored
    delivered: int = 0  # Delivery events: SES's "250" from the recipient's server; nothing to record
    bounced_hard: int = 0  # of the applied, by type (apply.BOUNCE_COUNTERS)
    bounced_soft: int = 0
    complaints: int = 0


def apply_event(services: Services, body: str, *, key: bytes, now: int, totals: SesTotals) -> None:
    """Read one SQS record's SES notification and record its notices on their message. Raises NotSesEvent
    for a body that is none (the record is retried, then kept in the dead-letter queue)."""
    event = read_event(body, key=key, now=now)
    if not event.ours:
        totals.ignored += 1
        return
    if event.kind == "Delivery":
        totals.delivered += 1
    for notice_id, notice in event.notices:
        outcome = apply_notice(services, notice, notice_id=notice_id, tenant_id=None, now=now)
        if outcome is Applied.APPLIED:
            totals.applied += 1
            count_bounce(totals, notice.bounce_type)
        elif outcome is Applied.DUPLICATE:
            totals.duplicates += 1
        else:
            totals.ignored += 1


def read_event(body: str, *, key: bytes, now: int) -> SesEvent:
    """The SES notification in an SQS record's `body`; `now` stands for a time it lacks. Raises NotSesEvent
    for anything else."""
    try:
        event = json.loads(body)
        if isinstance(event, dict) and event.get("Type") == "Notification" and "Message" in event:
            event = json.loads(event["Message"])  # an SNS envelope (raw message delivery off)
    except (json.JSONDecodeError, TypeError) as exc:
        raise NotSesEvent(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise NotSesEvent("not a JSON object")
    kind = event.get("eventType") or event.get("notificationType")
    if not isinstance(kind, str) or not isinstance(event.get("mail"), dict):
        raise NotSesEvent("no eventType/notificationType and mail")
    correlated = _correlation(event["mail"], key)
    if correlated is None:
        return SesEvent(kind, ours=False)
    tenant_id, message_id = correlated
    if kind == "Bounce":
        notices = _bounces(event.get("bounce") or {}, tenant_id, message_id, now)
    elif kind == "Complaint":
        notices = _complaints(event.get("complaint") or {}, tenant_id, message_id, now)
    else:
        notices = []
    return SesEvent(kind, ours=True, notices=notices)


def _correlation(mail: dict[str, Any], key: bytes) -> tuple[str, str] | None:
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == CORRELATION_HEADER.lower():
            return parse_correlation_id(str(header.get("value", "")), key=key)
    return None


def _bounces(bounce: dict[str, Any], tenant_id: str, message_id: str, now: int) -> list[tuple[str, BounceNotice]]:
    bounce_type = _SES_BOUNCE_TYPES.get(str(bounce.get("bounceType")), "soft")
    when = _timestamp(bounce.get("timestamp")) or now
    notices = []
    for recipient in bounce.get("bouncedRecipients") or []:
        address = str(recipient.get("emailAddress") or "") or None
        diagnostic = str(recipient.get("diagnosticCode") or "")
        status = str(recipient.get("status") or "")
        reason = diagnostic or f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        notice = BounceNotice(
            tenant_id=tenant_id,
            message_id=message_id,
            recipient=address,
            bounce_type=bounce_type,
            bounce_code=_code(status) or _code(diagnostic),
            bounce_reason=reason[:REASON_LIMIT],
            bounce_ts=when,
        )
        notices.append((_notice_id(bounce.get("feedbackId"), address), notice))
    return notices


def _complaints(complaint: dict[str, Any], tenant_id: str, message_id: str, now: int) -> list[tuple[str, BounceNotice]]:
    when = _timestamp(complaint.get("timestamp")) or now
    feedback = complaint.get("complaintFeedbackType") or "complaint"
    notices = []
    for recipient in complaint.get("complainedRecipients") or []:
        address = str(recipient.get("emailAddress") or "") or None
        notice = BounceNotice(
            tenant_id=tenant_id,
            message_id=message_id,
            recipient=address,
            bounce_type="complaint",
            bounce_code=None,
            bounce_reason=f"complaint: {feedback}"[:REASON_LIMIT],
            bounce_ts=when,
        )
        notices.append((_notice_id(complaint.get("feedbackId"), address), notice))
    return notices


def _code(text: str) -> str | None:
    """3 digits: an enhanced status without dots (5.1.1 -> "511"), else a reply code ("550")."""
    enhanced = _ENHANCED_STATUS.search(text)
    if enhanced:
        return "".join(enhanced.groups())[:3]
    reply = _REPLY_CODE.search(text)
    return reply.group(1) if reply else None


def _timestamp(value: object) -> int | None:
    """SES's ISO 8601 time (`2016-01-27T14:59:38.237Z`) as unix seconds; None when absent or unreadable."""
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _notice_id(feedback_id: object, recipient: str | None) -> str:
    """SES's feedback id names the notification: the same one delivered again (SNS and SQS are at least
    once) is the same notice, once per recipient."""
    return "ses-" + hashlib.sha256(f"{feedback_id}\n{recipient}".encode()).hexdigest()[:32]
