"""`{MD5:hash}` filename markers and `auth.method: "none"` (UPSTREAM-API.md §1 attachment), end to end:
the API, the sender, a real attachment server and a real SMTP sink."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.dal.schema import LocalResources
from mailproxy.services import Services
from tests.attachment_server import AttachmentServer, attachment_server
from tests.conftest import AUTH, account_payload, make_settings, message_payload
from tests.integration.test_attachments import attached, send
from tests.integration.test_sender import drain
from tests.smtp_servers import SinkFactory, SmtpSink

LOGO = b"PNG logo bytes"
LOGO_MD5 = hashlib.md5(LOGO).hexdigest()  # noqa: S324 - the marker's hash, not security


@pytest.fixture
def settings(aws: LocalResources) -> Settings:
    return make_settings(aws, attachment_max_bytes=1_000, backoff_base=1.0)


@pytest.fixture
def files() -> Iterator[AttachmentServer]:
    with attachment_server() as server:
        yield server


@pytest.fixture
def sink(api: TestClient, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None))
    return sink


# --------------------------------------------------------------------------- through the API


def test_a_name_that_is_only_a_marker_is_refused_naming_the_filename(api: TestClient) -> None:
    answer = api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={
            "messages": [message_payload("m1", attachments=[{"filename": f"{{MD5:{LOGO_MD5}}}", "content": "eA=="}])]
        },
    )
    rejected = answer.json()["rejected"] if answer.status_code == 200 else [answer.json()]
    assert "filename" in str(rejected) and "marker" in str(rejected)


# --------------------------------------------------------------------------- through the sender


def test_marked_attachments_reach_the_recipient_without_the_marker_and_are_fetched_once(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/logo.png"] = LOGO
    reference = {"filename": f"logo{{MD5:{LOGO_MD5}}}.png", "storage_path": files.base_url + "/logo.png"}
    api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={"messages": [message_payload(f"m{n}", attachments=[reference]) for n in range(5)]},
    )
    drain(services)
    assert len(sink.messages) == 5
    assert all(attached(sink, n) == {"logo.png": LOGO} for n in range(5))
    assert files.hits["/logo.png"] <= 2  # once per sender batch (the five may arrive in one or two batches)


def test_a_marker_that_does_not_match_the_content_ends_in_error(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/logo.png"] = b"something else"
    reference = {"filename": f"logo{{MD5:{LOGO_MD5}}}.png", "storage_path": files.base_url + "/logo.png"}
    item = send(api, services, reference)
    assert item["status"] == "error" and "content_md5 does not match" in item["error"]
    assert sink.messages == []


def test_auth_none_sends_no_credentials_even_when_the_tenant_has_client_auth(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, files: AttachmentServer
) -> None:
    sink = smtp_sink_factory("plain")
    api.post(
        "/tenant",
        headers=AUTH,
        json={
            "id": "acme",
            "client_base_url": files.base_url + "/app",
            "client_auth": {"method": "bearer", "token": "acme-token"},
        },
    )
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None, tenant_id="acme"))
    files.files["public/terms.pdf"] = b"terms"
    files.files["private/42.pdf"] = b"contract"
    attachments = [
        {"filename": "terms.pdf", "storage_path": "public/terms.pdf", "auth": {"method": "none"}},
        {"filename": "42.pdf", "storage_path": "private/42.pdf"},
    ]
    answer = api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={"messages": [message_payload("m1", tenant_id="acme", attachments=attachments)]},
    ).json()
    assert answer["queued"] == 1, answer
    drain(services)
    assert services.messages.get("acme", "m1")["status"] == "sent"  # type: ignore[index]
    assert attached(sink) == {"terms.pdf": b"terms", "42.pdf": b"contract"}
    assert files.authorizations == [None, "Bearer acme-token"]
