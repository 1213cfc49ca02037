"""Re-submitting a known id: a message still queued and never claimed is replaced (content and schedule);
one a sender took (claimed, sent, failed) stays as it was, rejected with code `duplicate`."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.dal.messages import NewMessage
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain, status
from tests.smtp_servers import SinkFactory


def post(api: TestClient, *messages: dict[str, object]) -> dict[str, object]:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": list(messages)})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def content(services: Services, message_id: str) -> dict[str, object]:
    return services.messages.contents.get_many([("default", message_id)])[("default", message_id)]


def test_a_pending_message_is_replaced_and_only_the_new_content_is_sent(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None))
    assert post(api, message_payload("m1", subject="first"))["queued"] == 1
    answer = post(api, message_payload("m1", subject="second", priority=1, batch_code="spring"))
    assert answer == {"ok": True, "queued": 1, "rejected": []}
    assert content(services, "m1")["subject"] == "second"
    assert status(services, "m1")["batch_code"] == "spring" and status(services, "m1")["priority"] == 1
    drain(services)  # both queue records (old and new version) are delivered: one mail, the new one
    assert [m.message["Subject"] for m in sink.messages] == ["second"]


def test_resubmitting_a_sent_message_is_rejected_as_duplicate(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None))
    post(api, message_payload("m1", subject="first"))
    drain(services)
    answer = post(api, message_payload("m1", subject="second"))
    assert answer["queued"] == 0
    assert answer["rejected"] == [{"id": "m1", "reason": "id: already known; not queued again", "code": "duplicate"}]
    assert content(services, "m1")["subject"] == "first" and status(services, "m1")["status"] == "sent"


def test_a_message_claimed_first_is_not_replaced(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    post(api, message_payload("m1", subject="first"))
    assert services.messages.claim("default", "m1", now=int(time.time()), lease_seconds=60) is not None
    answer = post(api, message_payload("m1", subject="second"))
    assert answer["queued"] == 0 and [r["code"] for r in answer["rejected"]] == ["duplicate"]  # type: ignore[union-attr]
    assert content(services, "m1")["subject"] == "first" and status(services, "m1")["status"] == "sending"


def test_a_replacement_whose_hold_loses_to_a_claim_changes_nothing(api: TestClient, services: Services) -> None:
    """The claim lands between the replacement's read and its conditional hold: the hold fails."""
    api.post("/account", headers=AUTH, json=account_payload())
    post(api, message_payload("m1", subject="first"))
    now = int(time.time())
    current = services.messages.get("default", "m1")
    assert current is not None
    stolen = services.messages.claim("default", "m1", now=now, lease_seconds=60)
    assert stolen is not None  # the sender wins the race: the replacement's conditional hold must fail
    newer = NewMessage("default", "m1", "smtp-main", 2, now * 1000, None, None, "<x@example.com>", {"subject": "x"})
    assert services.messages.replace(newer, current, now=now, enqueue_grace=900) is False
    assert content(services, "m1")["subject"] == "first"


def test_a_deferred_message_is_replaced_with_its_new_deferred_ts(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    later, much_later = int(time.time()) + 3600, int(time.time()) + 7200
    post(api, message_payload("m1", subject="first", deferred_ts=later))
    assert post(api, message_payload("m1", subject="second", deferred_ts=much_later))["queued"] == 1
    assert status(services, "m1")["not_before"] == much_later and content(services, "m1")["subject"] == "second"
    assert services.messages.claim("default", "m1", now=later + 1, lease_seconds=60) is None  # not due yet


def test_rejections_carry_a_machine_readable_code(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    answer = post(
        api,
        message_payload("a", account_id="ghost"),
        message_payload("b", to=[]),
        message_payload("c"),
        message_payload("c"),
    )
    codes = [(r["id"], r["code"]) for r in answer["rejected"]]  # type: ignore[union-attr]
    assert sorted(codes) == [("a", "unknown_account"), ("b", "invalid"), ("c", "invalid")]
