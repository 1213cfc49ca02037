"""The SMTP conversation: the handshake (greeting, EHLO, STARTTLS, AUTH) and one MAIL / RCPT / DATA
transaction, each a named step that ends in a SendResult or raises Failure when the connection is lost."""

from __future__ import annotations

import base64
import ipaddress
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.errors import MessageError

from mailproxy.logic.smtp.errors import (
    Failure,
    HostRefused,
    Outcome,
    SendResult,
    describe,
    fail,
    failure_outcome,
    is_permanent,
    is_positive,
    reply_text,
    scrub,
)
from mailproxy.logic.smtp.message import Prepared, serialize
from mailproxy.logic.smtp.transport import Addresses, Client, Connection, SmtpAccount, TlsMode, tls_context

StepCallback = Callable[[str, bool, str], None]  # step name, ok, detail: the probe's report


def no_step(name: str, ok: bool, detail: str) -> None:
    return None


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


# --------------------------------------------------------------------------- the handshake


def connect(
    account: SmtpAccount,
    step: StepCallback = no_step,
    addresses: Addresses | None = None,
    deadline: float | None = None,
) -> Connection:
    """Connect, EHLO, STARTTLS when offered, AUTH when configured, all before `deadline`. Raises Failure."""
    where = f"{account.host}:{account.port}"
    try:
        mode = account.tls_mode
    except ValueError as exc:  # a bad GMP_SMTP_IMPLICIT_TLS_PORTS: a configuration fault, retried once fixed
        step("connect", False, str(exc))
        raise fail(Outcome.DEFERRED, None, str(exc)) from None
    smtp = Client(
        account.host,
        tls_context=tls_context() if mode is TlsMode.IMPLICIT else None,
        timeout=account.timeout if deadline is None else max(0.1, min(account.timeout, deadline - time.monotonic())),
        addresses=addresses,
    )
    smtp.deadline = deadline
    handshake = _Handshake(account, mode, smtp, step, where)
    try:
        handshake.run()
    except Failure as failure:
        smtp.close()
        step(handshake.current, False, failure.result.detail)
        raise
    except smtplib.SMTPResponseException as exc:  # e.g. SMTPHeloError
        smtp.close()
        detail = f"{handshake.current.upper()} failed: {reply_text(exc.smtp_code, exc.smtp_error)} ({where})"
        step(handshake.current, False, detail)
        raise fail(failure_outcome(exc.smtp_code), exc.smtp_code, detail) from None
    except HostRefused as exc:  # the SSRF guard: retrying will not make the address acceptable
        smtp.close()
        detail = f"{exc} ({handshake.current}, {where})"
        step(handshake.current, False, detail)
        raise fail(Outcome.ERROR, None, detail) from None
    except (OSError, ValueError, OverflowError) as exc:  # network, TLS, DNS, disconnects (SMTPException is an OSError)
        smtp.close()
        detail = f"{describe(exc)} ({handshake.current}, {where})"
        step(handshake.current, False, detail)
        raise fail(Outcome.DEFERRED, None, detail) from None
    return Connection(account=account, smtp=smtp)


class _Handshake:
    """The steps before a transaction, in order; `current` names the step under way (for a failure's text)."""

    def __init__(self, account: SmtpAccount, mode: TlsMode, smtp: Client, step: StepCallback, where: str) -> None:
        self.account = account
        self.mode = mode
        self.smtp = smtp
        self.step = step
        self.where = where
        self.current = "connect"
        self.encrypted = mode is TlsMode.IMPLICIT

    def run(self) -> None:
        self._greeting()
        self._ehlo()
        if self.mode is not TlsMode.IMPLICIT:
            self._starttls()
        self._auth()

    def _greeting(self) -> None:
        self.current = "connect"
        code, banner = self.smtp.connect(self.account.host, self.account.port)
        if code != 220:
            detail = f"server refused the connection: {reply_text(code, banner)} ({self.where})"
            raise fail(failure_outcome(code), code, detail)
        mode = "implicit TLS" if self.mode is TlsMode.IMPLICIT else "plain"
        self.step("connect", True, f"connected to {self.where} ({mode}): {reply_text(code, banner)}")

    def _ehlo(self) -> None:
        self.current = "ehlo"
        _ehlo_or_helo(self.smtp)
        self.step("ehlo", True, f"extensions: {', '.join(sorted(self.smtp.esmtp_features)) or '(none)'}")

    def _starttls(self) -> None:
        """STARTTLS whenever the server offers it, and then it must succeed: no fallback to plain text.
        With `use_tls` true (off the implicit-TLS port) a server that does not offer it is a permanent
        failure: the account asked for encryption, and retrying will not make the server offer it."""
        self.current = "starttls"
        if not self.smtp.has_extn("starttls"):
            if self.mode is TlsMode.STARTTLS_REQUIRED:
                raise fail(
                    Outcome.ERROR,
                    None,
                    f"STARTTLS required (use_tls is true on port {self.account.port}) but the server does not"
                    f" offer it ({self.where})",
                )
            clear_auth_refused = self.account.wants_auth and not is_loopback_host(self.account.host)
            self.step(
                "starttls", not clear_auth_refused, "server does not offer STARTTLS; the connection is not encrypted"
            )
            return
        code, reply = self.smtp.starttls(context=tls_context())
        if code != 220:
            raise fail(failure_outcome(code), code, f"STARTTLS refused: {reply_text(code, reply)} ({self.where})")
        self.encrypted = True
        _ehlo_or_helo(self.smtp)
        version = self.smtp.sock.version() if isinstance(self.smtp.sock, ssl.SSLSocket) else "?"
        self.step("starttls", True, f"TLS established ({version}), certificate verified")

    def _auth(self) -> None:
        """AUTH only when user and password are both set, and only encrypted, except towards a loopback host."""
        self.current = "auth"
        if not self.account.wants_auth:
            self.step("auth", True, "skipped: no credentials configured")
            return
        if not self.encrypted and not is_loopback_host(self.account.host):
            raise fail(Outcome.ERROR, None, "server offers no STARTTLS; refusing to send credentials in clear text")
        assert self.account.user is not None and self.account.password is not None
        self.step("auth", True, _login(self.smtp, self.account.user, self.account.password))


def _ehlo_or_helo(smtp: Client) -> None:
    code, reply = smtp.ehlo()
    if code == 250:
        return
    code, reply = smtp.helo()
    if code != 250:
        raise smtplib.SMTPHeloError(code, reply)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _login(smtp: Client, user: str, password: str) -> str:
    """One AUTH attempt, PLAIN (RFC 4616) or else LOGIN, with UTF-8 credentials; no second guess with
    another mechanism (servers count failures). smtplib's own login() would try every mechanism in turn
    and cannot encode a non-ASCII password."""
    if not smtp.has_extn("auth"):
        raise fail(Outcome.ERROR, None, "server does not offer AUTH (credentials are configured)")
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
        raise fail(
            Outcome.ERROR,
            None,
            f"no supported AUTH mechanism (server offers {' '.join(offered) or 'none'}; PLAIN or LOGIN needed)",
        )
    if code not in (235, 503):  # 503: already authenticated
        detail = scrub(f"authentication failed: {reply_text(code, reply)}", password)
        raise fail(failure_outcome(code), code, detail)
    return f"authenticated as {user} ({mechanism}): {reply_text(code, reply)}"


# --------------------------------------------------------------------------- the transaction

MAIL_FROM, RCPT_TO, DATA = "MAIL FROM", "RCPT TO", "DATA"


@dataclass(frozen=True)
class _Plan:
    data: bytes
    mail_options: list[str]


@dataclass(frozen=True)
class _Refusal:
    recipient: str
    code: int
    reply: str


def transaction(conn: Connection, prepared: Prepared) -> SendResult:
    """MAIL, RCPT..., DATA on an open connection. A refusal resets the transaction (RSET) so that the
    connection stays usable; a lost connection is dropped and raises Failure (deferred)."""
    plan = _plan(conn.smtp, prepared)
    if isinstance(plan, SendResult):
        return plan
    envelope = prepared.envelope
    with _on_the_wire(conn, MAIL_FROM):
        rejected = _mail_from(conn, envelope.sender, plan.mail_options)
    if rejected is not None:
        return rejected
    with _on_the_wire(conn, RCPT_TO):
        refused = _rcpt_to(conn, envelope.recipients)
        if len(refused) == len(envelope.recipients):
            _rset(conn)
            return _all_refused(refused)
    with _on_the_wire(conn, DATA):
        result = _data(conn, plan.data)
    if result.outcome is Outcome.SENT and refused:
        return SendResult(result.outcome, result.code, f"{result.detail}; refused recipients: {_listed(refused)}")
    return result


def _plan(smtp: Client, prepared: Prepared) -> _Plan | SendResult:
    """The serialization and the MAIL parameters, decided before anything is sent."""
    options: list[str] = []
    data = prepared.data
    if prepared.needs_utf8:
        if not smtp.has_extn("smtputf8"):
            return SendResult(
                Outcome.ERROR, None, "the message needs SMTPUTF8 (non-ASCII address) but the server does not offer it"
            )
        try:
            data = serialize(prepared.message, utf8=True)
        except (ValueError, UnicodeError, MessageError) as exc:
            return SendResult(Outcome.ERROR, None, f"the message cannot be serialized: {exc}")
        options.append("SMTPUTF8")
    assert data is not None
    if not data.isascii() and smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if smtp.has_extn("size"):
        limit = smtp.esmtp_features.get("size", "").strip()
        if limit.isdigit() and int(limit) > 0 and len(data) > int(limit):
            return SendResult(
                Outcome.ERROR, 552, f"message size {len(data)} exceeds the server's limit of {limit} bytes"
            )
        options.append(f"SIZE={len(data)}")
    return _Plan(data, options)


@contextmanager
def _on_the_wire(conn: Connection, stage: str) -> Iterator[None]:
    """A socket error, timeout or disconnect during `stage` loses the connection: deferred. Lost at MAIL,
    the first command, a pooled connection was already dead: the pool may reconnect and try once more."""
    try:
        yield
    except OSError as exc:  # socket errors, timeouts, SMTPServerDisconnected (an OSError too)
        detail = f"{describe(exc)} ({stage}, {conn.account.host}:{conn.account.port})"
        raise _lost(conn, None, detail, before_accept=stage == MAIL_FROM) from None


def _mail_from(conn: Connection, sender: str, options: list[str]) -> SendResult | None:
    code, reply = conn.smtp.mail(sender, options)
    if code == 421:
        raise _lost(conn, code, f"{MAIL_FROM}: {reply_text(code, reply)}", before_accept=True)
    if not is_positive(code):
        _rset(conn)
        return SendResult(failure_outcome(code), code, f"{MAIL_FROM} rejected: {reply_text(code, reply)}")
    return None


def _rcpt_to(conn: Connection, recipients: list[str]) -> list[_Refusal]:
    """Every recipient in turn; those the server refused (the others may still be sent to)."""
    refused: list[_Refusal] = []
    for recipient in recipients:
        code, reply = conn.smtp.rcpt(recipient)
        if code == 421:
            raise _lost(conn, code, f"{RCPT_TO}: {reply_text(code, reply)}")
        if not is_positive(code):
            refused.append(_Refusal(recipient, code, reply_text(code, reply)))
    return refused


def _all_refused(refused: list[_Refusal]) -> SendResult:
    """Error when every refusal is permanent (with the first code), else deferred (with the first temporary)."""
    detail = f"all recipients refused: {_listed(refused)}"
    permanent = [r.code for r in refused if is_permanent(r.code)]
    if len(permanent) == len(refused):
        return SendResult(Outcome.ERROR, permanent[0], detail)
    temporary = next(r.code for r in refused if not is_permanent(r.code))
    return SendResult(Outcome.DEFERRED, temporary, detail)


def _listed(refused: list[_Refusal]) -> str:
    return "; ".join(f"<{r.recipient}>: {r.reply}" for r in refused)


def _data(conn: Connection, data: bytes) -> SendResult:
    try:
        code, reply = conn.smtp.data(data)
    except smtplib.SMTPDataError as exc:  # the DATA command itself was not answered with 354
        if exc.smtp_code == 421:
            raise _lost(conn, 421, f"{DATA}: {reply_text(421, exc.smtp_error)}") from None
        _rset(conn)
        detail = f"DATA rejected: {reply_text(exc.smtp_code, exc.smtp_error)}"
        return SendResult(failure_outcome(exc.smtp_code), exc.smtp_code, detail)
    if code == 421:
        raise _lost(conn, code, f"end of DATA: {reply_text(code, reply)}")
    if not is_positive(code):
        _rset(conn)
        return SendResult(failure_outcome(code), code, f"message rejected: {reply_text(code, reply)}")
    return SendResult(Outcome.SENT, code, reply_text(code, reply))


def _lost(conn: Connection, code: int | None, detail: str, *, before_accept: bool = False) -> Failure:
    conn.drop()
    return fail(Outcome.DEFERRED, code, detail, dead_before_accept=before_accept)


def _rset(conn: Connection) -> None:
    """Reset the transaction after a refusal, so the connection stays usable; if even that fails, drop it."""
    try:
        code, _ = conn.smtp.rset()
    except OSError:
        code = -1
    if code != 250:
        conn.drop()
