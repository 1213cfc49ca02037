"""A whole session of an existing genro-mail-proxy client, replayed over HTTP against the local stack:
tenant with a bearer-authenticated report URL, its API key, an account, messages with tenant_id and
attachments by base64:, http_url and endpoint, a suspended then activated batch, a deleted message."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.stack import local_stack
from tests.http_servers import QuietHandler, serving
from tests.smtp_servers import SinkFactory

TENANT_TOKEN = "acme-client-token"


@dataclass
class ClientApp:
    """The client application: report endpoint, attachment endpoint and a file server, behind one base URL."""

    base_url: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)
    report_auth: list[str | None] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)


@contextmanager
def client_app() -> Iterator[ClientApp]:
    app = ClientApp()

    class Handler(QuietHandler):
        def _send(self, status: int, body: bytes, kind: str = "application/octet-stream") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            authorized = self.headers.get("Authorization") == f"Bearer {TENANT_TOKEN}"
            if self.path == "/mail-proxy/sync":
                app.report_auth.append(self.headers.get("Authorization"))
                if not authorized:
                    self._send(401, b"{}", "application/json")
                    return
                app.reports.extend(json.loads(raw)["delivery_report"])
                self._send(200, b'{"ok": true}', "application/json")
            elif self.path == "/mail-proxy/attachments" and authorized:
                content = app.files.get(json.loads(raw)["storage_path"])
                self._send(200, content) if content is not None else self._send(404, b"")
            else:
                self._send(404, b"")

        def do_GET(self) -> None:
            content = app.files.get(self.path)
            self._send(200, content) if content is not None else self._send(404, b"")

    with serving(Handler) as base_url:
        app.base_url = base_url
        yield app


def message(message_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "tenant_id": "acme",
        "account_id": "acme-smtp",
        "from": "news@acme.example.com",
        "to": [f"{message_id}@example.com"],
        "subject": f"subject {message_id}",
        "body": "hello",
        **extra,
    }


def test_existing_client_session_replayed_over_http(smtp_sink_factory: SinkFactory, trust_smtp_certs: Path) -> None:
    sink = smtp_sink_factory("starttls", auth=("acme", "acme-smtp-password"))
    with client_app() as app, local_stack({"SSL_CERT_FILE": str(trust_smtp_certs)}) as stack:
        app.files["/files/terms.txt"] = b"terms and conditions"
        app.files["invoices/7.pdf"] = b"%PDF invoice 7"
        tenant = {
            "id": "acme",
            "name": "Acme",
            "client_base_url": app.base_url,
            "client_auth": {"method": "bearer", "token": TENANT_TOKEN},
            "active": True,
        }
        assert stack.call("POST", "/tenant", json=tenant).json()["ok"] is True
        key = stack.call("POST", "/tenant/acme/api-key").json()["api_key"]
        as_tenant = {"X-API-Token": key}

        def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            import requests

            answer = requests.request(method, stack.url + path, headers=as_tenant, timeout=30, **kwargs)
            assert answer.status_code == 200, answer.text
            result: dict[str, Any] = answer.json()
            return result

        account = {
            "id": "acme-smtp",
            "tenant_id": "acme",
            "host": "127.0.0.1",
            "port": sink.port,
            "user": "acme",
            "password": "acme-smtp-password",
            "use_tls": False,
        }
        assert call("POST", "/account", json=account)["tenant_id"] == "acme"
        assert call("POST", "/commands/suspend", json={"tenant_id": "acme", "batch_code": "promo"})["ok"]
        inline = "base64:" + base64.b64encode(b"inline bytes").decode()
        messages = [
            message("m1", attachments=[{"filename": "a.txt", "storage_path": inline, "fetch_mode": "base64"}]),
            message(
                "m2",
                attachments=[
                    {
                        "filename": "terms.txt",
                        "storage_path": app.base_url + "/files/terms.txt",
                        "fetch_mode": "http_url",
                    }
                ],
                priority="high",
            ),
            message(
                "m3", attachments=[{"filename": "7.pdf", "storage_path": "invoices/7.pdf", "fetch_mode": "endpoint"}]
            ),
            message("m4", batch_code="promo"),
            message("m5", batch_code="promo"),
            message("m6", deferred_ts=int(time.time()) + 3600),
        ]
        added = call("POST", "/commands/add-messages", json={"messages": messages, "default_priority": "medium"})
        assert added == {"ok": True, "queued": 6, "rejected": []}
        deleted = call("POST", "/commands/delete-messages", json={"tenant_id": "acme", "ids": ["m6"]})
        assert deleted["removed"] == ["m6"]

        sink.wait_for_messages(3, timeout=30)
        time.sleep(1.5)
        assert len(sink.messages) == 3  # the promo batch is held
        assert call("POST", "/commands/activate", json={"tenant_id": "acme", "batch_code": "promo"})["activated"] == 2
        sink.wait_for_messages(5, timeout=30)

        by_id = {m.rcpt_tos[0].split("@")[0]: m for m in sink.messages}
        assert set(by_id) == {"m1", "m2", "m3", "m4", "m5"}  # m6 never reached the SMTP server

        def attachments(mid: str) -> dict[str | None, bytes]:
            return {a.get_filename(): a.get_payload(decode=True) for a in by_id[mid].message.iter_attachments()}

        assert attachments("m1") == {"a.txt": b"inline bytes"}
        assert attachments("m2") == {"terms.txt": b"terms and conditions"}
        assert attachments("m3") == {"7.pdf": b"%PDF invoice 7"}
        assert all(m.auth_user == "acme" and m.tls for m in sink.messages)

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and {r["id"] for r in app.reports if r["sent_ts"]} != set(by_id):
            time.sleep(0.2)
        assert {r["id"] for r in app.reports if r["sent_ts"]} == set(by_id)
        assert set(app.report_auth) == {f"Bearer {TENANT_TOKEN}"}
        listed = call("GET", "/messages", params={"include_history": True})["messages"]
        assert {m["id"]: m["status"] for m in listed} == dict.fromkeys(by_id, "sent")
        assert all(m["history"][-1]["event"] in ("sent", "reported") for m in listed)
