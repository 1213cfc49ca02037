"""What an SMTP attempt ends with, the failures it can meet, and their text: the server's reply on one
line, a transport failure described without its internals, and never the password."""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    ERROR = "error"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    code: int | None  # SMTP reply code when there was one
    detail: str  # server reply text or the failure; never the password


class HostRefused(ValueError):
    """The host's address is not one the proxy may connect to (the SSRF guard): a policy, not a fault."""


class DeadlinePassed(TimeoutError):
    """The whole attempt (connect, handshake, transaction) took longer than it was given."""


class ReplyTooLong(smtplib.SMTPServerDisconnected):
    """The server's reply went past MAX_REPLY_LINES / MAX_REPLY_BYTES; the connection is dropped."""


class Failure(Exception):
    """Carries the SendResult of a failed step; the connection (if any) is unusable."""

    def __init__(self, result: SendResult, *, dead_before_accept: bool = False) -> None:
        super().__init__(result.detail)
        self.result = result
        self.dead_before_accept = dead_before_accept


def fail(outcome: Outcome, code: int | None, detail: str, **kw: bool) -> Failure:
    return Failure(SendResult(outcome, code, detail), **kw)


def is_positive(code: int) -> bool:
    """A 2xx reply: the command was done."""
    return 200 <= code < 300


def is_permanent(code: int) -> bool:
    """A 5xx reply: trying again will not help."""
    return 500 <= code < 600


def failure_outcome(code: int) -> Outcome:
    """For a reply that means "not done": permanent (5xx) -> error, anything else -> deferred."""
    return Outcome.ERROR if is_permanent(code) else Outcome.DEFERRED


def _one_line(reply: bytes | str | None) -> str:
    if reply is None:
        return ""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())


def reply_text(code: int, reply: bytes | str | None) -> str:
    """``"<code> <text>"`` with the reply's lines and runs of white space joined by one space."""
    text = _one_line(reply)
    return f"{code} {text}" if text else str(code)


def describe(exc: BaseException) -> str:
    """A short, password-free description of a transport failure."""
    if isinstance(exc, ReplyTooLong | DeadlinePassed):
        return str(exc)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return _describe_disconnect(exc)
    if isinstance(exc, ssl.SSLError):
        return _describe_tls(exc)
    if isinstance(exc, OSError):
        return _describe_network(exc)
    return f"{type(exc).__name__}: {exc}"


def _describe_disconnect(exc: smtplib.SMTPServerDisconnected) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and not isinstance(cause, smtplib.SMTPServerDisconnected):
        return describe(cause)
    return "server closed the connection"


def _describe_tls(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return f"TLS certificate verification failed: {reason}"
    return f"TLS error: {exc.reason or exc}"


def _describe_network(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, ConnectionAbortedError | BrokenPipeError):
        return "connection closed by the server"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed: {exc.strerror or exc}"
    return f"network error: {exc.strerror or exc}"


_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
HIDDEN = "********"


def scrub(text: str, secret: str | None) -> str:
    """The text without the password, in clear or inside a base64 token (a server may echo the AUTH blob)."""
    if not secret or len(secret) < 3:
        return text

    def hide_encoded(match: re.Match[str]) -> str:
        token = match.group(0)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8", "replace")
        except ValueError:
            return token
        return HIDDEN if secret in decoded else token

    return _BASE64_TOKEN.sub(hide_encoded, text.replace(secret, HIDDEN))
