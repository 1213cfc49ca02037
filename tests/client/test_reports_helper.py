"""mailproxy_client.reports.parse_delivery_report: real signatures (the proxy's own signing code, and the local stack
posting to an endpoint that uses the helper), bad ones, auth and payload checks."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from mailproxy.logic.reports import ReportTarget, signature
from mailproxy.models import DeliveryReportItem
from mailproxy_client import DeliveryReport, MailProxyClient, Message, ReportRejected, parse_delivery_report
from mailproxy_client.reports import sign, verify_signature
from tests.client.conftest import SENDERS
from tests.e2e.stack import LocalStack, local_stack
from tests.http_servers import QuietHandler, serving
from tests.smtp_servers import SinkFactory

SECRET = "whsec-0123456789abcdef"
TOKEN = "sync-token-abcdefghijklmnopqrstuvwxyz"
NOW = 1_735_689_600


def body_of(*items: dict[str, Any]) -> bytes:
    return json.dumps({"delivery_report": list(items)}, separators=(",", ":")).encode()


SENT = {
    "id": "MSG-001",
    "tenant_id": "default",  # every entry names its tenant (docs/tenants.md)
    "account_id": "smtp-main",
    "priority": 1,
    "sent_ts": NOW,
    "error_ts": None,
    "error": None,
    "deferred_ts": None,
}
FAILED = {**SENT, "id": "MSG-002", "sent_ts": None, "error_ts": NOW, "error": "550 5.1.1 no such user"}
DEFERRED = {**SENT, "id": "MSG-003", "sent_ts": None, "deferred_ts": NOW + 60}


def proxy_headers(body: bytes, *, now: int = NOW, **target: Any) -> dict[str, str]:
    """The headers the proxy itself sends (mailproxy.logic.reports.ReportTarget)."""
    return ReportTarget(url="http://127.0.0.1/", **target).headers(body, now)


# --------------------------------------------------------------------------- unit: signatures and auth


def test_signed_bearer_report_from_the_proxys_own_code_is_accepted() -> None:
    body = body_of(SENT, FAILED, DEFERRED)
    headers = proxy_headers(body, token=TOKEN, signing_secret=SECRET)
    reports = parse_delivery_report(body, headers, bearer_token=TOKEN, signing_secret=SECRET, now=NOW + 10)
    assert [(r.id, r.status) for r in reports] == [("MSG-001", "sent"), ("MSG-002", "error"), ("MSG-003", "deferred")]
    assert reports[1].error == "550 5.1.1 no such user"
    assert reports[0].priority == 1 and reports[0].account_id == "smtp-main"
    # the helper's `sign` is the proxy's `signature`
    assert sign(SECRET, body, NOW) == signature(SECRET, body, NOW)
    # the client's model knows every field of the proxy's report entries
    assert set(DeliveryReportItem.model_fields) <= set(DeliveryReport.model_fields)
    for parsed, raw in zip(reports, (SENT, FAILED, DEFERRED), strict=True):
        assert DeliveryReportItem.model_validate(raw).model_dump().items() <= parsed.model_dump().items()


def test_headers_are_matched_case_insensitively() -> None:
    body = body_of(SENT)
    headers = {k.lower(): v for k, v in proxy_headers(body, token=TOKEN, signing_secret=SECRET).items()}
    assert len(parse_delivery_report(body, headers, bearer_token=TOKEN, signing_secret=SECRET, now=NOW)) == 1
    upper = {k.upper(): v for k, v in headers.items()}
    assert len(parse_delivery_report(body, upper, bearer_token=TOKEN, signing_secret=SECRET, now=NOW)) == 1


def test_basic_auth() -> None:
    body = body_of(SENT)
    headers = proxy_headers(body, user="syncuser", password="syncpass")
    assert headers["Authorization"].startswith("Basic ")
    assert len(parse_delivery_report(body, headers, basic=("syncuser", "syncpass"))) == 1
    with pytest.raises(ReportRejected) as caught:
        parse_delivery_report(body, headers, basic=("syncuser", "other"))
    assert caught.value.status_code == 401
    # either credential is accepted when both are configured
    assert len(parse_delivery_report(body, headers, bearer_token=TOKEN, basic=("syncuser", "syncpass"))) == 1


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"bearer{TOKEN}",
        "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode(),
        "Basic !!!not-base64",
        f"Token {TOKEN}",
    ],
)
def test_wrong_or_missing_authorization_is_401(authorization: str | None) -> None:
    body = body_of(SENT)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    with pytest.raises(ReportRejected) as caught:
        parse_delivery_report(body, headers, bearer_token=TOKEN)
    assert caught.value.status_code == 401
    assert TOKEN not in caught.value.reason


def test_no_credentials_configured_means_no_auth_check() -> None:
    assert len(parse_delivery_report(body_of(SENT), {})) == 1


def test_bad_signatures_are_refused() -> None:
    body = body_of(SENT)
    good = signature(SECRET, body, NOW)
    cases = {
        "missing": None,
        "other secret": signature("another-secret", body, NOW),
        "other body": signature(SECRET, body_of(FAILED), NOW),
        "too old": signature(SECRET, body, NOW - 301),
        "from the future": signature(SECRET, body, NOW + 301),
        "timestamp swapped": good.replace(f"t={NOW}", f"t={NOW + 1}"),
        "no v1": f"t={NOW}",
        "no t": good.split(",")[1],
        "garbage": "nonsense",
        "bad t": good.replace(f"t={NOW}", "t=yesterday"),
    }
    for name, header in cases.items():
        headers = {} if header is None else {"X-GMP-Signature": header}
        with pytest.raises(ReportRejected) as caught:
            parse_delivery_report(body, headers, signing_secret=SECRET, now=NOW)
        assert caught.value.status_code == 401, name
    # a tampered body with the original signature
    with pytest.raises(ReportRejected, match="does not match"):
        parse_delivery_report(body_of(FAILED), {"X-GMP-Signature": good}, signing_secret=SECRET, now=NOW)
    # within the tolerance, and with several v1 values (e.g. during a secret rotation)
    verify_signature(SECRET, signature(SECRET, body, NOW - 300), body, now=NOW)
    rotated = good + ",v1=" + "0" * 64
    assert len(parse_delivery_report(body, {"X-GMP-Signature": rotated}, signing_secret=SECRET, now=NOW)) == 1
    with pytest.raises(ReportRejected):
        verify_signature(SECRET, signature(SECRET, body, NOW - 20), body, tolerance=10, now=NOW)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "delivery_report"),
        (b'{"reports": []}', "delivery_report"),
        (b'{"delivery_report": {}}', "delivery_report"),
        (json.dumps({"delivery_report": [{"account_id": "a"}]}).encode(), "delivery_report.0: id"),
        (json.dumps({"delivery_report": [SENT, {**SENT, "sent_ts": "soon"}]}).encode(), "delivery_report.1: sent_ts"),
        (json.dumps({"delivery_report": ["MSG-001"]}).encode(), "delivery_report.0"),
    ],
)
def test_bad_payloads_are_400(body: bytes, reason: str) -> None:
    with pytest.raises(ReportRejected) as caught:
        parse_delivery_report(body, {})
    assert caught.value.status_code == 400
    assert reason in caught.value.reason


def test_empty_report_and_unknown_fields() -> None:
    assert parse_delivery_report(body_of(), {}) == []
    [report] = parse_delivery_report(body_of({**SENT, "tenant_id": "t1", "next": 1}), {})
    assert report.id == "MSG-001" and report.tenant_id == "t1"  # a known field since reports carry their tenant
    assert report.model_extra == {"next": 1}
    older = {k: v for k, v in SENT.items() if k != "tenant_id"}  # from a proxy before entries had tenant_id
    [report] = parse_delivery_report(body_of(older), {})
    assert report.id == "MSG-001" and report.tenant_id is None and report.status == "sent"


# --------------------------------------------------------------------------- end to end: the proxy posts


@dataclass
class ClientEndpoint:
    """The client application's report endpoint, built on parse_delivery_report only."""

    url: str = ""
    accepted: list[Any] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[ClientEndpoint]:
    state = ClientEndpoint()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                reports = parse_delivery_report(
                    raw, dict(self.headers.items()), bearer_token=TOKEN, signing_secret=SECRET
                )
            except ReportRejected as exc:
                with state.lock:
                    state.refused.append(exc.reason)
                status, answer = exc.status_code, {"ok": False}
            else:
                with state.lock:
                    state.accepted.extend(reports)
                status, answer = 200, {"ok": True}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serving(Handler) as base_url:
        state.url = base_url + "/email/mailproxy/mp_endpoint/proxy_sync"
        yield state


@pytest.fixture(scope="module")
def signing_stack(endpoint: ClientEndpoint) -> Iterator[LocalStack]:
    environment = {
        "GMP_CLIENT_SYNC_URL": endpoint.url,
        "GMP_CLIENT_SYNC_TOKEN": TOKEN,
        "GMP_CLIENT_SYNC_SECRET": SECRET,
    }
    with local_stack(environment, senders=SENDERS) as running:
        yield running


@pytest.mark.stack
def test_the_local_stack_reports_to_an_endpoint_using_the_helper(
    signing_stack: LocalStack, endpoint: ClientEndpoint, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 no such user", match="nobody@")
    proxy = MailProxyClient(signing_stack.url, signing_stack.token)
    proxy.put_account("smtp-main", host=sink.host, port=sink.port)
    result = proxy.add_messages(
        [
            Message(id="E2E-OK", account_id="smtp-main", from_addr="s@example.com", to=["r@example.com"]),
            Message(id="E2E-BAD", account_id="smtp-main", from_addr="s@example.com", to=["nobody@example.com"]),
        ]
    )
    assert result.queued == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with endpoint.lock:
            seen = {r.id: r for r in endpoint.accepted}
        if {"E2E-OK", "E2E-BAD"} <= set(seen):
            break
        time.sleep(0.1)
    assert endpoint.refused == []
    assert seen["E2E-OK"].status == "sent" and seen["E2E-OK"].sent_ts
    assert seen["E2E-BAD"].status == "error"
    assert seen["E2E-BAD"].error is not None and "550" in seen["E2E-BAD"].error
    assert all(r.account_id == "smtp-main" for r in seen.values())
