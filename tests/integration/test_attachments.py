"""Attachments by reference, fetched by the sender: base64:, http_url, the tenant's endpoint, s3."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.dal.schema import LocalResources
from mailproxy.services import Services
from tests.attachment_server import AttachmentServer, attachment_server
from tests.conftest import AUTH, account_payload, make_settings, message_payload
from tests.integration.test_sender import drain, status
from tests.smtp_servers import SinkFactory, SmtpSink


@pytest.fixture
def settings(aws: LocalResources) -> Settings:
    return make_settings(aws, attachment_buckets="client-files", attachment_max_bytes=1_000, backoff_base=1.0)


@pytest.fixture
def files() -> Iterator[AttachmentServer]:
    with attachment_server() as server:
        yield server


@pytest.fixture
def sink(api: TestClient, smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    api.post("/account", headers=AUTH, json=account_payload(port=sink.port, user=None, password=None))
    return sink


def send(api: TestClient, services: Services, *attachments: dict[str, Any], message_id: str = "m1") -> dict[str, Any]:
    answer = api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={"messages": [message_payload(message_id, attachments=list(attachments))]},
    ).json()
    assert answer["queued"] == 1, answer
    drain(services)
    return status(services, message_id)


def attached(sink: SmtpSink, index: int = 0) -> dict[str, bytes]:
    return {a.get_filename() or "": a.get_payload(decode=True) for a in sink.messages[index].message.iter_attachments()}


def test_base64_storage_path(api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink) -> None:
    item = send(api, services, {"filename": "a.txt", "storage_path": "base64:" + base64.b64encode(b"inline").decode()})
    assert item["status"] == "sent" and attached(sink) == {"a.txt": b"inline"}


def test_http_url_with_bearer_auth(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/docs/invoice.pdf"] = b"%PDF-1.4 invoice"
    files.required_authorization = "Bearer file-token"
    item = send(
        api,
        services,
        {
            "filename": "invoice.pdf",
            "storage_path": files.base_url + "/docs/invoice.pdf",
            "auth": {"method": "bearer", "token": "file-token"},
        },
    )
    assert item["status"] == "sent" and attached(sink) == {"invoice.pdf": b"%PDF-1.4 invoice"}


def test_http_url_basic_auth(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/f"] = b"x"
    files.required_authorization = "Basic " + base64.b64encode(b"u:p").decode()
    item = send(
        api,
        services,
        {
            "filename": "f.bin",
            "storage_path": files.base_url + "/f",
            "fetch_mode": "http_url",
            "auth": {"method": "basic", "user": "u", "password": "p"},
        },
    )
    assert item["status"] == "sent"


def test_http_404_ends_in_error_with_the_reason(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    item = send(api, services, {"filename": "gone.txt", "storage_path": files.base_url + "/gone"})
    assert item["status"] == "error" and "HTTP 404" in item["error"]
    assert sink.messages == []


def test_temporary_fetch_failure_defers_then_sends(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    import time

    files.files["/flaky"] = b"finally"
    files.failures["/flaky"] = [503]
    item = send(api, services, {"filename": "f.txt", "storage_path": files.base_url + "/flaky"})
    assert item["status"] == "deferred" and "503" in item["deferred_reason"]
    time.sleep(max(0, item["deferred_ts"] - time.time()) + 1.1)
    drain(services)
    assert status(services, "m1")["status"] == "sent" and attached(sink) == {"f.txt": b"finally"}


def test_attachment_over_the_size_cap_ends_in_error(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/big"] = b"x" * 1_001
    item = send(api, services, {"filename": "big.bin", "storage_path": files.base_url + "/big"})
    assert item["status"] == "error" and "larger than 1000 bytes" in item["error"]


def test_tenant_endpoint_mode_posts_the_storage_path_with_the_tenants_auth(
    api: TestClient,
    lambda_env: Settings,
    services: Services,
    smtp_sink_factory: SinkFactory,
    files: AttachmentServer,
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
    files.files["contracts/42.pdf"] = b"contract"
    files.required_authorization = "Bearer acme-token"
    answer = api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={
            "messages": [
                message_payload(
                    "m1", tenant_id="acme", attachments=[{"filename": "42.pdf", "storage_path": "contracts/42.pdf"}]
                )
            ]
        },
    ).json()
    assert answer["queued"] == 1
    drain(services)
    assert services.messages.get("acme", "m1")["status"] == "sent"  # type: ignore[index]
    assert attached(sink) == {"42.pdf": b"contract"}


def test_s3_reference_from_an_allowed_bucket_only(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink
) -> None:
    services.s3.create_bucket(Bucket="client-files")
    services.s3.create_bucket(Bucket="private-stuff")
    services.s3.put_object(Bucket="client-files", Key="tenants/default/a/b.txt", Body=b"from s3")
    services.s3.put_object(Bucket="client-files", Key="tenants/acme/a/b.txt", Body=b"acme's")
    services.s3.put_object(Bucket="private-stuff", Key="tenants/default/secret.txt", Body=b"no")
    reference = {"filename": "b.txt", "storage_path": "s3://client-files/tenants/default/a/b.txt"}
    assert send(api, services, reference)["status"] == "sent"
    assert attached(sink) == {"b.txt": b"from s3"}
    refused = send(
        api,
        services,
        {"filename": "s.txt", "storage_path": "s3://private-stuff/tenants/default/secret.txt"},
        message_id="m2",
    )
    assert refused["status"] == "error" and "not allowed" in refused["error"]
    # A shared bucket: another tenant's objects are out of reach, whatever the key says.
    other = send(
        api, services, {"filename": "a.txt", "storage_path": "s3://client-files/tenants/acme/a/b.txt"}, message_id="m3"
    )
    assert other["status"] == "error" and "not under this tenant's prefix 'tenants/default/'" in other["error"]


def test_identical_content_md5_is_fetched_once_per_batch(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/logo.png"] = b"PNG logo"
    md5 = hashlib.md5(b"PNG logo").hexdigest()  # noqa: S324
    reference = {"filename": "logo.png", "storage_path": files.base_url + "/logo.png", "content_md5": md5}
    api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={"messages": [message_payload(f"m{n}", attachments=[reference]) for n in range(5)]},
    )
    drain(services)
    assert len(sink.messages) == 5
    assert files.hits["/logo.png"] <= 2  # once per sender batch (the five may arrive in one or two batches)


def test_content_md5_mismatch_ends_in_error(
    api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink, files: AttachmentServer
) -> None:
    files.files["/x"] = b"actual"
    item = send(api, services, {"filename": "x", "storage_path": files.base_url + "/x", "content_md5": "0" * 32})
    assert item["status"] == "error" and "content_md5" in item["error"]


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [
        ({"filename": "a"}, "exactly one of content"),
        ({"filename": "a", "content": "x", "storage_path": "y"}, "exactly one"),
        ({"filename": "a", "storage_path": "base64:%%%"}, "base64"),
        ({"filename": "a", "storage_path": "s3://Bad_Bucket", "fetch_mode": "s3"}, "s3://bucket/key"),
        ({"filename": "a", "storage_path": "x", "fetch_mode": "ftp"}, "fetch_mode"),
    ],
)
def test_bad_attachment_reference_is_rejected_naming_the_field(
    api: TestClient, attachment: dict[str, Any], expected: str
) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    answer = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1", attachments=[attachment])]}
    ).json()
    [rejection] = answer["rejected"]
    assert rejection["reason"].startswith("attachments.0") and expected in rejection["reason"]
