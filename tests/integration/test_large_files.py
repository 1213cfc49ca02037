"""A tenant's `large_file_config` (UPSTREAM-API.md §5): stored and shown by the API, applied by the sender
to attachments above `max_size_mb`: warn, reject, or rewrite to a presigned S3 link (moto in-process)."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.dal.contents import DOWNLOADS_PREFIX, ContentStore
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain
from tests.smtp_servers import SinkFactory, SmtpSink

MB = 1024 * 1024
BIG = b"B" * (MB + 1)  # just over a 1 MB limit
SMALL = b"small file"


def tenant(api: TestClient, **large_file_config: Any) -> None:
    answer = api.post("/tenant", headers=AUTH, json={"id": "acme", "large_file_config": large_file_config})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def sink(api: TestClient, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None, tenant_id="acme"))
    return sink


def send(api: TestClient, services: Services, *, html: bool = False) -> dict[str, Any]:
    extra: dict[str, Any] = {"body": "<html><body><p>Hello</p></body></html>", "content_type": "html"} if html else {}
    message = message_payload(
        "m1",
        tenant_id="acme",
        attachments=[
            {"filename": "big.bin", "content": base64.b64encode(BIG).decode()},
            {"filename": "small.txt", "content": base64.b64encode(SMALL).decode()},
        ],
        **extra,
    )
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message]}).json()
    assert answer["queued"] == 1, answer
    drain(services)
    item = services.messages.get("acme", "m1")
    assert item is not None
    return item


def attached(sink: SmtpSink) -> dict[str, Any]:
    return {a.get_filename() or "": a.get_payload(decode=True) for a in sink.messages[0].message.iter_attachments()}


def body_of(sink: SmtpSink, kind: str = "plain") -> str:
    part = sink.messages[0].message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


# --------------------------------------------------------------------------- the configuration


def test_the_config_is_stored_with_defaults_and_shown(api: TestClient) -> None:
    tenant(api, enabled=True, action="rewrite", storage_url="s3://ignored")
    [shown] = [t for t in api.get("/tenants", headers=AUTH).json()["tenants"] if t["id"] == "acme"]
    assert shown["large_file_config"] == {
        "enabled": True,
        "max_size_mb": 10.0,
        "action": "rewrite",
        "file_ttl_days": 30,
    }


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"action": "delete"}, "action"),
        ({"max_size_mb": 0}, "max_size_mb"),
        ({"max_size_mb": 1e9}, "max_size_mb"),
        ({"file_ttl_days": 0}, "file_ttl_days"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(api: TestClient, config: dict[str, Any], field: str) -> None:
    answer = api.post("/tenant", headers=AUTH, json={"id": "acme", "large_file_config": config})
    assert answer.status_code == 422 and field in answer.text


# --------------------------------------------------------------------------- at send time


def test_disabled_config_attaches_everything(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    tenant(api, enabled=False, max_size_mb=1, action="reject")
    assert send(api, services)["status"] == "sent"
    assert attached(sink) == {"big.bin": BIG, "small.txt": SMALL}


def test_warn_attaches_the_large_file_and_logs_it(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    tenant(api, enabled=True, max_size_mb=1, action="warn")
    assert send(api, services)["status"] == "sent"
    assert attached(sink) == {"big.bin": BIG, "small.txt": SMALL}
    assert "over the tenant's large-file limit" in caplog.text


def test_reject_ends_the_message_in_error_without_retry(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    tenant(api, enabled=True, max_size_mb=1, action="reject")
    item = send(api, services)
    assert item["status"] == "error"
    assert item["error"] == "Attachment 'big.bin' (1.0 MB) exceeds limit (1 MB)"
    assert sink.messages == []


def test_rewrite_uploads_the_file_and_links_it_in_the_text_body(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    tenant(api, enabled=True, max_size_mb=1, action="rewrite", file_ttl_days=30)
    assert send(api, services)["status"] == "sent"
    assert attached(sink) == {"small.txt": SMALL}
    body = body_of(sink)
    assert "Large attachments available for download" in body and "big.bin (1.0 MB): " in body
    url = body.split("big.bin (1.0 MB): ", 1)[1].split()[0]
    parsed = urllib.parse.urlparse(url)
    query = urllib.parse.parse_qs(parsed.query)
    assert query["X-Amz-Expires"] == ["604800"]  # 30 days asked, 7 days given: the SigV4 maximum
    key = urllib.parse.unquote(parsed.path).split(f"/{services.settings.body_bucket}/", 1)[-1].lstrip("/")
    assert key.startswith(f"{DOWNLOADS_PREFIX}acme/m1/") and key.endswith("/big.bin")
    stored = services.s3.get_object(Bucket=services.settings.body_bucket or "", Key=key)
    assert stored["Body"].read() == BIG
    tags = services.s3.get_object_tagging(Bucket=services.settings.body_bucket or "", Key=key)["TagSet"]
    assert tags == [{"Key": "gmp-expire", "Value": "yes"}]


def test_rewrite_in_an_html_body_adds_a_linked_list_before_the_body_end(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    tenant(api, enabled=True, max_size_mb=1, action="rewrite", file_ttl_days=2)
    assert send(api, services, html=True)["status"] == "sent"
    html = body_of(sink, "html")
    assert "<p>Hello</p><hr><p>Large attachments available for download:</p><ul><li><a href=" in html
    assert html.rstrip().endswith("</body></html>") and "X-Amz-Expires=172800" in html


def test_a_failed_upload_falls_back_to_a_normal_attachment(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant(api, enabled=True, max_size_mb=1, action="rewrite")

    def throttled(*args: Any, **kwargs: Any) -> str:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate"}}, "PutObject")

    # The sender's own Services (runtime) holds another ContentStore: the fault goes on the class.
    monkeypatch.setattr(ContentStore, "put_download", throttled)
    assert send(api, services)["status"] == "sent"
    assert attached(sink) == {"big.bin": BIG, "small.txt": SMALL}
    assert "Large attachments" not in body_of(sink)
