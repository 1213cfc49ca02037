"""One guarded HTTP client for every request the proxy makes on a client's behalf (delivery reports; meant
for the attachment fetcher too): the SSRF guard applied at connect time.

* The name is resolved **once** and every address checked by `mailproxy.logic.ssrf.vetted_addresses`;
  the connection goes to one of those addresses, never to a second resolution (no DNS rebinding window).
  TLS still verifies the certificate against the name.
* **No redirects** are followed: a 3xx is returned as it is (callers treat it as a failure), so a request
  and its `Authorization` never go anywhere the check did not see.
* **https only in aws mode**; in local mode `http://` and loopback/private addresses work as for SMTP.
* Header values must be printable ASCII: a stored credential with a line break or a non-ASCII character is
  refused here with the header's name, never its value (`http.client` would echo it in its error).
* One deadline for the whole exchange (connect, send, every read), and a cap on the body read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mailproxy.logic.ssrf import Resolver, UnresolvableHost, normalize_host, vetted_addresses

__all__ = ["HttpAnswer", "HttpPolicy", "HttpRefused", "HttpUnavailable", "is_printable_ascii"]


class HttpRefused(ValueError):
    """The request is refused by policy (scheme, address, header); retrying will not help. The message is
    safe to log and store: it names the host or the header, never a credential."""


class HttpUnavailable(OSError):
    """The server could not be reached or did not answer in time (temporary). Safe to log."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400


def is_printable_ascii(value: str) -> bool:
    return all(" " <= ch <= "~" for ch in value)


@dataclass(frozen=True)
class HttpPolicy:
    """`mode` and `allowlist` as for the SSRF guard (`GMP_MODE`, `GMP_SMTP_HOST_ALLOWLIST`)."""

    mode: str = "local"
    allowlist: frozenset[str] = field(default_factory=frozenset)
    resolve: Resolver | None = None  # tests may give a fake resolver; default socket.getaddrinfo
    user_agent: str = "genro-mail-proxy-serverless"

    def allowing(self, host: str) -> HttpPolicy:
        """The same policy with `host` allowed whatever it resolves to (an endpoint the operator set)."""
        return HttpPolicy(self.mode, self.allowlist | {normalize_host(host)}, self.resolve, self.user_agent)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
        max_bytes: int = 1 << 20,
    ) -> HttpAnswer:
        """Send one request and read at most `max_bytes + 1` bytes of the answer (callers compare with
        their cap). Raises `HttpRefused` or `HttpUnavailable`; any HTTP status is an answer."""
        deadline = time.monotonic() + timeout
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise HttpRefused("URL is not http(s)")
        if self.mode == "aws" and scheme != "https":
            raise HttpRefused(f"URL must be https in aws mode (host {parts.hostname!r})")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise HttpRefused("URL has a bad port") from None
        all_headers = {"User-Agent": self.user_agent, **(headers or {})}
        for name, value in all_headers.items():
            if not is_printable_ascii(name) or not is_printable_ascii(value):
                raise HttpRefused(f"{name} header holds a line break or a character that is not printable ASCII")
        try:
            infos = vetted_addresses(
                parts.hostname, port, mode=self.mode, allowlist=self.allowlist, resolve=self.resolve
            )
        except UnresolvableHost as exc:
            raise HttpUnavailable(str(exc)) from None
        except ValueError as exc:
            raise HttpRefused(str(exc)) from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = _connection(scheme, parts.hostname, port, infos, deadline)
        try:
            try:
                connection.request(method, path, body=body, headers=all_headers)
                _remaining(deadline, connection)
                answer = connection.getresponse()
                chunks: list[bytes] = []
                size = 0
                while size <= max_bytes:
                    _remaining(deadline, connection)
                    chunk = answer.read(min(65536, max_bytes + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise HttpUnavailable(f"{parts.hostname}: {_reason(exc)}") from None
            return HttpAnswer(answer.status, b"".join(chunks), {k.lower(): v for k, v in answer.getheaders()})
        finally:
            connection.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _remaining(deadline: float, connection: http.client.HTTPConnection) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    if connection.sock is not None:
        connection.sock.settimeout(left)


def _connect(infos: list[tuple[object, ...]], deadline: float) -> socket.socket:
    """A socket connected to one of the vetted addresses, tried in order."""
    last: OSError | None = None
    for family, type_, proto, _, sockaddr in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, type_, proto)  # type: ignore[arg-type]
        sock.settimeout(left)
        try:
            sock.connect(sockaddr)  # type: ignore[arg-type]
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise HttpUnavailable(f"connection failed: {_reason(last) if last else 'timed out'}")


class _VettedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, infos: list[tuple[object, ...]], deadline: float) -> None:
        super().__init__(host, port, timeout=max(0.01, deadline - time.monotonic()))
        self._infos = infos
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = _connect(self._infos, self._deadline)


class _VettedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, infos: list[tuple[object, ...]], deadline: float) -> None:
        super().__init__(
            host, port, timeout=max(0.01, deadline - time.monotonic()), context=ssl.create_default_context()
        )
        self._infos = infos
        self._deadline = deadline

    def connect(self) -> None:
        raw = _connect(self._infos, self._deadline)
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
        except (OSError, ssl.SSLError):
            raw.close()
            raise


def _connection(
    scheme: str, host: str, port: int, infos: list[tuple[object, ...]], deadline: float
) -> http.client.HTTPConnection:
    if scheme == "https":
        return _VettedHTTPSConnection(host, port, infos, deadline)
    return _VettedHTTPConnection(host, port, infos, deadline)
