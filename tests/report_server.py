"""A real HTTP server standing in for the client application's delivery-report endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.http_servers import QuietHandler, serving


@dataclass
class ReceivedReport:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.raw)["delivery_report"]
        return items


@dataclass
class ReportEndpoint:
    url: str
    received: list[ReceivedReport] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then `default_status`
    default_status: int = 200
    reply: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    replies: list[dict[str, Any]] = field(default_factory=list)  # 2xx bodies to give, in order; then `reply`
    hang_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default_status

    def next_reply(self) -> dict[str, Any]:
        with self.lock:
            return self.replies.pop(0) if self.replies else self.reply

    @property
    def acknowledged(self) -> list[ReceivedReport]:
        """Requests that were answered 2xx."""
        return [r for r in self.received if r.headers.get("x-test-answer", "").startswith("2")]

    def items(self, acknowledged_only: bool = True) -> list[dict[str, Any]]:
        requests = self.acknowledged if acknowledged_only else self.received
        return [item for r in requests for item in r.items]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return False


@contextmanager
def report_endpoint(path: str = "/email/mailproxy/mp_endpoint/proxy_sync") -> Iterator[ReportEndpoint]:
    endpoint = ReportEndpoint(url="")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if endpoint.hang_seconds:
                time.sleep(endpoint.hang_seconds)
            status = endpoint.next_status()
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-test-answer"] = str(status)
            with endpoint.lock:
                endpoint.received.append(ReceivedReport(self.path, headers, raw))
            body = json.dumps(endpoint.next_reply() if status < 300 else {"error": "unavailable"}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the proxy gave up waiting

    with serving(Handler) as base_url:
        endpoint.url = base_url + path
        yield endpoint
