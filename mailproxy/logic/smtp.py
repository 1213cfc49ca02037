"""SMTP delivery with ``smtplib``: one connection per account per batch, with a clear outcome per message.

* ``use_tls=True``  -> implicit TLS from the first byte (port 465 style).
* ``use_tls=False`` -> plain connect, EHLO, then STARTTLS whenever the server offers it, EHLO again.
  Once STARTTLS is offered it must succeed: there is no fallback to plain text.
* Certificates are verified against the system store (``ssl.create_default_context()``, one per trust
  store that ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name at connect time), with the host name checked.
* AUTH only when user and password are both set, and only over an encrypted connection, except
  towards a loopback host (``is_loopback_host``).
* Outcomes: a 2xx reply to the end of DATA -> ``sent``; any 4xx, timeout, refused/dropped/reset
  connection, DNS or TLS failure -> ``deferred``; a permanent 5xx -> ``error`` with the server's reply.

The password never appears in a ``SendResult``, a probe step or a log line.
"""

from __future__ import annotations

import base64
import copy
import functools
import ipaddress
import logging
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from typing_extensions import Buffer

from mailproxy.logic.mime import Envelope

__all__ = [
    "Outcome",
    "SendResult",
    "SmtpAccount",
    "SmtpPool",
    "is_loopback_host",
    "probe",
]

log = logging.getLogger(__name__)

_QUIT_TIMEOUT = 5.0  # cap on the polite QUIT when closing, whatever the account's timeout


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    use_tls: bool
    timeout: float = 30.0

    @property
    def wants_auth(self) -> bool:
        return bool(self.user) and bool(self.password)


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    ERROR = "error"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    code: int | None  # SMTP reply code when there was one
    detail: str  # server reply text or the failure; never the password


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ::1 (also ``[::1]``)."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --------------------------------------------------------------------------- helpers


def _failure_outcome(code: int) -> Outcome:
    """For a reply that means "not done": permanent (5xx) -> error, anything else -> deferred."""
    return Outcome.ERROR if 500 <= code < 600 else Outcome.DEFERRED


def _text(reply: bytes | str | None) -> str:
    if reply is None:
        return ""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())


def _reply(code: int, reply: bytes | str | None) -> str:
    text = _text(reply)
    return f"{code} {text}" if text else str(code)


def _describe(exc: BaseException) -> str:
    """A short, password-free description of a transport failure."""
    if isinstance(exc, ReplyTooLong | DeadlinePassed):
        return str(exc)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and not isinstance(cause, smtplib.SMTPServerDisconnected):
            return _describe(cause)
        return "server closed the connection"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return f"TLS certificate verification failed: {reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
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
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def _scrub(text: str, secret: str | None) -> str:
    """The text without the password, in clear or inside a base64 token (a server may echo the AUTH blob)."""
    if not secret or len(secret) < 3:
        return text

    def hide_encoded(match: re.Match[str]) -> str:
        token = match.group(0)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8", "replace")
        except ValueError:
            return token
        return "********" if secret in decoded else token

    return _BASE64_TOKEN.sub(hide_encoded, text.replace(secret, "********"))


@functools.cache
def _local_hostname() -> str:
    """The EHLO name, computed once (smtplib would do two lookups per connection)."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


Addresses = Callable[[str, int], list[tuple[Any, ...]]]  # host, port -> getaddrinfo entries to connect to


class HostRefused(ValueError):
    """The host's address is not one the proxy may connect to (the SSRF guard): a policy, not a fault."""


_MAX_LINE = 8192  # smtplib's own limit on one reply line (RFC 5321 says 512)
MAX_REPLY_LINES = 100  # a real EHLO answer has ~15; an endless `250-` reply must not hold the sender
MAX_REPLY_BYTES = 65_536


class DeadlinePassed(TimeoutError):
    """The whole attempt (connect, handshake, transaction) took longer than it was given."""


class ReplyTooLong(smtplib.SMTPServerDisconnected):
    """The server's reply went past MAX_REPLY_LINES / MAX_REPLY_BYTES; the connection is dropped."""


class _Client(smtplib.SMTP):
    """smtplib.SMTP that can do implicit TLS itself, closes the raw socket if the handshake fails,
    connects only to the addresses `addresses` vetted (when given), so the name is resolved once, and
    bounds every reply in lines, bytes and time: each read waits at most until `deadline` (monotonic)."""

    def __init__(
        self, host: str, *, tls_context: ssl.SSLContext | None, timeout: float, addresses: Addresses | None = None
    ) -> None:
        self._implicit_tls = tls_context
        self._addresses = addresses
        self.deadline: float | None = None
        super().__init__(local_hostname=_local_hostname(), timeout=timeout if timeout > 0 else 30.0)
        self._host = host  # server_hostname for STARTTLS (smtplib reads it)

    def _time_left(self) -> float:
        """The socket timeout for the next operation: the account's, cut to what the deadline leaves."""
        if self.deadline is None:
            return float(self.timeout)
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()
            raise DeadlinePassed("the SMTP attempt ran past its deadline")
        return min(float(self.timeout), left)

    def send(self, s: Buffer | str) -> None:
        if self.sock is not None:
            self.sock.settimeout(self._time_left())
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        # smtplib's own loop, with a cap on lines, bytes and time.
        lines: list[bytes] = []
        size = 0
        if self.file is None:
            assert self.sock is not None
            self.file = self.sock.makefile("rb")
        while True:
            wait = self._time_left()
            if self.sock is not None:
                self.sock.settimeout(wait)
            try:
                line = self.file.readline(_MAX_LINE + 1)
            except OSError as exc:
                self.close()
                if isinstance(exc, TimeoutError) and wait < self.timeout:  # the deadline, not the server, cut it
                    raise DeadlinePassed("the SMTP attempt ran past its deadline") from None
                raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from None
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            size += len(line)
            if len(line) > _MAX_LINE or len(lines) >= MAX_REPLY_LINES or size > MAX_REPLY_BYTES:
                self.close()
                raise ReplyTooLong(f"server reply longer than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)

    def _open_tcp(self, host: str, port: int, timeout: float) -> socket.socket:
        if self._addresses is None:
            return socket.create_connection((host, port), timeout, self.source_address)
        last_error: OSError = OSError(f"no address to connect to for {host}")
        for family, kind, proto, _, sockaddr in self._addresses(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last_error = exc
        raise last_error

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = self._open_tcp(host, port, timeout)
        if self._implicit_tls is None:
            return sock
        try:
            return self._implicit_tls.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise


class _Failure(Exception):
    """Carries the SendResult of a failed step; the connection (if any) is unusable."""

    def __init__(self, result: SendResult, *, dead_before_accept: bool = False) -> None:
        super().__init__(result.detail)
        self.result = result
        self.dead_before_accept = dead_before_accept


def _fail(outcome: Outcome, code: int | None, detail: str, **kw: bool) -> _Failure:
    return _Failure(SendResult(outcome, code, detail), **kw)


StepCallback = Callable[[str, bool, str], None]


def _no_step(name: str, ok: bool, detail: str) -> None:
    return None


@dataclass
class _Connection:
    account: SmtpAccount
    smtp: _Client
    encrypted: bool
    broken: bool = False
    messages: int = 0

    def close(self, *, polite: bool) -> None:
        try:
            if polite and not self.broken and self.smtp.sock is not None:
                self.smtp.sock.settimeout(min(self.account.timeout, _QUIT_TIMEOUT))
                self.smtp.quit()
        except Exception:  # noqa: S110 - QUIT is a courtesy
            pass
        finally:
            self.smtp.close()


def tls_context() -> ssl.SSLContext:
    """The verifying client context for the trust store the environment names now (SSL_CERT_FILE /
    SSL_CERT_DIR are read at each connection), built once per store: loading a store costs ~20 ms."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _tls_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()


def _connect(
    account: SmtpAccount,
    step: StepCallback = _no_step,
    addresses: Addresses | None = None,
    deadline: float | None = None,
) -> _Connection:
    """Connect, EHLO, STARTTLS when offered, AUTH when configured, all before `deadline`. Raises _Failure."""
    where = f"{account.host}:{account.port}"
    smtp = _Client(
        account.host,
        tls_context=tls_context() if account.use_tls else None,
        timeout=account.timeout if deadline is None else max(0.1, min(account.timeout, deadline - time.monotonic())),
        addresses=addresses,
    )
    smtp.deadline = deadline
    encrypted = account.use_tls
    current = "connect"
    try:
        code, banner = smtp.connect(account.host, account.port)
        if code != 220:
            detail = f"server refused the connection: {_reply(code, banner)} ({where})"
            raise _fail(_failure_outcome(code), code, detail)
        mode = "implicit TLS" if account.use_tls else "plain"
        step("connect", True, f"connected to {where} ({mode}): {_reply(code, banner)}")

        current = "ehlo"
        _ehlo(smtp)
        step("ehlo", True, f"extensions: {', '.join(sorted(smtp.esmtp_features)) or '(none)'}")

        if not account.use_tls:
            current = "starttls"
            if smtp.has_extn("starttls"):
                code, reply = smtp.starttls(context=tls_context())
                if code != 220:
                    raise _fail(_failure_outcome(code), code, f"STARTTLS refused: {_reply(code, reply)} ({where})")
                encrypted = True
                _ehlo(smtp)
                version = smtp.sock.version() if isinstance(smtp.sock, ssl.SSLSocket) else "?"
                step("starttls", True, f"TLS established ({version}), certificate verified")
            else:
                clear_auth_refused = account.wants_auth and not is_loopback_host(account.host)
                step(
                    "starttls",
                    not clear_auth_refused,
                    "server does not offer STARTTLS; the connection is not encrypted",
                )

        current = "auth"
        if account.wants_auth:
            if not encrypted and not is_loopback_host(account.host):
                raise _fail(
                    Outcome.ERROR,
                    None,
                    "server offers no STARTTLS; refusing to send credentials in clear text",
                )
            assert account.user is not None and account.password is not None
            detail = _login(smtp, account.user, account.password)
            step("auth", True, detail)
        else:
            step("auth", True, "skipped: no credentials configured")
    except _Failure as failure:
        smtp.close()
        step(current, False, failure.result.detail)
        raise
    except smtplib.SMTPResponseException as exc:  # e.g. SMTPHeloError
        smtp.close()
        detail = f"{current.upper()} failed: {_reply(exc.smtp_code, exc.smtp_error)} ({where})"
        step(current, False, detail)
        raise _fail(_failure_outcome(exc.smtp_code), exc.smtp_code, detail) from None
    except HostRefused as exc:  # the SSRF guard: retrying will not make the address acceptable
        smtp.close()
        detail = f"{exc} ({current}, {where})"
        step(current, False, detail)
        raise _fail(Outcome.ERROR, None, detail) from None
    except (OSError, ValueError, OverflowError) as exc:  # network, TLS, DNS, disconnects (SMTPException is an OSError)
        smtp.close()
        detail = f"{_describe(exc)} ({current}, {where})"
        step(current, False, detail)
        raise _fail(Outcome.DEFERRED, None, detail) from None
    return _Connection(account=account, smtp=smtp, encrypted=encrypted)


def _ehlo(smtp: _Client) -> None:
    code, reply = smtp.ehlo()
    if code == 250:
        return
    code, reply = smtp.helo()
    if code != 250:
        raise smtplib.SMTPHeloError(code, reply)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _login(smtp: _Client, user: str, password: str) -> str:
    """One AUTH attempt, PLAIN (RFC 4616) or else LOGIN, with UTF-8 credentials; no second guess with
    another mechanism (servers count failures). smtplib's own login() would try every mechanism in turn
    and cannot encode a non-ASCII password."""
    if not smtp.has_extn("auth"):
        raise _fail(Outcome.ERROR, None, "server does not offer AUTH (credentials are configured)")
    offered = smtp.esmtp_features["auth"].upper().split()
    if "PLAIN" in offered:
        mechanism = "PLAIN"
        code, reply = smtp.docmd("AUTH", "PLAIN " + _b64(f"\0{user}\0{password}"))
    elif "LOGIN" in offered:
        mechanism = "LOGIN"
        code, reply = smtp.docmd("AUTH", "LOGIN " + _b64(user))
        if code == 334:
            code, reply = smtp.docmd(_b64(password))
    else:
        raise _fail(
            Outcome.ERROR,
            None,
            f"no supported AUTH mechanism (server offers {' '.join(offered) or 'none'}; PLAIN or LOGIN needed)",
        )
    if code not in (235, 503):  # 503: already authenticated
        detail = _scrub(f"authentication failed: {_reply(code, reply)}", password)
        raise _fail(_failure_outcome(code), code, detail)
    return f"authenticated as {user} ({mechanism}): {_reply(code, reply)}"


# --------------------------------------------------------------------------- message preparation


@dataclass
class _Prepared:
    envelope: Envelope
    message: EmailMessage
    data: bytes | None  # serialized with policy.SMTP; None when SMTPUTF8 is needed
    needs_utf8: bool


def _serialize(message: EmailMessage, *, utf8: bool) -> bytes:
    if "Bcc" in message or "Resent-Bcc" in message:
        message = _without_bcc(message)
    return message.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)


def _without_bcc(message: EmailMessage) -> EmailMessage:
    clone = copy.copy(message)
    del clone["Bcc"]  # __delitem__ builds a new header list: the original keeps its own
    del clone["Resent-Bcc"]
    return clone


def _prepare(message: EmailMessage, envelope: Envelope) -> _Prepared | SendResult:
    if not envelope.recipients:
        return SendResult(Outcome.ERROR, None, "no recipients")
    addresses = [envelope.sender, *envelope.recipients]
    needs_utf8 = not all(a.isascii() for a in addresses)
    data: bytes | None = None
    if not needs_utf8:
        try:
            data = _serialize(message, utf8=False)
        except (ValueError, UnicodeError, MessageError):
            needs_utf8 = True  # e.g. a non-ASCII local part in a header
    return _Prepared(envelope=envelope, message=message, data=data, needs_utf8=needs_utf8)


# --------------------------------------------------------------------------- the pool


class SmtpPool:
    """One SMTP connection per account for the life of the pool (one sender batch); reused across that
    account's messages, reopened if the server dropped it. Not thread-safe; one pool per batch."""

    def __init__(self, addresses: Addresses | None = None) -> None:
        self._addresses = addresses
        self._connections: dict[str, _Connection] = {}
        self._deadline: float | None = None
        self.connections_opened = 0  # connections established (TCP + greeting) so far

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """QUIT every connection, ignoring errors."""
        connections, self._connections = self._connections, {}
        for connection in connections.values():
            connection.close(polite=True)

    def send(
        self,
        account_key: str,
        account: SmtpAccount,
        message: EmailMessage,
        envelope: Envelope,
        *,
        deadline: float | None = None,
    ) -> SendResult:
        """One message; `deadline` (time.monotonic()) bounds the whole attempt, connecting included."""
        self._deadline = deadline
        result = self._send(account_key, account, message, envelope)
        scrubbed = _scrub(result.detail, account.password)
        return result if scrubbed == result.detail else SendResult(result.outcome, result.code, scrubbed)

    # -- internals

    def _send(self, account_key: str, account: SmtpAccount, message: EmailMessage, envelope: Envelope) -> SendResult:
        prepared = _prepare(message, envelope)
        if isinstance(prepared, SendResult):
            return prepared
        connection = self._connections.get(account_key)
        if connection is not None and (connection.account != account or connection.broken):
            self._discard(account_key, polite=not connection.broken)
            connection = None
        reused = connection is not None
        if connection is None:
            try:
                connection = self._open(account_key, account)
            except _Failure as failure:
                return failure.result
        try:
            return self._guarded_transaction(account_key, connection, prepared)
        except _Failure as failure:
            if not (reused and failure.dead_before_accept):
                return failure.result
            log.info(
                "smtp: pooled connection for %s was dead (%s); reconnecting",
                account_key,
                _scrub(failure.result.detail, account.password),
            )
        try:
            connection = self._open(account_key, account)
            return self._guarded_transaction(account_key, connection, prepared)
        except _Failure as failure:
            return failure.result

    def _guarded_transaction(self, account_key: str, conn: _Connection, prepared: _Prepared) -> SendResult:
        conn.smtp.deadline = self._deadline
        try:
            return self._transaction(account_key, conn, prepared)
        except _Failure:
            raise
        except (ValueError, UnicodeError) as exc:  # e.g. smtplib refusing an address it cannot encode
            conn.broken = True
            self._discard(account_key)
            return SendResult(Outcome.ERROR, None, f"the message cannot be sent: {exc}")
        except BaseException:  # a bug: do not leave a connection in an unknown state in the pool
            conn.broken = True
            self._discard(account_key)
            raise

    def _open(self, account_key: str, account: SmtpAccount) -> _Connection:
        def count(name: str, ok: bool, detail: str) -> None:
            if name == "connect" and ok:
                self.connections_opened += 1

        connection = _connect(account, count, self._addresses, self._deadline)
        self._connections[account_key] = connection
        log.debug("smtp: opened connection for %s to %s:%s", account_key, account.host, account.port)
        return connection

    def _discard(self, account_key: str, *, polite: bool = False) -> None:
        connection = self._connections.pop(account_key, None)
        if connection is not None:
            connection.close(polite=polite)

    def _transaction(self, account_key: str, conn: _Connection, prepared: _Prepared) -> SendResult:
        """MAIL, RCPT..., DATA on an open connection. Raises _Failure when the connection broke."""
        smtp = conn.smtp
        envelope = prepared.envelope
        where = f"{conn.account.host}:{conn.account.port}"

        # -- decide the serialization and MAIL parameters (nothing sent yet)
        options: list[str] = []
        data = prepared.data
        try:
            if prepared.needs_utf8:
                if not smtp.has_extn("smtputf8"):
                    return SendResult(
                        Outcome.ERROR,
                        None,
                        "the message needs SMTPUTF8 (non-ASCII address) but the server does not offer it",
                    )
                data = _serialize(prepared.message, utf8=True)
                options.append("SMTPUTF8")
        except (ValueError, UnicodeError, MessageError) as exc:
            return SendResult(Outcome.ERROR, None, f"the message cannot be serialized: {exc}")
        assert data is not None
        if not data.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if smtp.has_extn("size"):
            limit = smtp.esmtp_features.get("size", "").strip()
            if limit.isdigit() and int(limit) > 0 and len(data) > int(limit):
                return SendResult(
                    Outcome.ERROR,
                    552,
                    f"message size {len(data)} exceeds the server's limit of {limit} bytes",
                )
            options.append(f"SIZE={len(data)}")

        stage = "MAIL FROM"
        try:
            code, reply = smtp.mail(envelope.sender, options)
            if code == 421:
                raise self._broken(account_key, conn, code, f"{stage}: {_reply(code, reply)}", True)
            if not 200 <= code < 300:
                self._rset(account_key, conn)
                return SendResult(_failure_outcome(code), code, f"{stage} rejected: {_reply(code, reply)}")

            stage = "RCPT TO"
            refused: list[tuple[str, int, str]] = []
            for recipient in envelope.recipients:
                code, reply = smtp.rcpt(recipient)
                if code == 421:
                    raise self._broken(account_key, conn, code, f"{stage}: {_reply(code, reply)}")
                if not 200 <= code < 300:
                    refused.append((recipient, code, _reply(code, reply)))
            refused_text = "; ".join(f"<{r}>: {text}" for r, _, text in refused)
            if len(refused) == len(envelope.recipients):
                self._rset(account_key, conn)
                permanent = [c for _, c, _ in refused if 500 <= c < 600]
                if len(permanent) == len(refused):
                    return SendResult(Outcome.ERROR, permanent[0], f"all recipients refused: {refused_text}")
                temporary = next(c for _, c, _ in refused if not 500 <= c < 600)
                return SendResult(Outcome.DEFERRED, temporary, f"all recipients refused: {refused_text}")

            stage = "DATA"
            try:
                code, reply = smtp.data(data)
            except smtplib.SMTPDataError as exc:  # the DATA command itself was not answered with 354
                if exc.smtp_code == 421:
                    raise self._broken(account_key, conn, 421, f"{stage}: {_reply(421, exc.smtp_error)}") from None
                self._rset(account_key, conn)
                return SendResult(
                    _failure_outcome(exc.smtp_code),
                    exc.smtp_code,
                    f"DATA rejected: {_reply(exc.smtp_code, exc.smtp_error)}",
                )
            if code == 421:
                raise self._broken(account_key, conn, code, f"end of DATA: {_reply(code, reply)}")
            if not 200 <= code < 300:
                self._rset(account_key, conn)
                return SendResult(_failure_outcome(code), code, f"message rejected: {_reply(code, reply)}")
        except OSError as exc:  # socket errors, timeouts, SMTPServerDisconnected (an OSError too)
            detail = f"{_describe(exc)} ({stage}, {where})"
            raise self._broken(account_key, conn, None, detail, stage == "MAIL FROM") from None

        conn.messages += 1
        detail = _reply(code, reply)
        if refused:
            detail += f"; refused recipients: {refused_text}"
        return SendResult(Outcome.SENT, code, detail)

    def _broken(
        self, account_key: str, conn: _Connection, code: int | None, detail: str, before_accept: bool = False
    ) -> _Failure:
        conn.broken = True
        if self._connections.get(account_key) is conn:
            self._discard(account_key)
        else:
            conn.close(polite=False)
        return _fail(Outcome.DEFERRED, code, detail, dead_before_accept=before_accept)

    def _rset(self, account_key: str, conn: _Connection) -> None:
        """Reset the transaction after a refusal, so the pooled connection stays usable."""
        try:
            code, _ = conn.smtp.rset()
        except OSError:
            code = -1
        if code != 250:
            conn.broken = True
            self._discard(account_key)


def probe(account: SmtpAccount, addresses: Addresses | None = None) -> list[tuple[str, bool, str]]:
    """For `gmp test-smtp`: connect, EHLO, STARTTLS (if applicable), AUTH — no mail sent.

    Returns the steps as (name, ok, detail); the steps stop at the first failure. Step names:
    ``connect`` (includes the implicit TLS handshake), ``ehlo``, ``starttls`` (only when
    ``use_tls`` is false), ``auth``.
    """
    steps: list[tuple[str, bool, str]] = []

    def record(name: str, ok: bool, detail: str) -> None:
        steps.append((name, ok, _scrub(detail, account.password)))

    try:
        connection = _connect(account, record, addresses)
    except _Failure:
        return steps
    connection.close(polite=True)
    return steps
