"""Clients of the original service, unchanged, against `make run`'s local stack: a January-2026 session in
the strict query form (tenant_id and batch_code in the query string, no body) and a February-2026 session
on the `/{entity}/{method}` routes. Both deliver through a STARTTLS-only submission server with the
original's own account setting (`use_tls: true` on a port other than 465), and both report to a real
client endpoint that answers with `next_sync_after` and `queued` as the original's clients do."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.e2e.stack import local_stack
from tests.http_servers import QuietHandler, serving
from tests.smtp_servers import SinkFactory, SmtpSink

SMTP_USER, SMTP_PASSWORD = "acme", "acme-smtp-password"
DND_SECONDS = 3


@dataclass
class SyncCall:
    at: float
    entries: list[dict[str, Any]]


@dataclass
class ClientEndpoint:
    """The client's sync endpoint. Its first report reply asks for `DND_SECONDS` of quiet
    (`next_sync_after`); an empty (periodic) call is answered by queueing one more message through the
    proxy's API and replying `queued: 1`, as the original's clients hand back work."""

    base_url: str = ""
    calls: list[SyncCall] = field(default_factory=list)
    quiet_until: float | None = None
    on_empty_call: Callable[[], int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reported(self) -> dict[str, dict[str, Any]]:
        """The last entry of each message id."""
        with self.lock:
            return {entry["id"]: entry for call in self.calls for entry in call.entries}

    def reply(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(SyncCall(time.time(), entries))
            first_report = entries and self.quiet_until is None
            if first_report:
                self.quiet_until = time.time() + DND_SECONDS
        if first_report:
            return {"ok": True, "next_sync_after": self.quiet_until}
        if not entries and self.on_empty_call is not None:
            return {"ok": True, "queued": self.on_empty_call()}
        return {"ok": True}


@contextmanager
def client_endpoint() -> Iterator[ClientEndpoint]:
    endpoint = ClientEndpoint()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps(endpoint.reply(json.loads(raw)["delivery_report"])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as base_url:
        endpoint.base_url = base_url
        yield endpoint


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def submission_server(smtp_sink_factory: SinkFactory) -> SmtpSink:
    """A submission server that offers STARTTLS and refuses everything else until it is used."""
    return smtp_sink_factory("starttls", auth=(SMTP_USER, SMTP_PASSWORD), require_starttls=True)


def stack_env(trust_smtp_certs: Path) -> dict[str, str]:
    return {"SSL_CERT_FILE": str(trust_smtp_certs), "GMP_SYNC_INTERVAL": "2", "GMP_REPORT_INTERVAL": "1"}


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


def assert_quiet_period_honoured(endpoint: ClientEndpoint) -> None:
    """After the reply that asked for quiet, the proxy called again (the periodic call, at the latest), and
    not before the time that reply named."""

    def calls_after_the_first_report() -> list[SyncCall]:
        with endpoint.lock:
            first = next(i for i, call in enumerate(endpoint.calls) if call.entries)
            return endpoint.calls[first + 1 :]

    wait_until(lambda: bool(calls_after_the_first_report()))
    assert endpoint.quiet_until is not None
    later = calls_after_the_first_report()
    assert all(call.at >= endpoint.quiet_until - 0.5 for call in later), [c.at for c in later]


def test_january_2026_session_in_the_strict_query_form(smtp_sink_factory: SinkFactory, trust_smtp_certs: Path) -> None:
    sink = submission_server(smtp_sink_factory)
    with client_endpoint() as endpoint, local_stack(stack_env(trust_smtp_certs)) as stack:

        def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            answer = stack.call(method, path, **kwargs)
            assert answer.status_code == 200, (method, path, answer.text)
            result: dict[str, Any] = answer.json()
            return result

        tenant = {"id": "acme", "name": "Acme", "client_base_url": endpoint.base_url, "active": True}
        assert call("POST", "/tenant", json=tenant)["ok"] is True
        account = {
            "id": "acme-smtp",
            "tenant_id": "acme",
            "host": "127.0.0.1",
            "port": sink.port,
            "user": SMTP_USER,
            "password": SMTP_PASSWORD,
            "use_tls": True,  # the original's default account: STARTTLS on a submission port
        }
        assert call("POST", "/account", json=account)["ok"] is True
        assert [a["id"] for a in call("GET", "/accounts", params={"tenant_id": "acme"})["accounts"]] == ["acme-smtp"]

        suspended = call("POST", "/commands/suspend", params={"tenant_id": "acme", "batch_code": "promo"})
        assert suspended["suspended_batches"] == ["promo"]
        # j4 waits an hour (deferred_ts), so that its deletion never races a sender that took it at once.
        later = int(time.time()) + 3600
        messages = [message("j1"), message("j2"), message("j3", batch_code="promo"), message("j4", deferred_ts=later)]
        assert call("POST", "/commands/add-messages", json={"messages": messages})["queued"] == 4
        removed = call("POST", "/commands/delete-messages", params={"tenant_id": "acme"}, json={"ids": ["j4"]})
        assert removed["removed"] in (1, ["j4"])

        sink.wait_for_messages(2, timeout=30)
        activated = call("POST", "/commands/activate", params={"tenant_id": "acme", "batch_code": "promo"})
        assert activated["suspended_batches"] == []
        sink.wait_for_messages(3, timeout=30)
        assert sorted(m.rcpt_tos[0].split("@")[0] for m in sink.messages) == ["j1", "j2", "j3"]
        assert all(m.tls and m.auth_user == SMTP_USER for m in sink.messages)

        wait_until(lambda: {"j1", "j2", "j3"} <= {i for i, e in endpoint.reported().items() if e.get("sent_ts")})
        assert_quiet_period_honoured(endpoint)

        listed = call("GET", "/messages", params={"tenant_id": "acme"})["messages"]
        assert {m["id"]: m["status"] for m in listed} == {"j1": "sent", "j2": "sent", "j3": "sent"}
        assert call("POST", "/commands/cleanup-messages", params={"tenant_id": "acme"})["ok"] is True
        assert call("DELETE", "/account/acme-smtp", params={"tenant_id": "acme"})["ok"] is True
        assert call("GET", "/accounts", params={"tenant_id": "acme"})["accounts"] == []
        assert stack.stop() == 0


def test_february_2026_session_on_entity_method_routes(smtp_sink_factory: SinkFactory, trust_smtp_certs: Path) -> None:
    sink = submission_server(smtp_sink_factory)
    with client_endpoint() as endpoint, local_stack(stack_env(trust_smtp_certs)) as stack:

        def call(method: str, path: str, **kwargs: Any) -> Any:
            answer = requests.request(method, stack.url + path, headers=stack.headers, timeout=30, **kwargs)
            assert answer.status_code == 200, (method, path, answer.text)
            return answer.json()

        assert call("GET", "/instance/status")["ok"] is True
        added = call("POST", "/tenants/add", json={"id": "acme", "name": "Acme", "client_base_url": endpoint.base_url})
        assert added["id"] == "acme"
        key = call("POST", "/tenants/create_api_key", json={"tenant_id": "acme", "expires_at": int(time.time()) + 3600})
        tenant_headers = {"X-API-Token": key["api_key"]}

        def as_tenant(method: str, path: str, **kwargs: Any) -> Any:
            answer = requests.request(method, stack.url + path, headers=tenant_headers, timeout=30, **kwargs)
            assert answer.status_code == 200, (method, path, answer.text)
            return answer.json()

        account = {
            "id": "acme-smtp",
            "tenant_id": "acme",
            "host": "127.0.0.1",
            "port": sink.port,
            "user": SMTP_USER,
            "password": SMTP_PASSWORD,
        }  # use_tls left out: February's accounts/add defaults it to true
        as_tenant("POST", "/accounts/add", json=account)
        assert [a["id"] for a in as_tenant("GET", "/accounts/list", params={"tenant_id": "acme"})] == ["acme-smtp"]

        as_tenant("POST", "/tenants/suspend_batch", json={"tenant_id": "acme", "batch_code": "promo"})
        held = as_tenant("GET", "/tenants/get_suspended_batches", params={"tenant_id": "acme"})
        assert held["suspended_batches"] == ["promo"]
        batch = [
            {**message("f1"), "from_addr": "news@acme.example.com"},
            {**message("f2"), "to": "f2@example.com"},  # a string `to`, wrapped by the original
            message("f3", batch_code="promo"),
        ]
        assert as_tenant("POST", "/messages/add_batch", json={"messages": batch})["queued"] == 3

        sink.wait_for_messages(2, timeout=30)
        as_tenant("POST", "/tenants/activate_batch", json={"tenant_id": "acme", "batch_code": "promo"})
        sink.wait_for_messages(3, timeout=30)
        assert all(m.tls and m.auth_user == SMTP_USER for m in sink.messages)

        # Once the reports are in and the quiet period is over, the periodic (empty) call hands back work:
        # the client queues f4 and answers `queued: 1`, and f4 is sent and reported.
        def hand_back_work() -> int:
            endpoint.on_empty_call = None
            queued = as_tenant("POST", "/messages/add_batch", json={"messages": [message("f4")]})
            return int(queued["queued"])

        wait_until(lambda: {"f1", "f2", "f3"} <= {i for i, e in endpoint.reported().items() if e.get("sent_ts")})
        endpoint.on_empty_call = hand_back_work
        wait_until(lambda: endpoint.reported().get("f4", {}).get("sent_ts") is not None, timeout=40)
        assert_quiet_period_honoured(endpoint)

        rows = as_tenant("GET", "/messages/list", params={"tenant_id": "acme"})
        assert {row["id"]: row["status"] for row in rows} == dict.fromkeys(["f1", "f2", "f3", "f4"], "sent")
        assert as_tenant("GET", "/messages/count_pending_for_tenant", params={"tenant_id": "acme"}) == 0
        assert call("GET", "/instance/get_sync_status")["tenants"][0]["id"] == "acme"
        assert stack.stop() == 0
