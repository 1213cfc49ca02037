"""MailProxyClient against the local stack (a subprocess, over HTTP, delivering to aiosmtpd sinks), and its
retries against a scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from mailproxy_client import (
    AuthenticationError,
    ConnectionFailed,
    Forbidden,
    MailProxyClient,
    MailProxyError,
    Message,
    MessageInfo,
    NotFound,
    ValidationFailed,
)
from mailproxy_client.models import AddMessagesResult
from tests.client.conftest import ScriptedServer
from tests.e2e.stack import LocalStack
from tests.smtp_servers import SinkFactory, free_port

pytestmark = pytest.mark.stack


def message(message_id: str, account_id: str, **overrides: Any) -> Message:
    values: dict[str, Any] = {
        "id": message_id,
        "account_id": account_id,
        "from_addr": "sender@example.com",
        "to": ["rcpt@example.com"],
        "subject": f"subject {message_id}",
        "body": "Hi there",
        **overrides,
    }
    return Message(**values)


def wait_for_status(
    proxy: MailProxyClient, account_id: str, ids: set[str], status: str = "sent", timeout: float = 30
) -> dict[str, MessageInfo]:
    deadline = time.monotonic() + timeout
    while True:
        found = {m.id: m for m in proxy.iter_messages(account_id=account_id) if m.id in ids}
        if len(found) == len(ids) and all(m.status == status for m in found.values()):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not all {status} within {timeout}s: {found}")
        time.sleep(0.2)


@pytest.fixture
def proxy(stack: LocalStack) -> MailProxyClient:
    return MailProxyClient(stack.url, stack.token, backoff=0.05)


# --------------------------------------------------------------------------- against the local stack


def test_status_and_health(proxy: MailProxyClient) -> None:
    status = proxy.status()
    assert status.ok is True
    assert status.mode == "local"
    assert status.dependencies == {"dynamodb": "ok", "sqs": "ok"}
    assert set(status.queues) == {"urgent", "bulk"}
    assert proxy.health() == {"status": "ok"}


def test_account_round_trip_masks_the_password(proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain", auth=("sender", "s3cret-password"))
    answer = proxy.put_account(
        "acct-roundtrip",
        host=sink.host,
        port=sink.port,
        user="sender",
        password="s3cret-password",
        limit_per_minute=60,
        limit_behavior="reject",
        batch_size=5,
    )
    assert answer == {"ok": True, "id": "acct-roundtrip", "tenant_id": "default"}
    [account] = [a for a in proxy.accounts() if a.id == "acct-roundtrip"]
    assert (account.host, account.port, account.user, account.use_tls) == (sink.host, sink.port, "sender", False)
    assert account.password == "***"
    assert (account.limit_per_minute, account.limit_behavior, account.batch_size) == (60, "reject", 5)
    assert "s3cret-password" not in repr(proxy.accounts())

    assert proxy.delete_account("acct-roundtrip") == {"ok": True, "id": "acct-roundtrip"}
    assert all(a.id != "acct-roundtrip" for a in proxy.accounts())
    with pytest.raises(NotFound) as caught:
        proxy.delete_account("acct-roundtrip")
    assert caught.value.status_code == 404
    assert "acct-roundtrip" in caught.value.error


def test_messages_are_delivered_and_listed(proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-deliver", host=sink.host, port=sink.port)
    batch: list[Message | dict[str, Any]] = [
        message("DLV-1", "acct-deliver", priority="high"),
        message("DLV-2", "acct-deliver", to="a@example.com, b@example.com"),
        {
            "id": "DLV-3",
            "account_id": "acct-deliver",
            "from": "sender@example.com",
            "to": ["rcpt@example.com"],
            "subject": "as a dict",
            "body": "<p>hi</p>",
            "content_type": "html",
        },
    ]
    result = proxy.add_messages(batch)
    assert result == AddMessagesResult(ok=True, queued=3, rejected=[], duplicates=[])

    received = sink.wait_for_messages(3, timeout=30)
    assert sorted(m.message["Subject"] for m in received) == ["as a dict", "subject DLV-1", "subject DLV-2"]
    two = next(m for m in received if m.message["Subject"] == "subject DLV-2")
    assert sorted(two.rcpt_tos) == ["a@example.com", "b@example.com"]

    listed = wait_for_status(proxy, "acct-deliver", {"DLV-1", "DLV-2", "DLV-3"})
    assert listed["DLV-1"].priority == 1
    assert listed["DLV-2"].priority == 2
    assert all(m.sent_ts and m.attempts == 1 for m in listed.values())
    assert len(proxy.messages(status="sent", account_id="acct-deliver").messages) == 3
    assert proxy.messages(status="error", account_id="acct-deliver").messages == []


def test_resubmission_replaces_what_is_pending_reports_what_is_taken_and_sends_each_once(
    proxy: MailProxyClient, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-idem", host=sink.host, port=sink.port)
    batch = [message(f"IDEM-{n}", "acct-idem") for n in range(3)]
    first = proxy.add_messages(batch)
    assert (first.queued, first.duplicates, first.rejected) == (3, [], [])

    # An id still waiting for a sender is replaced (queued again, as the original did); one a sender already
    # took is a duplicate. Which of the two each id meets depends on the sender's pace: each is one or the other.
    again = proxy.add_messages([*batch, message("IDEM-new", "acct-idem")])
    assert "IDEM-new" not in again.duplicates
    assert again.queued + len(again.duplicates) == 4
    assert set(again.duplicates) <= {"IDEM-0", "IDEM-1", "IDEM-2"}
    assert again.rejected == []
    assert again.accepted == 4

    wait_for_status(proxy, "acct-idem", {"IDEM-0", "IDEM-1", "IDEM-2", "IDEM-new"})
    time.sleep(0.5)
    assert sorted(m.message["Subject"] for m in sink.messages) == [
        "subject IDEM-0",
        "subject IDEM-1",
        "subject IDEM-2",
        "subject IDEM-new",
    ]


def test_a_lost_answer_is_retried_and_each_message_is_sent_once(
    stack: LocalStack, smtp_sink_factory: SinkFactory
) -> None:
    """The first add-messages reaches the proxy, but its answer is lost (a 502 from a gateway): the client
    sends the same batch again; the proxy replaces what is still pending or reports what a sender took as a
    duplicate, and either way each message is sent once and the client counts the ids as accepted."""
    sink = smtp_sink_factory("plain")

    class LosesFirstAnswer(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()
            self.lost = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self.inner.handle_request(request)
            if request.url.path.endswith("/add-messages") and not self.lost:
                response.read()
                response.close()
                self.lost += 1
                return httpx.Response(502, json={"message": "Internal server error"})
            return response

    transport = LosesFirstAnswer()
    sleeps: list[float] = []
    with MailProxyClient(stack.url, stack.token, transport=transport, backoff=0.01, sleep=sleeps.append) as proxy:
        proxy.put_account("acct-lost", host=sink.host, port=sink.port)
        result = proxy.add_messages([message("LOST-1", "acct-lost"), message("LOST-2", "acct-lost")])
    assert transport.lost == 1
    assert len(sleeps) == 1
    assert result.queued + len(result.duplicates) == 2
    assert result.rejected == []
    assert result.accepted == 2
    sink.wait_for_messages(2, timeout=30)
    time.sleep(1.0)
    assert len(sink.messages) == 2  # each once


def test_bad_messages_are_rejected_alone_with_the_field_named(
    proxy: MailProxyClient, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-reject", host=sink.host, port=sink.port)
    result = proxy.add_messages(
        [
            message("REJ-good", "acct-reject"),
            message("REJ-from", "acct-reject", from_addr="not an address"),
            message("REJ-account", "no-such-account"),
            message("REJ-good", "acct-reject"),  # the same id twice in one call
        ]
    )
    assert result.queued == 1
    assert result.duplicates == []
    reasons = {(r.id, r.reason.split(":")[0]) for r in result.rejected}
    assert reasons == {("REJ-from", "from"), ("REJ-account", "account_id"), ("REJ-good", "id")}
    assert all(not r.is_duplicate for r in result.rejected)


def test_large_lists_are_split_into_calls(proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-split", host=sink.host, port=sink.port)
    calls: list[tuple[int, int]] = []
    far_future = int(time.time()) + 30 * 86400  # stored, not sent during the test
    batch = [message(f"SPLIT-{n}", "acct-split", deferred_ts=far_future) for n in range(5)]
    batch.append(message("SPLIT-0", "acct-split"))  # again, in a later call: still a request-level duplicate
    result = proxy.add_messages(batch, batch_size=2, on_batch=lambda part, size: calls.append((size, part.queued)))
    assert calls == [(2, 2), (2, 2), (1, 1)]
    assert result.queued == 5
    assert [(r.id, r.reason) for r in result.rejected] == [("SPLIT-0", "id: appears twice in this request")]
    deferred = {m.id: m for m in proxy.iter_messages(account_id="acct-split", page_size=2)}
    assert set(deferred) == {f"SPLIT-{n}" for n in range(5)}
    assert all(m.status == "deferred" or m.status == "queued" for m in deferred.values())
    assert sink.messages == []


def test_pages_follow_the_cursor(proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-pages", host=sink.host, port=sink.port)
    proxy.add_messages([message(f"PAGE-{n}", "acct-pages") for n in range(5)])
    first = proxy.messages(account_id="acct-pages", limit=2)
    assert len(first.messages) <= 2
    every = list(proxy.iter_messages(account_id="acct-pages", page_size=2))
    assert sorted(m.id for m in every) == [f"PAGE-{n}" for n in range(5)]
    assert len({m.id for m in every}) == 5


def test_run_now_and_metrics(proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-metrics", host=sink.host, port=sink.port)
    proxy.add_messages([message("MET-1", "acct-metrics")])
    wait_for_status(proxy, "acct-metrics", {"MET-1"})
    answer = proxy.run_now()
    assert answer["ok"] is True
    assert isinstance(answer["enqueued"], int)
    text = proxy.metrics()
    sent = [line for line in text.splitlines() if line.startswith("gmp_sent_total{")]
    assert any('account_id="acct-metrics"' in line and line.endswith(" 1") for line in sent), sent
    assert "# TYPE" in text


def test_call_reaches_any_route(proxy: MailProxyClient) -> None:
    assert proxy.call("get", "/health") == {"status": "ok"}
    assert proxy.call("GET", "/accounts", params={"tenant_id": None})["ok"] is True


def test_errors_carry_the_status_and_the_api_message(stack: LocalStack, proxy: MailProxyClient) -> None:
    with pytest.raises(AuthenticationError) as caught:
        MailProxyClient(stack.url, "wrong-token").accounts()
    assert caught.value.status_code == 401
    assert caught.value.error == "missing or wrong X-API-Token"

    with pytest.raises(ValidationFailed) as invalid:
        proxy.put_account("acct-bad", host="127.0.0.1", port=0)
    assert invalid.value.status_code == 422
    assert "port" in invalid.value.error
    assert invalid.value.detail and invalid.value.detail[0]["loc"][-1] == "port"

    with pytest.raises(ValidationFailed) as bad_cursor:
        proxy.messages(cursor="not-a-cursor")
    assert bad_cursor.value.status_code == 400

    with pytest.raises(ValidationFailed) as bad_limit:
        proxy.messages(limit=0)
    assert "limit" in bad_limit.value.error


def test_unreachable_proxy_raises_connection_failed_after_the_retries() -> None:
    sleeps: list[float] = []
    proxy = MailProxyClient(f"http://127.0.0.1:{free_port()}", "token", retries=2, backoff=0.1, sleep=sleeps.append)
    with pytest.raises(ConnectionFailed) as caught:
        proxy.status()
    assert caught.value.status_code is None
    assert "cannot reach" in caught.value.error
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2  # exponential, half of it jitter


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        MailProxyClient("ftp://example.com", "token")
    assert "token" not in repr(MailProxyClient("http://127.0.0.1:1", "a-secret-token"))


# --------------------------------------------------------------------------- retries (scripted server)


def test_503_then_200_is_retried(fake_proxy: ScriptedServer) -> None:
    fake_proxy.script((503, {"ok": False, "error": "storage or queue unavailable; retry"}))
    fake_proxy.default = (200, {"ok": True, "accounts": []}, {})
    sleeps: list[float] = []
    proxy = MailProxyClient(fake_proxy.url, "token", backoff=0.2, sleep=sleeps.append)
    assert proxy.accounts() == []
    assert [r.path for r in fake_proxy.requests] == ["/accounts", "/accounts"]
    assert all(r.headers["x-api-token"] == "token" for r in fake_proxy.requests)
    assert len(sleeps) == 1 and 0.1 <= sleeps[0] <= 0.2


def test_429_honours_retry_after_and_5xx_gives_up_after_the_retries(fake_proxy: ScriptedServer) -> None:
    fake_proxy.script((429, {"message": "Too Many Requests"}, {"Retry-After": "3"}))
    fake_proxy.default = (200, {"ok": True, "enqueued": 0}, {})
    sleeps: list[float] = []
    proxy = MailProxyClient(fake_proxy.url, "token", retries=3, backoff=0.01, sleep=sleeps.append)
    assert proxy.run_now() == {"ok": True, "enqueued": 0}
    assert sleeps == [3.0]

    fake_proxy.default = (500, {"ok": False, "error": "internal error"}, {})
    sleeps.clear()
    with pytest.raises(MailProxyError) as caught:
        proxy.run_now()
    assert caught.value.status_code == 500
    assert caught.value.error == "internal error"
    assert len(sleeps) == 3  # 1 attempt + 3 retries


def test_client_errors_are_not_retried(fake_proxy: ScriptedServer) -> None:
    fake_proxy.default = (401, {"ok": False, "error": "missing or wrong X-API-Token"}, {})
    sleeps: list[float] = []
    proxy = MailProxyClient(fake_proxy.url, "token", sleep=sleeps.append)
    with pytest.raises(AuthenticationError):
        proxy.accounts()
    assert len(fake_proxy.requests) == 1 and sleeps == []

    fake_proxy.default = (502, "<html>Bad Gateway</html>", {})
    with pytest.raises(MailProxyError) as caught:
        MailProxyClient(fake_proxy.url, "token", retries=0).accounts()
    assert caught.value.status_code == 502
    assert "Bad Gateway" in caught.value.error


def test_retried_add_messages_counts_known_ids_as_duplicates(fake_proxy: ScriptedServer) -> None:
    known = {"ok": True, "queued": 1, "rejected": [{"id": "B", "reason": "id: already known; not queued again"}]}
    fake_proxy.script((504, {"message": "Endpoint request timed out"}), (200, known))
    proxy = MailProxyClient(fake_proxy.url, "token", sleep=lambda _: None)
    result = proxy.add_messages([message("A", "acct"), message("B", "acct")], default_priority="high")
    assert (result.queued, result.duplicates, result.rejected, result.accepted) == (1, ["B"], [], 2)
    first, second = fake_proxy.requests
    assert first.json() == second.json()
    assert second.json()["default_priority"] == "high"
    assert second.json()["messages"][0]["from"] == "sender@example.com"
    assert "from_addr" not in second.json()["messages"][0]


def test_more_than_1000_messages_go_in_several_calls(fake_proxy: ScriptedServer) -> None:
    fake_proxy.default = (200, {"ok": True, "queued": 0, "rejected": []}, {})
    proxy = MailProxyClient(fake_proxy.url, "token")
    proxy.add_messages([{"id": f"M{n}", "account_id": "a"} for n in range(2001)])
    assert [len(r.json()["messages"]) for r in fake_proxy.requests] == [1000, 1000, 1]


def test_a_failed_call_keeps_the_partial_result(fake_proxy: ScriptedServer) -> None:
    fake_proxy.script((200, {"ok": True, "queued": 2, "rejected": []}), (422, {"ok": False, "error": "messages: bad"}))
    proxy = MailProxyClient(fake_proxy.url, "token")
    with pytest.raises(ValidationFailed) as caught:
        proxy.add_messages([{"id": f"M{n}", "account_id": "a"} for n in range(4)], batch_size=2)
    assert isinstance(caught.value.partial, AddMessagesResult)
    assert caught.value.partial.queued == 2


def test_test_smtp_posts_only_the_given_fields_and_reads_the_steps(fake_proxy: ScriptedServer) -> None:
    steps = [{"step": "connect", "ok": True, "detail": "220 ready"}, {"step": "ehlo", "ok": False, "detail": "554"}]
    fake_proxy.default = (200, {"ok": False, "steps": steps}, {})
    proxy = MailProxyClient(fake_proxy.url, "token")
    check = proxy.test_smtp(host="smtp.example.com", port=587, use_tls=False)
    assert check.ok is False
    assert [(s.step, s.ok, s.detail) for s in check.steps] == [("connect", True, "220 ready"), ("ehlo", False, "554")]
    proxy.test_smtp("smtp-main", tenant_id="acme")
    first, second = fake_proxy.requests
    assert (first.method, first.path) == ("POST", "/commands/test-smtp")
    assert first.json() == {"host": "smtp.example.com", "port": 587, "use_tls": False}
    assert second.json() == {"account_id": "smtp-main", "tenant_id": "acme"}


def test_a_base_url_with_a_stage_path_is_kept(fake_proxy: ScriptedServer) -> None:
    """API Gateway's ApiUrl ends with the stage (https://…/v1/): routes go under it."""
    fake_proxy.default = (200, {"ok": True, "mode": "aws", "dependencies": {}, "queues": {}}, {})
    for base in (fake_proxy.url + "/v1/", fake_proxy.url + "/v1"):
        MailProxyClient(base, "token").status()
    assert [r.path for r in fake_proxy.requests] == ["/v1/status", "/v1/status"]


def test_status_503_with_dependencies_is_an_answer_not_an_error(fake_proxy: ScriptedServer) -> None:
    down = {"ok": False, "mode": "aws", "dependencies": {"dynamodb": "ok", "sqs": "unavailable: X"}, "queues": {}}
    fake_proxy.default = (503, down, {})
    status = MailProxyClient(fake_proxy.url, "token", sleep=lambda _: None).status()
    assert status.ok is False
    assert status.dependencies["sqs"] == "unavailable: X"
    assert len(fake_proxy.requests) == 1


# --------------------------------------------------------------------------- tenants and campaigns


def test_tenant_key_acts_on_its_own_tenant(
    stack: LocalStack, proxy: MailProxyClient, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    assert proxy.put_tenant("acme", name="Acme", client_auth={"method": "bearer", "token": "acme-sync-token"})["ok"]
    proxy.update_tenant("acme", name="Acme Inc.", client_auth={"method": "bearer", "token": "acme-sync-token"})
    tenant = proxy.tenant("acme")
    assert (tenant.name, tenant.has_api_key) == ("Acme Inc.", False)
    assert tenant.client_auth is not None and tenant.client_auth.get("token") == "***"
    assert "acme" in {t.id for t in proxy.tenants()}

    key = proxy.create_api_key("acme")
    assert proxy.tenant("acme").has_api_key is True
    with MailProxyClient(stack.url, key) as acme:
        acme.put_account("acme-smtp", host=sink.host, port=sink.port)
        assert [a.id for a in acme.accounts()] == ["acme-smtp"]
        assert all(a.tenant_id == "acme" for a in acme.accounts())
        assert acme.add_messages([message("ACME-1", "acme-smtp")]).queued == 1
        assert [t.id for t in acme.tenants()] == ["acme"]
        with pytest.raises(Forbidden) as forbidden:
            acme.accounts(tenant_id="default")
        assert forbidden.value.status_code == 403
    sink.wait_for_messages(1, timeout=30)
    assert [m.id for m in proxy.iter_messages(tenant_id="acme")] == ["ACME-1"]
    assert all(a.id != "acme-smtp" for a in proxy.accounts())

    secret = proxy.create_signing_secret("acme")
    assert proxy.tenant("acme").has_signing_secret is True and secret not in str(proxy.tenant("acme"))
    assert proxy.create_signing_secret("acme") != secret  # rotated
    proxy.delete_signing_secret("acme")
    assert proxy.tenant("acme").has_signing_secret is False

    proxy.revoke_api_key("acme")
    with pytest.raises(AuthenticationError):
        MailProxyClient(stack.url, key).accounts()
    assert proxy.delete_tenant("acme")["ok"] is True
    with pytest.raises(NotFound):
        proxy.tenant("acme")


def test_suspend_activate_and_delete_messages(proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("acct-campaign", host=sink.host, port=sink.port)
    proxy.suspend("spring")
    batch = [message(f"CAMP-{n}", "acct-campaign", batch_code="spring") for n in range(3)]
    assert proxy.add_messages(batch).queued == 3
    time.sleep(1.5)
    assert sink.messages == []
    held = list(proxy.iter_messages(account_id="acct-campaign", active_only=True))
    assert {m.id for m in held} == {"CAMP-0", "CAMP-1", "CAMP-2"}

    deleted = proxy.delete_messages(["CAMP-2", "CAMP-unknown"])
    assert (deleted["removed"], deleted["not_found"]) == (["CAMP-2"], ["CAMP-unknown"])
    proxy.activate("spring")
    wait_for_status(proxy, "acct-campaign", {"CAMP-0", "CAMP-1"})
    time.sleep(0.5)
    assert sorted(m.message["Subject"] for m in sink.messages) == ["subject CAMP-0", "subject CAMP-1"]
    [with_history] = [
        m for m in proxy.iter_messages(account_id="acct-campaign", include_history=True) if m.id == "CAMP-0"
    ]
    assert with_history.history is not None
    assert {"queued", "sent"} <= {e.event for e in with_history.history}
    assert proxy.cleanup_messages(10 * 365 * 86400)["ok"] is True


def test_positions_in_reasons_refer_to_the_whole_list(fake_proxy: ScriptedServer) -> None:
    fake_proxy.script(
        (200, {"ok": True, "queued": 2, "rejected": []}),
        (200, {"ok": True, "queued": 1, "rejected": [{"id": None, "reason": "messages.1: must be a JSON object"}]}),
    )
    proxy = MailProxyClient(fake_proxy.url, "token")
    batch: list[Any] = [{"id": "A", "account_id": "a"}, {"id": "A", "account_id": "a"}, {"id": "B"}, {"id": "C"}]
    batch.append("not an object")
    result = proxy.add_messages(batch, batch_size=2)
    # "A" again is refused locally; the server's second call held ["C", "not an object"]
    assert [r.reason for r in result.rejected] == [
        "id: appears twice in this request",
        "messages.4: must be a JSON object",
    ]
    assert [len(r.json()["messages"]) for r in fake_proxy.requests] == [2, 2]
