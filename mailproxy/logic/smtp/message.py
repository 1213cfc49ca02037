"""The message as the wire carries it: serialized for SMTP without its Bcc headers, or marked as needing
SMTPUTF8 when an address or a header cannot go out in ASCII."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.message import EmailMessage

from mailproxy.logic.mime import Envelope
from mailproxy.logic.smtp.errors import Outcome, SendResult


@dataclass
class Prepared:
    envelope: Envelope
    message: EmailMessage
    data: bytes | None  # serialized with policy.SMTP; None when SMTPUTF8 is needed
    needs_utf8: bool


def serialize(message: EmailMessage, *, utf8: bool) -> bytes:
    if "Bcc" in message or "Resent-Bcc" in message:
        message = _without_bcc(message)
    return message.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)


def _without_bcc(message: EmailMessage) -> EmailMessage:
    clone = copy.copy(message)
    del clone["Bcc"]  # __delitem__ builds a new header list: the original keeps its own
    del clone["Resent-Bcc"]
    return clone


def prepare(message: EmailMessage, envelope: Envelope) -> Prepared | SendResult:
    """What can be decided before connecting; a SendResult when the message cannot be sent at all."""
    if not envelope.recipients:
        return SendResult(Outcome.ERROR, None, "no recipients")
    addresses = [envelope.sender, *envelope.recipients]
    needs_utf8 = not all(a.isascii() for a in addresses)
    data: bytes | None = None
    if not needs_utf8:
        try:
            data = serialize(message, utf8=False)
        except (ValueError, UnicodeError, MessageError):
            needs_utf8 = True  # e.g. a non-ASCII local part in a header
    return Prepared(envelope=envelope, message=message, data=data, needs_utf8=needs_utf8)
