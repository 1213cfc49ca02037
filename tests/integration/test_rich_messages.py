"""Text and HTML together, inline images, one-click unsubscribe: what a real SMTP sink receives."""

from __future__ import annotations

import base64
import email
from email import policy
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain, status
from tests.smtp_servers import SinkFactory, SmtpSink

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
BODY = "Caffè for everyone\nsecond line\n"
HTML = '<html><body><p>Caffè <img src="cid:logo@example.com"></p></body></html>'


@pytest.fixture
def sink(api: TestClient, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None))
    return sink


def send(api: TestClient, services: Services, sink: SmtpSink, **fields: Any) -> EmailMessage:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1", **fields)]})
    assert answer.json()["queued"] == 1, answer.json()
    drain(services)
    assert status(services, "m1")["status"] == "sent"
    (received,) = sink.messages
    return received.message


def logo(**overrides: Any) -> dict[str, Any]:
    return {
        "filename": "logo.png",
        "content": base64.b64encode(PNG).decode(),
        "content_id": "logo@example.com",
        "disposition": "inline",
        **overrides,
    }


def text_of(part: MIMEPart) -> str:
    return str(part.get_content()).replace("\r\n", "\n")


def test_body_and_html_arrive_as_alternative_with_text_first(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    message = send(api, services, sink, body=BODY, html=HTML)
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain" and text.get_content_charset() == "utf-8"
    assert html.get_content_type() == "text/html" and html.get_content_charset() == "utf-8"
    assert text_of(text) == BODY
    assert "Caffè" in text_of(html)


def test_inline_image_is_related_to_the_html_and_attachments_stay_outside(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    report = {"filename": "report.pdf", "content": base64.b64encode(b"%PDF-1.4").decode()}
    message = send(api, services, sink, body=BODY, html=HTML, attachments=[logo(), report])
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.iter_parts()
    assert text_of(text) == BODY
    assert related.get_content_type() == "multipart/related"
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png" and image.get_content_disposition() == "inline"
    assert image["Content-ID"] == "<logo@example.com>"
    assert "cid:" + image["Content-ID"].strip("<>") in text_of(html)
    assert image.get_payload(decode=True) == PNG
    assert attachment.get_filename() == "report.pdf" and attachment.get_content_disposition() == "attachment"


def test_html_only_body_takes_inline_images_too(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    message = send(api, services, sink, body=HTML, content_type="html", attachments=[logo()])
    assert message.get_content_type() == "multipart/related"
    html, image = message.iter_parts()
    assert html.get_content_type() == "text/html" and image["Content-ID"] == "<logo@example.com>"


def test_one_click_unsubscribe_headers_are_set_from_the_field(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    target = {"url": "https://lists.example.com/u/abc", "mailto": "unsubscribe@example.com"}
    message = send(api, services, sink, list_unsubscribe=target)
    # folded after the field name (the line is over 78 characters): the value starts on the next line
    assert message["List-Unsubscribe"].strip() == "<https://lists.example.com/u/abc>, <mailto:unsubscribe@example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailto_only_unsubscribe_is_not_one_click(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    message = send(api, services, sink, list_unsubscribe={"mailto": "unsubscribe@example.com"})
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@example.com>"
    assert message["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"attachments": [logo()]}, "html body"),
        ({"html": HTML, "attachments": [logo(), logo(filename="again.png")]}, "unique"),
        ({"html": HTML, "attachments": [logo(disposition="attachment")]}, "content_id"),
        ({"html": HTML, "attachments": [logo(content_id="bad id")]}, "content_id"),
        ({"list_unsubscribe": {}}, "list_unsubscribe"),
        ({"list_unsubscribe": {"url": "http://lists.example.com/u"}}, "list_unsubscribe"),
        ({"list_unsubscribe": {"mailto": "not an address"}}, "list_unsubscribe"),
        ({"headers": {"List-Unsubscribe": "<https://x.example>"}}, "List-Unsubscribe"),
        ({"headers": {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}, "List-Unsubscribe-Post"),
        ({"html": "x" * 4_000_001}, "html"),
    ],
)
def test_bad_rich_fields_are_rejected_naming_the_field(
    api: TestClient, lambda_env: Settings, services: Services, fields: dict[str, Any], named: str
) -> None:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1", **fields)]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["queued"] == 0
    (rejection,) = body["rejected"]
    assert rejection["code"] == "invalid" and named in rejection["reason"], rejection


def add_sandbox_account(api: TestClient, sink: SmtpSink, **fields: Any) -> None:
    payload = account_payload(id="sandbox", port=sink.port, user=None, password=None, sandbox=True, **fields)
    assert api.post("/account", headers=AUTH, json=payload).status_code == 200


def test_sandbox_account_builds_records_sent_and_connects_to_nothing(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_sandbox_account(api, sink)
    payload = message_payload("m1", account_id="sandbox", body=BODY, html=HTML, attachments=[logo()])
    assert api.post("/commands/add-messages", headers=AUTH, json={"messages": [payload]}).json()["queued"] == 1
    drain(services)
    item = status(services, "m1")
    assert item["status"] == "sent" and item["attempts"] == 0
    assert item["history"][-1]["reason"] == "sandbox: not delivered"
    assert sink.messages == [] and sink.connections == 0

    raw = api.get("/messages/m1/raw", headers=AUTH)
    assert raw.status_code == 200 and raw.headers["content-type"] == "message/rfc822"
    kept = email.message_from_bytes(raw.content, policy=policy.default)
    assert kept.get_content_type() == "multipart/alternative" and kept["Subject"] == "Hello"
    assert api.get("/messages/m1/raw", headers=AUTH, params={"tenant_id": "other"}).status_code == 404


def test_raw_is_404_for_a_real_send_unless_the_account_keeps_it(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    send(api, services, sink)
    answer = api.get("/messages/m1/raw", headers=AUTH)
    assert answer.status_code == 404 and "m1" in answer.json()["error"]
    kept = account_payload(port=sink.port, user=None, password=None, keep_raw_seconds=3600)
    assert api.post("/account", headers=AUTH, json=kept).status_code == 200
    payload = message_payload("m2", body=BODY)
    assert api.post("/commands/add-messages", headers=AUTH, json={"messages": [payload]}).json()["queued"] == 1
    drain(services)
    assert len(sink.messages) == 2
    raw = api.get("/messages/m2/raw", headers=AUTH)
    assert raw.status_code == 200 and raw.content == sink.messages[1].data


@pytest.mark.parametrize("seconds", [0, 59, 7 * 86_400 + 1])
def test_keep_raw_seconds_is_bounded(api: TestClient, lambda_env: Settings, seconds: int) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(keep_raw_seconds=seconds))
    assert answer.status_code == 422 and "keep_raw_seconds" in answer.text
