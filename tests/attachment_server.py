"""A real HTTP server serving attachments: GET by URL path (http_url mode) and POST {"storage_path"}
(a tenant's attachment endpoint), with required auth, scripted failures and a hit count."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.http_servers import QuietHandler, serving


@dataclass
class AttachmentServer:
    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # URL path or storage_path -> content
    required_authorization: str | None = None
    failures: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    hits: Counter[str] = field(default_factory=Counter)
    authorizations: list[str | None] = field(default_factory=list)  # the Authorization header of each request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, key: str, authorization: str | None) -> tuple[int, bytes]:
        with self.lock:
            self.hits[key] += 1
            self.authorizations.append(authorization)
            if self.required_authorization is not None and authorization != self.required_authorization:
                return 401, b"unauthorized"
            pending = self.failures.get(key)
            if pending:
                return pending.pop(0), b"failure"
        if key not in self.files:
            return 404, b"not found"
        return 200, self.files[key]


@contextmanager
def attachment_server() -> Iterator[AttachmentServer]:
    server_state = AttachmentServer()

    class Handler(QuietHandler):
        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(*server_state.answer(self.path, self.headers.get("Authorization")))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                key = json.loads(raw)["storage_path"]
            except (ValueError, KeyError, TypeError):
                self._reply(400, b"bad request")
                return
            self._reply(*server_state.answer(key, self.headers.get("Authorization")))

    with serving(Handler) as base_url:
        server_state.base_url = base_url
        yield server_state
