"""Fixtures of the client and CLI tests: one local stack per test module, a scripted HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.stack import LocalStack, local_stack
from tests.http_servers import QuietHandler, serving
from tests.smtp_servers import CertAuthority

SENDERS = 2  # make run's default: concurrent sender invocations, as Lambda would run them


@pytest.fixture(scope="module")
def stack(smtp_certs: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local stack (`make run`'s runner) as a subprocess, shared by the tests of one module. It
    trusts the SMTP sinks' CA: `gmp test-smtp` has the proxy, not the CLI, talk to the sink."""
    ca_bundle = smtp_certs.write_ca_bundle(tmp_path_factory.mktemp("stack-ca") / "ca.pem")
    with local_stack({"SSL_CERT_FILE": str(ca_bundle)}, senders=SENDERS) as running:
        yield running


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ScriptedServer:
    """An HTTP server on 127.0.0.1 answering from a script: `answers` (status, JSON body or text, headers)
    in order, then `default`. Every request is recorded."""

    url: str = ""
    answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, Any, dict[str, str]] = (200, {"ok": True}, {})
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *answers: tuple[int, Any] | tuple[int, Any, dict[str, str]]) -> None:
        with self.lock:
            for answer in answers:
                status, body, *rest = answer
                self.answers.append((status, body, rest[0] if rest else {}))

    def next_answer(self) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            return self.answers.pop(0) if self.answers else self.default


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    server_state = ScriptedServer()

    class Handler(QuietHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            body = self.rfile.read(length) if length else b""
            with server_state.lock:
                server_state.requests.append(
                    Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status, payload, headers = server_state.next_answer()
            if isinstance(payload, str | bytes):
                raw = payload.encode() if isinstance(payload, str) else payload
                content_type = "text/html"
            else:
                raw = json.dumps(payload).encode()
                content_type = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_DELETE = _handle

    with serving(Handler) as base_url:
        server_state.url = base_url
        yield server_state


@pytest.fixture
def fake_proxy() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server
