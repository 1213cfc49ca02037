"""The outside world of the rehearsal: a real SMTP server and a real HTTPS report endpoint, on loopback.

In aws mode the proxy posts reports over https only, so the report endpoint speaks TLS with a certificate
from a throwaway CA (trustme); the functions trust that CA through ``SSL_CERT_FILE``. The SMTP server is
the tests' aiosmtpd sink in STARTTLS mode with AUTH, as real submission servers are.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.smtp_servers import CertAuthority

REPORT_PATH = "/email/mailproxy/mp_endpoint/proxy_sync"


@dataclass
class ReportReceiver:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)  # the delivery_report items
    requests: list[dict[str, str]] = field(default_factory=list)  # headers of each POST
    lock: threading.Lock = field(default_factory=threading.Lock)

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)


@contextmanager
def report_receiver(certs: CertAuthority) -> Iterator[ReportReceiver]:
    receiver = ReportReceiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                items = json.loads(raw).get("delivery_report", [])
            except ValueError:
                items = []
            with receiver.lock:
                receiver.received.extend(items)
                receiver.requests.append({k.lower(): v for k, v in self.headers.items()})
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certs.server_cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"https://127.0.0.1:{server.server_address[1]}{REPORT_PATH}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
