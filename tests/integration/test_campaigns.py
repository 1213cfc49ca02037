"""Campaign control, message fields and reading (docs/tenants.md), through the API and the sender."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain, status
from tests.smtp_servers import SinkFactory
from tests.streams import drain_to_outbox


def post(api: TestClient, *messages: dict[str, object], **extra: object) -> dict[str, object]:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": list(messages), **extra})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def sink_account(api: TestClient, sink_port: int, **extra: object) -> None:
    api.post("/account", headers=AUTH, json=account_payload(port=sink_port, user=None, password=None, **extra))


def test_client_message_id_from_addr_alias_and_batch_code(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink_account(api, sink.port)
    message = message_payload("m1", message_id="<order-42@shop.example.com>", batch_code="spring")
    message["from_addr"] = message.pop("from")
    assert post(api, message)["queued"] == 1
    drain(services)
    assert sink.messages[0].message["Message-ID"] == "<order-42@shop.example.com>"
    assert api.get("/messages", headers=AUTH).json()["messages"][0]["batch_code"] == "spring"


def test_invalid_message_id_and_long_batch_code_are_rejected_by_field(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    rejected = post(api, message_payload("a", message_id="no at sign"), message_payload("b", batch_code="x" * 65))[
        "rejected"
    ]
    reasons = {r["id"]: r["reason"] for r in rejected}  # type: ignore[attr-defined]
    assert reasons["a"].startswith("message_id") and reasons["b"].startswith("batch_code")


def test_delete_messages_removes_unsent_and_says_why_others_stay(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink_account(api, sink.port)
    post(api, message_payload("sent-one"))
    drain(services)
    post(api, message_payload("queued-one"))
    answer = api.post("/commands/delete-messages", headers=AUTH, json={"ids": ["queued-one", "sent-one", "ghost"]})
    body = answer.json()
    assert body["ok"] is True and body["removed"] == ["queued-one"] and body["not_found"] == ["ghost"]
    assert body["unauthorized"] == []
    assert body["not_removed"] == [{"id": "sent-one", "status": "sent", "reason": "already sent; not removed"}]
    drain(services)  # the removed message's queue record is skipped
    assert [m.message["Subject"] for m in sink.messages] == ["Hello"]
    assert len(sink.messages) == 1


def test_cleanup_removes_finished_reported_messages_only(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    post(api, message_payload("done"), message_payload("waiting"))
    claimed = services.messages.claim("default", "done", now=int(time.time()), lease_seconds=60)
    assert claimed is not None
    from mailproxy.dal.messages import Outcome
    from mailproxy.models import MessageStatus

    services.messages.record(claimed, Outcome(MessageStatus.SENT, int(time.time())))
    drain_to_outbox(services)  # its client was down: the report waits in the outbox
    [report] = services.outbox.pending(10)
    assert api.post("/commands/cleanup-messages", headers=AUTH, json={"older_than_seconds": 0}).json()["removed"] == 0
    services.outbox.mark_reported(report, int(time.time()))
    time.sleep(0.01)
    assert api.post("/commands/cleanup-messages", headers=AUTH, json={"older_than_seconds": 0}).json()["removed"] == 1
    assert services.messages.get("default", "done") is None
    assert services.messages.get("default", "waiting") is not None


def test_suspended_batch_is_kept_and_not_sent_until_activated_in_priority_order(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink_account(api, sink.port)
    post(api, message_payload("early", batch_code="promo", priority=3))
    assert api.post("/commands/suspend", headers=AUTH, json={"batch_code": "promo"}).json()["suspended"] == 1
    post(
        api,
        message_payload("late-low", batch_code="promo", priority="low"),
        message_payload("late-high", batch_code="promo", priority="immediate"),
        message_payload("other", batch_code="news"),
    )
    drain(services)
    assert [m.message["Subject"] for m in sink.messages] == ["Hello"]  # only "other"
    assert {status(services, i)["status"] for i in ("early", "late-low", "late-high")} == {"queued"}
    assert all(status(services, i).get("suspended") for i in ("early", "late-low", "late-high"))
    activated = api.post("/commands/activate", headers=AUTH, json={"batch_code": "promo"}).json()
    assert activated["activated"] == 3
    drain(services)
    assert {status(services, i)["status"] for i in ("early", "late-low", "late-high")} == {"sent"}
    order = [m.message["Message-ID"] for m in sink.messages[1:]]
    assert order[0] == status(services, "late-high")["message_id_header"]  # urgent queue first


def test_active_only_and_history(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.7.1 greylisted")
    sink_account(api, sink.port)
    post(api, message_payload("m1"))
    drain(services)
    active = api.get("/messages", headers=AUTH, params={"active_only": True}).json()["messages"]
    assert [m["id"] for m in active] == ["m1"] and active[0]["history"] is None
    [message] = api.get("/messages", headers=AUTH, params={"include_history": True}).json()["messages"]
    events = [e["event"] for e in message["history"]]
    assert events == ["queued", "deferred"]
    assert "451" in message["history"][1]["reason"] and message["history"][1]["next_ts"] >= message["history"][1]["ts"]


def test_account_limit_behavior_reject_ends_the_excess_in_error(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink_account(api, sink.port, limit_per_minute=1, limit_behavior="reject")
    post(api, message_payload("a"), message_payload("b"))
    drain(services)
    outcomes = sorted((status(services, i)["status"], status(services, i).get("error")) for i in ("a", "b"))
    assert outcomes == [("error", "rate_limit_exceeded"), ("sent", None)]


def test_account_batch_size_caps_what_one_invocation_sends(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink_account(api, sink.port, batch_size=2)
    post(api, *[message_payload(f"m{n}") for n in range(6)])
    from functions.sender import handler as sender
    from mailproxy_local.poller import SqsPoller

    poller = SqsPoller(services.sqs, [services.queues.urgent_url, services.queues.bulk_url], sender.handler)
    first = poller.poll_once()
    assert len(sink.messages) == min(2, first)
    deadline = time.monotonic() + 20
    while len(sink.messages) < 6 and time.monotonic() < deadline:
        poller.poll_once(wait_seconds=1)  # requeued records come back after their short delay
    assert len(sink.messages) == 6
    assert {status(services, f"m{n}")["status"] for n in range(6)} == {"sent"}
