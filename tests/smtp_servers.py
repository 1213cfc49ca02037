"""Real SMTP servers for tests: aiosmtpd sinks on 127.0.0.1, TLS certificates from trustme.

Usage::

    from tests.smtp_servers import CertAuthority, SmtpSink

    certs = CertAuthority()                         # throwaway CA + cert for 127.0.0.1/localhost/::1
    with SmtpSink("starttls", auth=("user", "secret"), certs=certs) as sink:
        # make the code under test trust the CA: SSL_CERT_FILE=<certs.write_ca_bundle(path)>
        sink.fail("RCPT", "451 4.7.1 try later")              # next RCPT answered 451 (times=1)
        ...                                                   # connect to sink.host:sink.port
        assert sink.messages[0].message["Subject"] == "hi"
        assert sink.connections == 1

Modes: ``plain`` (no TLS at all), ``starttls`` (STARTTLS offered; AUTH only after it, like real
submission servers), ``implicit_tls`` (TLS from the first byte). Everything the clients do is
recorded: ``commands`` (verb, connection, whether it came over TLS; AUTH arguments are never kept),
``auth_attempts``, ``messages`` (envelope + parsed message + auth user) and ``connections``.

Scripted failures (``fail`` / ``stall`` / ``drop``) apply to the next ``times`` occurrences of a
command: an SMTP verb (``EHLO``, ``STARTTLS``, ``AUTH``, ``MAIL``, ``RCPT``, ``DATA`` — the DATA
command itself, before 354 — ``RSET``, ``NOOP``, ``QUIT``), ``"EOM"`` (after the message content was
received, instead of the final 250) or ``"CONNECT"`` (instead of the 220 greeting). ``match``
restricts a fault to commands whose argument contains that text (e.g. one recipient).
``drop_connections()`` makes the server abort every open client connection, as a server restart or
an idle timeout would.
"""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from aiosmtpd.smtp import Envelope as SmtpdEnvelope
from aiosmtpd.smtp import Session as SmtpdSession

__all__ = [
    "AuthAttempt",
    "CertAuthority",
    "Command",
    "Fault",
    "Mode",
    "ReceivedMessage",
    "SinkFactory",
    "SmtpSink",
    "free_port",
]

Mode = Literal["plain", "starttls", "implicit_tls"]
SinkFactory = Callable[..., "SmtpSink"]  # the smtp_sink_factory fixture: make(mode, **SmtpSink kwargs)

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port with nothing listening on it (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CertAuthority:
    """A throwaway certificate authority (trustme) and one server certificate.

    The certificate is valid for 127.0.0.1, localhost and ::1 unless other identities are given.
    The system does not trust the CA: point ``SSL_CERT_FILE`` at ``write_ca_bundle(path)`` to trust it.
    """

    def __init__(self, *identities: str) -> None:
        self.ca = trustme.CA()
        self.identities = identities or (LOOPBACK, "localhost", "::1")
        self.server_cert = self.ca.issue_cert(*self.identities)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def write_ca_bundle(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM) to ``path``, e.g. for ``SSL_CERT_FILE``."""
        path = Path(path)
        path.write_bytes(self.ca_pem)
        return path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this CA (for tests that talk to a sink themselves)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@dataclass(frozen=True)
class Command:
    connection: int  # 1-based id of the client connection
    verb: str  # upper case: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, QUIT, ...
    arg: str | None  # always None for AUTH (its argument carries credentials)
    tls: bool  # whether the command arrived over TLS


@dataclass(frozen=True)
class AuthAttempt:
    connection: int
    mechanism: str
    login: str
    success: bool
    tls: bool


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the message as received (after dot-unstuffing), CRLF line ends
    message: EmailMessage  # ``data`` parsed with email.policy.default
    auth_user: str | None
    tls: bool
    connection: int
    mail_options: list[str]
    received_at: float  # time.monotonic() when the end of DATA arrived: spans of arrivals, rate limits


@dataclass
class Fault:
    """A scripted failure; see the module docstring. ``hits`` counts how often it fired."""

    command: str
    reply: str | None = None  # answer this instead of running the command
    stall: float = 0.0  # sleep this long first (then reply/drop, or proceed normally)
    drop: bool = False  # abort the connection without answering
    times: int | None = 1  # None: every time
    match: str | None = None  # only when the command's argument contains this (case-insensitive)
    hits: int = 0

    def _applies(self, command: str, arg: str | None) -> bool:
        if self.command != command or (self.times is not None and self.hits >= self.times):
            return False
        return self.match is None or self.match.lower() in (arg or "").lower()


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP, with every command recorded and subject to the sink's faults."""

    def __init__(self, handler: Any, *, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.connection_id = 0
        for verb, method in list(self._smtp_methods.items()):
            self._smtp_methods[verb] = self._wrap(verb, method)

    @property
    def is_tls(self) -> bool:
        if self._tls_protocol is not None:
            return True
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        new_connection = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        if new_connection:
            self.sink._register(self)

    def ensure_connection_id(self) -> int:
        """Connections are numbered 1, 2, ... in the order they first send something."""
        if not self.connection_id:
            self.connection_id = self.sink._new_connection_id()
        return self.connection_id

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._unregister(self)
        super().connection_lost(error)

    def abort(self) -> None:
        transport = cast(asyncio.WriteTransport | None, self.transport)
        if transport is not None:
            transport.abort()

    async def _handle_client(self) -> None:
        fault = self.sink._take_fault("CONNECT", None)
        if fault is not None:
            self.ensure_connection_id()
        if fault is not None and await self.apply_fault(fault):
            if self.transport is not None:  # replied instead of the greeting: hang up
                self.transport.close()
            return
        await super()._handle_client()

    async def apply_fault(self, fault: Fault) -> bool:
        """Run a fault; True when it replaced the command (replied or dropped)."""
        if fault.stall:
            await asyncio.sleep(fault.stall)
        if fault.drop:
            self.abort()
            return True
        if fault.reply is not None:
            await self.push(fault.reply)
            return True
        return False

    def _wrap(self, verb: str, method: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def command(arg: Any) -> None:
            self.sink._record(Command(self.ensure_connection_id(), verb, None if verb == "AUTH" else arg, self.is_tls))
            fault = self.sink._take_fault(verb, arg)
            if fault is not None and await self.apply_fault(fault):
                return
            await method(arg)

        return command


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: SmtpdSession, envelope: SmtpdEnvelope) -> str:
        smtp = cast(_SinkSMTP, server)
        rcpts = [str(r) for r in envelope.rcpt_tos]
        fault = self.sink._take_fault("EOM", " ".join([str(envelope.mail_from), *rcpts]))
        if fault is not None:
            if fault.stall:
                await asyncio.sleep(fault.stall)
            if fault.drop:
                smtp.abort()
                await asyncio.Event().wait()  # connection_lost cancels us
            if fault.reply is not None:
                return fault.reply
        data = bytes(envelope.original_content or b"")
        if envelope.smtp_utf8:  # headers are UTF-8 (RFC 6532)
            parsed = email.message_from_string(data.decode("utf-8", "surrogateescape"), policy=policy.default)
        else:
            parsed = email.message_from_bytes(data, policy=policy.default)
        auth_data = session.auth_data
        received = ReceivedMessage(
            mail_from=str(envelope.mail_from),
            rcpt_tos=rcpts,
            data=data,
            message=cast(EmailMessage, parsed),
            auth_user=auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None,
            tls=smtp.is_tls,
            connection=smtp.connection_id,
            mail_options=list(envelope.mail_options),
            received_at=time.monotonic(),
        )
        number = self.sink._store(received)
        return f"250 2.0.0 OK queued as sink-{number}"

    async def handle_exception(self, error: Exception) -> str:
        # e.g. a client rejecting our certificate mid-STARTTLS: keep it out of the logs, but on record
        self.sink._record_error(error)
        return f"500 Error: ({type(error).__name__}) {error}"

    def authenticate(
        self, server: SMTP, session: SmtpdSession, envelope: SmtpdEnvelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        smtp = cast(_SinkSMTP, server)
        expected = self.sink.auth
        ok = False
        login = ""
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            ok = expected is not None and (login, auth_data.password.decode("utf-8", "replace")) == expected
        self.sink._record_auth(AuthAttempt(smtp.connection_id, mechanism, login, ok, smtp.is_tls))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class _SinkController(Controller):
    def __init__(self, sink: SmtpSink, handler: Any, **kwargs: Any) -> None:
        self.sink = sink
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return _SinkSMTP(self.handler, sink=self.sink, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server | None, self.server)
        if self.port == 0 and server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])  # port 0: take the one bound
        super()._trigger_server()


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 (free port) recording what it receives. Start with ``start()``
    or ``with``; ``stop()`` ends it. Thread-safe to inspect from the test while clients talk to it.

    mode: ``plain`` | ``starttls`` | ``implicit_tls``.
    auth: ``(user, password)`` accepted by AUTH PLAIN/LOGIN (any other credentials get 535).
    auth_require_tls: AUTH only offered/accepted over TLS; default True for ``starttls`` (AUTH after
        STARTTLS only) and False otherwise (plain: loopback AUTH in clear; implicit TLS is TLS anyway).
    require_starttls: refuse MAIL etc. with 530 until STARTTLS (``starttls`` mode only).
    certs: the CertAuthority for TLS modes (a new one is made when omitted).
    smtp_kwargs: passed on to aiosmtpd's SMTP, e.g. ``auth_exclude_mechanism=["PLAIN"]``,
        ``data_size_limit=1000``, ``auth_required=True``.
    """

    def __init__(
        self,
        mode: Mode = "plain",
        *,
        auth: tuple[str, str] | None = None,
        certs: CertAuthority | None = None,
        auth_require_tls: bool | None = None,
        require_starttls: bool = False,
        host: str = LOOPBACK,
        port: int = 0,
        server_name: str = "sink.test",
        **smtp_kwargs: Any,
    ) -> None:
        if mode not in ("plain", "starttls", "implicit_tls"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode: Mode = mode
        self.auth = auth
        self.certs = certs if certs is not None or mode == "plain" else CertAuthority()
        self.auth_require_tls = (mode == "starttls") if auth_require_tls is None else auth_require_tls
        self.require_starttls = require_starttls
        self.host = host
        self.port = port
        self.server_name = server_name
        self.smtp_kwargs = smtp_kwargs
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._commands: list[Command] = []
        self._auth_attempts: list[AuthAttempt] = []
        self._errors: list[Exception] = []
        self._faults: list[Fault] = []
        self._active: set[_SinkSMTP] = set()
        self._peak_open = 0
        self._next_connection = 0
        self._controller: _SinkController | None = None

    # -- lifecycle

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("sink already started")
        handler = _SinkHandler(self)
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": self.server_name,
            "auth_require_tls": self.auth_require_tls,
            "authenticator": handler.authenticate,
            "ready_timeout": 10.0,
            **self.smtp_kwargs,
        }
        if self.mode == "starttls":
            assert self.certs is not None
            kwargs["tls_context"] = self.certs.server_context()
            kwargs["require_starttls"] = self.require_starttls
        elif self.mode == "implicit_tls":
            assert self.certs is not None
            kwargs["ssl_context"] = self.certs.server_context()
        controller = _SinkController(self, handler, **kwargs)
        controller.start()
        self.port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        """Close every client connection, then stop the server (idempotent)."""
        if self._controller is None:
            return
        self.drop_connections(timeout=2.0)
        controller, self._controller = self._controller, None
        controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the code under test needs

    @property
    def use_tls(self) -> bool:
        """The ``use_tls`` flag of an account for this sink (implicit TLS)."""
        return self.mode == "implicit_tls"

    def account(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``SmtpAccount(**sink.account())``: host, port, user, password,
        use_tls, timeout (5 s). Override any of them."""
        user, password = self.auth if self.auth is not None else (None, None)
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "use_tls": self.use_tls,
            "timeout": 5.0,
        }
        values.update(overrides)
        return values

    # -- scripted failures

    def fail(self, command: str, reply: str, *, times: int | None = 1, match: str | None = None) -> Fault:
        """Answer ``reply`` (e.g. ``"451 4.7.1 try later"``) to the next ``times`` ``command``s."""
        return self.add_fault(Fault(command.upper(), reply=reply, times=times, match=match))

    def stall(
        self,
        command: str,
        seconds: float,
        *,
        times: int | None = 1,
        match: str | None = None,
        reply: str | None = None,
    ) -> Fault:
        """Wait ``seconds`` before handling ``command`` (then answer ``reply`` or proceed normally)."""
        return self.add_fault(Fault(command.upper(), reply=reply, stall=seconds, times=times, match=match))

    def drop(self, command: str, *, times: int | None = 1, match: str | None = None) -> Fault:
        """Abort the connection instead of answering ``command`` (``"EOM"``: mid-DATA, after the content)."""
        return self.add_fault(Fault(command.upper(), drop=True, times=times, match=match))

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def drop_connections(self, timeout: float = 5.0) -> int:
        """Abort every open client connection now (server restart / idle timeout); returns how many.
        Returns once the server has closed them all."""
        controller = self._controller
        if controller is None:
            return 0

        async def abort_all() -> int:
            with self._lock:
                active = list(self._active)
            for protocol in active:
                protocol.abort()
            return len(active)

        count = asyncio.run_coroutine_threadsafe(abort_all(), controller.loop).result(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    break
            time.sleep(0.005)
        return count

    def reset(self) -> None:
        """Forget received messages, commands, auth attempts, connections and faults."""
        with self._lock:
            self._messages.clear()
            self._commands.clear()
            self._auth_attempts.clear()
            self._errors.clear()
            self._faults.clear()
            self._next_connection = 0
            self._peak_open = len(self._active)

    # -- records

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def commands(self) -> list[Command]:
        with self._lock:
            return list(self._commands)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._lock:
            return list(self._auth_attempts)

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised while serving clients (e.g. a failed TLS handshake: TLSSetupException)."""
        with self._lock:
            return list(self._errors)

    @property
    def connections(self) -> int:
        """Client connections that sent at least one command or met a CONNECT fault (the controller's
        own readiness probe and connections that never spoke are not counted)."""
        with self._lock:
            return self._next_connection

    @property
    def peak_open_connections(self) -> int:
        """The most client connections open at the same time so far (the controller's readiness probe, made
        at start, is one on its own)."""
        with self._lock:
            return self._peak_open

    def verbs(self, connection: int | None = None) -> list[str]:
        """The verbs received, in order (of one connection when given)."""
        return [c.verb for c in self.commands if connection is None or c.connection == connection]

    def saw(self, *verbs: str) -> bool:
        """Whether any of ``verbs`` was received at all."""
        wanted = {v.upper() for v in verbs}
        return any(c.verb in wanted for c in self.commands)

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; returns them (raises TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(messages)} of {count} messages arrived within {timeout}s")
            time.sleep(0.01)

    # -- called from the server thread

    def _register(self, protocol: _SinkSMTP) -> None:
        with self._lock:
            self._active.add(protocol)
            self._peak_open = max(self._peak_open, len(self._active))

    def _new_connection_id(self) -> int:
        with self._lock:
            self._next_connection += 1
            return self._next_connection

    def _unregister(self, protocol: _SinkSMTP) -> None:
        with self._lock:
            self._active.discard(protocol)

    def _record(self, command: Command) -> None:
        with self._lock:
            self._commands.append(command)

    def _record_error(self, error: Exception) -> None:
        with self._lock:
            self._errors.append(error)

    def _record_auth(self, attempt: AuthAttempt) -> None:
        with self._lock:
            self._auth_attempts.append(attempt)

    def _store(self, message: ReceivedMessage) -> int:
        with self._lock:
            self._messages.append(message)
            return len(self._messages)

    def _take_fault(self, command: str, arg: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault._applies(command, arg):
                    fault.hits += 1
                    return fault
        return None
