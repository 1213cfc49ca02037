"""The connection to an SMTP server: ``smtplib.SMTP`` with implicit TLS, connecting only to vetted
addresses, and every reply bounded in lines, bytes and time (docs/reliability.md, "Faults of the world")."""

from __future__ import annotations

import functools
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from typing_extensions import Buffer

from mailproxy.dal.records import StoredAccount
from mailproxy.logic.smtp.errors import DeadlinePassed, ReplyTooLong
from mailproxy.models import DEFAULT_SMTP_TIMEOUT, IMPLICIT_TLS_PORT

Addresses = Callable[[str, int], list[tuple[Any, ...]]]  # host, port -> getaddrinfo entries to connect to

MAX_LINE = 8192  # smtplib's own limit on one reply line (RFC 5321 says 512)
MAX_REPLY_LINES = 100  # a real EHLO answer has ~15; an endless `250-` reply must not hold the sender
MAX_REPLY_BYTES = 65_536
QUIT_TIMEOUT = 5.0  # cap on the polite QUIT when closing, whatever the account's timeout
IMPLICIT_TLS_PORTS_VARIABLE = "GMP_SMTP_IMPLICIT_TLS_PORTS"
DEFAULT_IMPLICIT_TLS_PORTS = frozenset({IMPLICIT_TLS_PORT})


class TlsMode(Enum):
    IMPLICIT = "implicit TLS"
    STARTTLS_REQUIRED = "STARTTLS required"
    STARTTLS_WHEN_OFFERED = "STARTTLS when offered"


def tls_mode(use_tls: bool | None, port: int, implicit_ports: frozenset[int] = DEFAULT_IMPLICIT_TLS_PORTS) -> TlsMode:
    """The original's rule by port (UPSTREAM-API.md §6), with the seed's `false`: true on an implicit-TLS
    port (465) is TLS from the first byte, true elsewhere is STARTTLS that must succeed; false is STARTTLS
    whenever the server offers it; null lets the port decide (implicit on 465, else as false)."""
    if use_tls is None:
        use_tls = port in implicit_ports
    if not use_tls:
        return TlsMode.STARTTLS_WHEN_OFFERED
    return TlsMode.IMPLICIT if port in implicit_ports else TlsMode.STARTTLS_REQUIRED


def implicit_tls_ports() -> frozenset[int]:
    """Ports where `use_tls` true means implicit TLS: 465, or the list GMP_SMTP_IMPLICIT_TLS_PORTS names
    (comma-separated; for a provider with implicit TLS on another port). Read at each connection."""
    raw = os.environ.get(IMPLICIT_TLS_PORTS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_IMPLICIT_TLS_PORTS
    ports = set()
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry.isdigit() or not 0 < int(entry) < 65536:
            raise ValueError(f"{IMPLICIT_TLS_PORTS_VARIABLE}: {entry!r} is not a port number")
        ports.add(int(entry))
    return frozenset(ports)


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    use_tls: bool | None
    timeout: float = DEFAULT_SMTP_TIMEOUT

    @classmethod
    def of(cls, stored: StoredAccount, password: str | None, *, max_timeout: float) -> SmtpAccount:
        """A stored account as the sender and the probe use it. Its timeout is capped: an account stored
        before the cap existed must not wait longer than the invocation can (docs/design.md)."""
        return cls(
            host=stored.host,
            port=stored.port,
            user=stored.user,
            password=password,
            use_tls=stored.use_tls,
            timeout=min(stored.timeout, max_timeout),
        )

    @property
    def tls_mode(self) -> TlsMode:
        return tls_mode(self.use_tls, self.port, implicit_tls_ports())

    @property
    def wants_auth(self) -> bool:
        return bool(self.user) and bool(self.password)


@functools.cache
def local_hostname() -> str:
    """The EHLO name, computed once (smtplib would do two lookups per connection)."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


def tls_context() -> ssl.SSLContext:
    """The verifying client context for the trust store the environment names now (SSL_CERT_FILE /
    SSL_CERT_DIR are read at each connection), built once per store: loading a store costs ~20 ms."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _tls_context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()


@dataclass
class ReplyLines:
    """One server reply as its lines arrive, within MAX_LINE, MAX_REPLY_LINES and MAX_REPLY_BYTES."""

    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    code: int = -1

    def add(self, line: bytes) -> bool:
        """Take the next line (as read, with its CRLF); True once the reply is complete: its last line
        (no ``-`` after the code) or a line without a code (-1). Raises ReplyTooLong past a cap."""
        self.size += len(line)
        if len(line) > MAX_LINE or len(self.lines) >= MAX_REPLY_LINES or self.size > MAX_REPLY_BYTES:
            raise ReplyTooLong(f"server reply longer than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes")
        self.lines.append(line[4:].strip(b" \t\r\n"))
        try:
            self.code = int(line[:3])
        except ValueError:
            self.code = -1
            return True
        return line[3:4] != b"-"

    @property
    def text(self) -> bytes:
        return b"\n".join(self.lines)


class Client(smtplib.SMTP):
    """smtplib.SMTP that can do implicit TLS itself, closes the raw socket if the handshake fails,
    connects only to the addresses `addresses` vetted (when given), so the name is resolved once, and
    bounds every reply in lines, bytes and time: each read waits at most until `deadline` (monotonic)."""

    def __init__(
        self, host: str, *, tls_context: ssl.SSLContext | None, timeout: float, addresses: Addresses | None = None
    ) -> None:
        self._implicit_tls = tls_context
        self._addresses = addresses
        self.deadline: float | None = None
        super().__init__(local_hostname=local_hostname(), timeout=timeout if timeout > 0 else DEFAULT_SMTP_TIMEOUT)
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
        if self.file is None:
            assert self.sock is not None
            self.file = self.sock.makefile("rb")
        reply = ReplyLines()
        complete = False
        while not complete:
            line = self._read_line()
            try:
                complete = reply.add(line)
            except ReplyTooLong:
                self.close()
                raise
        return reply.code, reply.text

    def _read_line(self) -> bytes:
        """One line of a reply, waiting at most what the deadline leaves; a closed or failed read closes."""
        assert self.file is not None
        wait = self._time_left()
        if self.sock is not None:
            self.sock.settimeout(wait)
        try:
            line: bytes = self.file.readline(MAX_LINE + 1)
        except OSError as exc:
            self.close()
            if isinstance(exc, TimeoutError) and wait < self.timeout:  # the deadline, not the server, cut it
                raise DeadlinePassed("the SMTP attempt ran past its deadline") from None
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}") from None
        if not line:
            self.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return line

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


@dataclass
class Connection:
    """An open, greeted (and, when configured, authenticated) connection of one account."""

    account: SmtpAccount
    smtp: Client
    broken: bool = False

    def drop(self) -> None:
        """Unusable from now on (the server broke off, or the transaction is in an unknown state): closed
        at once, without QUIT."""
        self.broken = True
        self.smtp.close()

    def close(self, *, polite: bool) -> None:
        try:
            if polite and not self.broken and self.smtp.sock is not None:
                self.smtp.sock.settimeout(min(self.account.timeout, QUIT_TIMEOUT))
                self.smtp.quit()
        except Exception:  # noqa: S110 - QUIT is a courtesy
            pass
        finally:
            self.smtp.close()
