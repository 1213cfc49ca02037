"""What the sender adds to a message so that what comes back after "250 OK" finds it: the signed
X-Genro-Mail-ID, the deployment's return path as envelope sender, the suppression list checked again at send
time, a PEC message's awaited acceptance; and what it records: a sandbox send, metadata and tags."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.logic.bounces.correlation import HEADER, deployment_key, parse_correlation_id
from mailproxy.logic.reports import report_entry
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain, status
from tests.smtp_servers import SinkFactory, SmtpSink


@pytest.fixture
def sink(smtp_sink_factory: SinkFactory) -> SmtpSink:
    return smtp_sink_factory("plain")


def add_account(api: TestClient, sink: SmtpSink, **fields: Any) -> None:
    payload = account_payload(port=sink.port, user=None, password=None, **fields)
    assert api.post("/account", headers=AUTH, json=payload).status_code == 200


def queue(api: TestClient, *messages: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": list(messages)})
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def test_every_sent_message_carries_a_signed_correlation_id_of_its_tenant_and_id(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink)
    (refused,) = queue(api, message_payload("forged", headers={HEADER: "forged.by.client"}))["rejected"]
    assert HEADER in refused["reason"]
    queue(api, message_payload("m1"))
    drain(services)
    (received,) = sink.messages
    (value,) = received.message.get_all(HEADER)
    assert parse_correlation_id(str(value), key=deployment_key(lambda_env)) == ("default", "m1")


def test_the_bounce_return_path_is_the_envelope_sender_of_messages_that_set_none(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink)
    config = {"enabled": False, "return_path": "bounces@proxy.example.com"}
    assert api.post("/instance/set_bounce_config", headers=AUTH, json=config).status_code == 200
    queue(api, message_payload("own", return_path="mine@example.com"), message_payload("plain"))
    drain(services)
    by_header = {status(services, m)["message_id_header"]: m for m in ("own", "plain")}
    senders = {by_header[str(received.message["Message-ID"])]: received.mail_from for received in sink.messages}
    assert senders == {"own": "mine@example.com", "plain": "bounces@proxy.example.com"}


def test_a_recipient_suppressed_while_the_message_waited_is_dropped_at_send_time(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink)
    queue(api, message_payload("m1", to=["Late <late@example.com>", "fine@example.com"]))
    services.suppressions.add("default", "LATE@example.com", "hard_bounce")
    drain(services)
    (received,) = sink.messages
    assert received.rcpt_tos == ["fine@example.com"]
    assert status(services, "m1")["status"] == "sent"


def test_a_message_whose_every_recipient_was_suppressed_meanwhile_ends_in_error_unsent(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink)
    queue(api, message_payload("m1", to=["gone@example.com"]))
    services.suppressions.add("default", "gone@example.com", "complaint")
    drain(services)
    assert sink.messages == []
    item = status(services, "m1")
    assert item["status"] == "error" and item["error"].startswith("suppressed")
    assert item["attempts"] == 0


def test_an_account_with_suppression_off_still_sends_to_suppressed_recipients(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink, suppression=False)
    services.suppressions.add("default", "gone@example.com", "hard_bounce")
    assert queue(api, message_payload("m1", to=["gone@example.com"]))["queued"] == 1
    drain(services)
    assert [received.rcpt_tos for received in sink.messages] == [["gone@example.com"]]


def test_ingestion_drops_suppressed_recipients_and_rejects_a_message_left_with_none(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink)
    services.suppressions.add("default", "gone@example.com", "hard_bounce")
    answer = queue(
        api,
        message_payload("kept", to=["gone@example.com", "fine@example.com"]),
        message_payload("dropped", to=["Gone <GONE@example.com>"]),
    )
    assert answer["queued"] == 1
    assert [(r["id"], r["code"]) for r in answer["rejected"]] == [("dropped", "suppressed")]
    drain(services)
    assert [received.rcpt_tos for received in sink.messages] == [["fine@example.com"]]


def test_a_pec_message_awaits_its_acceptance_receipt_once_sent(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink, is_pec_account=True, imap_host="127.0.0.1", imap_port=993)
    queue(api, message_payload("m1"))
    drain(services)
    sent_ts = int(status(services, "m1")["sent_ts"])
    assert services.mailbox_state.overdue("default", sent_before=sent_ts + 1) == [(sent_ts, "m1")]


def test_a_sandbox_send_is_recorded_and_reported_as_sandbox(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink, sandbox=True)
    queue(api, message_payload("m1"))
    drain(services)
    item = status(services, "m1")
    assert sink.messages == [] and item["status"] == "sent" and item["sandbox"] is True
    assert report_entry(item).wire()["sandbox"] is True
    assert api.get("/messages", headers=AUTH).json()["messages"][0]["sandbox"] is True


def test_metadata_and_tags_are_stored_listed_and_reported(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    add_account(api, sink)
    metadata = {"order": "o-42", "attempt": 2}
    queue(api, message_payload("m1", metadata=metadata, tags=["news"]), message_payload("m2"))
    page = api.get("/messages", headers=AUTH, params={"tag": "news"}).json()
    assert [(m["id"], m["metadata"], m["tags"]) for m in page["messages"]] == [("m1", metadata, ["news"])]
    drain(services)
    wire = report_entry(status(services, "m1")).wire()
    assert wire["metadata"] == metadata and wire["tags"] == ["news"]
    assert not {"metadata", "tags"} & set(report_entry(status(services, "m2")).wire())
