"""No message, account or tenant can stall the pipeline (docs/reliability.md, "Poison"): each case ends
with the message final (or refused at the door with a reason), delivered at most once, reported, and
the healthy mail of another account delivered and reported meanwhile. The report and tenant cases are in
test_poison_reports.py.

Real moto, real aiosmtpd sinks, hostile raw-socket SMTP servers, a real HTTP report receiver."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.dal.contents import EXPIRE_TAG, content_key
from mailproxy.dal.items import from_item, to_item
from mailproxy.dal.keys import CONTENT_SK, message_pk
from mailproxy.logic import delivery as delivery_module
from mailproxy.models import (
    MAX_ACCOUNT_ID_BYTES,
    MAX_HEADER_VALUE_BYTES,
    MAX_ID_BYTES,
    AccountIn,
    TenantIn,
)
from mailproxy.services import Services
from tests.attachment_server import attachment_server
from tests.conftest import AUTH, account_payload, message_payload
from tests.reliability.harness import World
from tests.smtp_servers import SinkFactory, SmtpSink, free_port

# DynamoDB's limits on key attributes, in UTF-8 bytes (table and index keys alike).
PARTITION_KEY_LIMIT = 2048
SORT_KEY_LIMIT = 1024
INDEX_KEYS = {"tenant_id": PARTITION_KEY_LIMIT, "rpt_pk": PARTITION_KEY_LIMIT,
              "rpt_sk": SORT_KEY_LIMIT, "due_pk": PARTITION_KEY_LIMIT}  # fmt: skip


class Killed(BaseException):
    """The sender invocation dies (a Lambda timeout, an out-of-memory kill): nothing catches it."""


def with_sink(world: World, factory: SinkFactory, account_id: str = "smtp-main", **account: Any) -> SmtpSink:
    sink = factory("plain")
    world.services.accounts.put(AccountIn(id=account_id, **{**sink.account(), **account}))
    world.sinks.append(sink)
    return sink


def healthy_and(world: World, factory: SinkFactory, *messages: dict[str, Any]) -> SmtpSink:
    """A second account with its own server, and a message for it submitted with the poison ones."""
    sink = with_sink(world, factory, "healthy")
    world.submit(*messages, message_payload("healthy-1", account_id="healthy"))
    return sink


def assert_healthy_delivered(world: World, sink: SmtpSink) -> None:
    assert world.status("healthy-1")["status"] == "sent"
    assert [str(m.message["Message-ID"]) for m in sink.messages] == [world.status("healthy-1")["message_id_header"]]
    assert world.final_reports()["healthy-1"] == 1


def assert_ended_and_reported(world: World, message_id: str, *, reason: str) -> dict[str, Any]:
    item = world.status(message_id)
    assert item["status"] == "error", item
    assert reason in item["error"], item["error"]
    reported = [i for i in world.endpoint.items() if i["id"] == message_id and i["error_ts"]]
    assert len(reported) == 1 and reason in reported[0]["error"]
    return item


def restart(world: World) -> None:
    world._poller = None  # a new process: a new poller; same queues, same table


def until_final(world: World, message_id: str, *, rounds: int = 40, step: float = 120.0) -> None:
    """Sender runs, reporter runs (its sweep brings back expired claims), virtual time moving on."""
    for _ in range(rounds):
        try:
            world.drain()
        except Killed:
            restart(world)
        world.report()
        if world.status(message_id)["status"] in ("sent", "error") and not world.services.outbox.pending(1):
            return
        world.clock.advance(step)
        time.sleep(0.05)
    raise AssertionError(f"{message_id} never ended: {world.status(message_id)}")


# ----------------------------------------------------------------------------------- bounded work


def test_message_killing_its_invocation_after_the_claim_ends_after_max_attempts(
    world: World, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invocation that dies after the claim (a Lambda timeout) never records an outcome; every
    claim counts, so the message ends after max_attempts claims instead of being re-claimed forever."""
    with_sink(world, smtp_sink_factory)
    healthy = healthy_and(world, smtp_sink_factory, message_payload("poison"))
    original = delivery_module.build_message

    def build(mail: Any, *, message_id: str, correlation: str) -> Any:
        if message_id == world.status("poison")["message_id_header"]:
            raise Killed
        return original(mail, message_id=message_id, correlation=correlation)

    monkeypatch.setattr(delivery_module, "build_message", build)
    # The first crash's record comes back by SQS's visibility timeout (the message, enqueued at once, has no
    # due entry); from the re-claim on, the sweep watches it and sends fresh records.
    for url in (world.services.queues.urgent_url, world.services.queues.bulk_url):
        world.services.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})
    until_final(world, "poison", step=world.services.settings.claim_lease_seconds + 1)
    max_attempts = world.services.settings.max_attempts
    item = assert_ended_and_reported(
        world, "poison", reason=f"gave up after {max_attempts} attempts without an outcome"
    )
    assert item["claims"] == max_attempts + 1  # the last claim only ends it
    assert world.transactions()[item["message_id_header"]] == 0
    until_final(world, "healthy-1")
    assert_healthy_delivered(world, healthy)


def with_attachment_auth(world: World, message_id: str, url: str, auth: dict[str, str]) -> None:
    """Rewrite a stored content as data written before today's checks could have left it."""
    attachment = {"filename": "a.txt", "storage_path": url, "fetch_mode": "http_url", "auth": auth}
    rewrite_content(world.services, message_id, attachments=[attachment])


def test_exception_after_the_claim_defers_that_message_alone(world: World, smtp_sink_factory: SinkFactory) -> None:
    """A stored attachment credential that no longer decrypts makes the fetch raise: the message is
    deferred with backoff and finally ends, its batch-mates are sent in the same batch."""
    with_sink(world, smtp_sink_factory)
    with attachment_server() as files:
        files.files["/a"] = b"never served"
        world.submit(message_payload("poison"))
        healthy = healthy_and(world, smtp_sink_factory)
        with_attachment_auth(world, "poison", files.base_url + "/a", {"method": "bearer", "token_enc": "fernet:junk"})
        world.drain()
        assert world.status("poison")["status"] == "deferred"
        assert "delivery failed unexpectedly (DecryptionError)" in world.status("poison")["deferred_reason"]
        assert world.status("healthy-1")["status"] == "sent"  # same batch, not dragged along
        until_final(world, "poison")
        assert files.hits["/a"] == 0
    item = assert_ended_and_reported(world, "poison", reason="delivery failed unexpectedly (DecryptionError)")
    assert f"gave up after {world.services.settings.max_attempts} attempts" in item["error"]
    assert_healthy_delivered(world, healthy)


def test_attachment_token_with_a_line_break_ends_its_message_naming_the_header_never_the_token(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    """Stored before tokens were checked at the door: the guarded HTTP client refuses the header by name."""
    with_sink(world, smtp_sink_factory)
    with attachment_server() as files:
        files.files["/a"] = b"never served"
        world.submit(message_payload("poison"))
        healthy = healthy_and(world, smtp_sink_factory)
        with_attachment_auth(world, "poison", files.base_url + "/a", {"method": "bearer", "token": "tok\r\nX-In: y"})
        world.settle(["poison", "healthy-1"])
        assert files.hits["/a"] == 0
    item = assert_ended_and_reported(world, "poison", reason="Authorization header holds a line break")
    assert "tok" not in json.dumps(world.endpoint.items()) and "tok" not in json.dumps(item)
    assert_healthy_delivered(world, healthy)


@contextmanager
def hostile_smtp_server(reply_to_ehlo: Callable[[socket.socket], None]) -> Iterator[int]:
    """A raw-socket SMTP server: a normal greeting, then `reply_to_ehlo` answers the EHLO."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"220 hostile.test ESMTP\r\n")
                conn.recv(1024)
                reply_to_ehlo(conn)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        listener.close()


def slow_endless_ehlo(conn: socket.socket) -> None:
    for n in range(100_000):
        conn.sendall(f"250-EXTENSION-{n}\r\n".encode())
        time.sleep(0.25)  # well inside the per-read timeout: only an overall deadline stops it


def flooding_ehlo(conn: socket.socket) -> None:
    conn.sendall(b"".join(f"250-EXTENSION-{n}\r\n".encode() for n in range(5000)))
    time.sleep(5)


@pytest.mark.parametrize(
    ("reply_to_ehlo", "reason"),
    [
        (slow_endless_ehlo, "the SMTP attempt ran past its deadline"),
        (flooding_ehlo, "server reply longer than 100 lines"),
    ],
    ids=["slow-endless-ehlo", "flooding-ehlo"],
)
def test_hostile_ehlo_reply_is_cut_and_the_message_ends(
    world: World, smtp_sink_factory: SinkFactory, reply_to_ehlo: Callable[[socket.socket], None], reason: str
) -> None:
    with hostile_smtp_server(reply_to_ehlo) as port:
        world.services.accounts.put(AccountIn(id="smtp-main", host="127.0.0.1", port=port, timeout=1.0))
        healthy = healthy_and(world, smtp_sink_factory, message_payload("poison"))
        world.drain()
        item = world.status("poison")
        assert item["status"] == "deferred" and reason in item["deferred_reason"], item
        assert world.status("healthy-1")["status"] == "sent"
        until_final(world, "poison")
    assert_ended_and_reported(world, "poison", reason=reason)
    assert_healthy_delivered(world, healthy)


def test_huge_header_is_refused_at_the_door_naming_the_header_and_the_limit(api: TestClient) -> None:
    assert api.post("/account", headers=AUTH, json=account_payload()).status_code == 200
    message = message_payload("big-header", headers={"X-Big": "word " * 60_000})
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message]}).json()
    assert answer["queued"] == 0
    (rejection,) = answer["rejected"]
    assert "headers" in rejection["reason"] and "'X-Big'" in rejection["reason"]
    assert str(MAX_HEADER_VALUE_BYTES) in rejection["reason"]
    many = {f"X-H{n}": "v" * 8000 for n in range(5)}
    answer = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload("many", headers=many)]}
    ).json()
    assert "headers are" in answer["rejected"][0]["reason"] and "32768" in answer["rejected"][0]["reason"]


def test_huge_header_stored_before_the_cap_is_refused_at_send_time_without_folding(
    world: World, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_sink(world, smtp_sink_factory)
    healthy = healthy_and(world, smtp_sink_factory, message_payload("poison"))
    rewrite_content(world.services, "poison", headers={"X-Big": "word " * 80_000})
    built: list[str] = []
    original = delivery_module.build_message
    monkeypatch.setattr(
        delivery_module, "build_message", lambda mail, **kw: built.append(kw["message_id"]) or original(mail, **kw)
    )
    world.settle(["poison", "healthy-1"])
    assert_ended_and_reported(world, "poison", reason=f"at most {MAX_HEADER_VALUE_BYTES}")
    assert built == [world.status("healthy-1")["message_id_header"]]  # the poison one was never folded
    assert_healthy_delivered(world, healthy)


def test_attachments_over_the_message_cap_end_the_message_at_send_time(
    world: World, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attachment under the per-attachment cap, together over GMP_MESSAGE_MAX_BYTES."""
    from mailproxy import runtime
    from mailproxy.config import settings as cached_settings

    monkeypatch.setenv("GMP_MESSAGE_MAX_BYTES", "3000")
    cached_settings.cache_clear()
    runtime.services.cache_clear()
    with_sink(world, smtp_sink_factory)
    two = [{"filename": f"{n}.bin", "content": "QUFB" * 500} for n in range(2)]  # 1,500 bytes each
    healthy = healthy_and(world, smtp_sink_factory, message_payload("poison", attachments=two))
    world.settle(["poison", "healthy-1"])
    assert_ended_and_reported(world, "poison", reason="message larger than 3000 bytes with its attachments")
    assert_healthy_delivered(world, healthy)


def rewrite_content(services: Services, message_id: str, **changes: Any) -> None:
    table = services.settings.messages_table
    key = {"pk": {"S": message_pk("default", message_id)}, "sk": {"S": CONTENT_SK}}
    item = from_item(services.dynamodb.get_item(TableName=table, Key=key)["Item"])
    content = {**json.loads(zlib.decompress(item["z"])), **changes}
    services.dynamodb.put_item(
        TableName=table, Item=to_item({**item, "z": zlib.compress(json.dumps(content).encode())})
    )


def test_long_address_string_is_refused_before_any_address_is_parsed(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 comma-separated addresses (~100 KB) used to cost ~2.8 s of CPU before the cap refused them."""
    import mailproxy.models as models

    parsed: list[str] = []
    original = models.parse_address
    monkeypatch.setattr(models, "parse_address", lambda value: parsed.append(value) or original(value))
    assert api.post("/account", headers=AUTH, json=account_payload()).status_code == 200
    many = ", ".join(f"user{n}@example.com" for n in range(5000))
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m", to=many)]})
    (rejection,) = answer.json()["rejected"]
    assert rejection["reason"].startswith("to:") and "100 addresses" in rejection["reason"]
    assert not [p for p in parsed if p.startswith("user")]
    hundred_and_one = ", ".join(f"user{n}@example.com" for n in range(101))
    answer = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m", cc=hundred_and_one)]}
    )
    assert "at most 100 addresses, not 101" in answer.json()["rejected"][0]["reason"]
    assert not [p for p in parsed if p.startswith("user")]
    quoted = '"Doe, Jane" <jane@example.com>, bob@example.com'
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("q", to=quoted)]})
    assert answer.json()["queued"] == 1  # a comma inside a quoted name does not split it


# ----------------------------------------------------------------------------------- bounded keys


def test_longest_allowed_ids_fit_every_key_through_send_report_and_listing(
    world: World, smtp_sink_factory: SinkFactory, api: TestClient
) -> None:
    tenant_id = "t" * 64
    account_id = "\U0001f4e7" * (MAX_ACCOUNT_ID_BYTES // 4)  # 4 bytes each in UTF-8
    message_id = "\U0001f4e8" * (MAX_ID_BYTES // 4)
    batch_code = "\U0001f4e9" * 64
    world.services.tenants.put(TenantIn(id=tenant_id))
    sink = smtp_sink_factory("plain")
    world.sinks.append(sink)
    world.services.accounts.put(AccountIn(id=account_id, tenant_id=tenant_id, **sink.account()))
    world.submit(message_payload(message_id, tenant_id=tenant_id, account_id=account_id, batch_code=batch_code))
    world.drain()
    item = world.services.messages.get(tenant_id, message_id)
    assert item is not None and item["status"] == "sent"
    assert_keys_fit(world.services)
    world.stream_to_outbox()  # the longest keys are the outbox's index keys: the stream could not deliver it
    item = world.services.messages.get(tenant_id, message_id)
    assert item is not None and "rpt_pk" in item  # in the outbox: its index keys exist now
    assert_keys_fit(world.services)
    world.report()
    assert [i["id"] for i in world.endpoint.items()] == [message_id]
    listed = api.get("/messages", headers=AUTH, params={"tenant_id": tenant_id}).json()["messages"]
    assert [m["id"] for m in listed] == [message_id]
    assert_keys_fit(world.services)

    too_long = {"id": message_id + "x", "account_id": account_id + "x"}
    answer = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload(**too_long, tenant_id=tenant_id)]}
    ).json()
    reason = answer["rejected"][0]["reason"]
    assert f"id: Value error, at most {MAX_ID_BYTES} bytes in UTF-8" in reason
    assert f"account_id: Value error, at most {MAX_ACCOUNT_ID_BYTES} bytes" in reason


def assert_keys_fit(services: Services) -> None:
    """moto does not check index keys set by UpdateItem (DynamoDB does): every key is measured here."""
    for table in (services.settings.messages_table, services.settings.config_table):
        for raw in services.dynamodb.scan(TableName=table)["Items"]:
            item = from_item(raw)
            sizes = {"pk": PARTITION_KEY_LIMIT, "sk": SORT_KEY_LIMIT, **INDEX_KEYS}
            for name, limit in sizes.items():
                if isinstance(item.get(name), str):
                    size = len(item[name].encode())
                    assert size <= limit * 3 // 4, f"{table} {name}: {size} bytes; DynamoDB's limit is {limit}"


# ---------------------------------------------------------------------------------- times that fit


def test_account_timeout_over_the_sender_budget_is_a_422_naming_the_limit(api: TestClient) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(timeout=120))
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("timeout: at most 50 seconds") and "GMP_SENDER_TIMEOUT 60" in answer.text
    assert api.post("/account", headers=AUTH, json=account_payload(timeout=50)).status_code == 200


def test_account_stored_with_a_timeout_over_the_budget_still_sends(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    """Stored before the cap: its timeout is clamped, so the record is not handed back forever."""
    sink = with_sink(world, smtp_sink_factory)
    key = {"pk": {"S": "ACCOUNT#default"}, "sk": {"S": "smtp-main"}}
    world.services.dynamodb.update_item(
        TableName=world.services.settings.config_table,
        Key=key,
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "timeout"},
        ExpressionAttributeValues={":t": {"N": "120"}},
    )
    world.submit(message_payload("m1"))
    world.settle(["m1"])
    assert world.status("m1")["status"] == "sent" and len(sink.messages) == 1


def test_claim_lease_outlives_the_sender_timeout(services: Services) -> None:
    settings = services.settings.model_copy(update={"lease_seconds": None, "sender_timeout": 300})
    assert settings.claim_lease_seconds > settings.sender_timeout


def test_content_of_a_suspended_message_outlives_the_retention(
    world: World, smtp_sink_factory: SinkFactory, api: TestClient
) -> None:
    services = world.services
    sink = with_sink(world, smtp_sink_factory)
    assert api.post("/commands/suspend", headers=AUTH, json={}).status_code == 200
    large = incompressible_body()
    world.submit(message_payload("held", body=large), message_payload("small"))
    bucket = services.settings.body_bucket
    assert "expires_at" not in content_item(services, "small")
    assert services.s3.get_object_tagging(Bucket=bucket, Key=content_key("default", "held"))["TagSet"] == [
        {"Key": EXPIRE_TAG, "Value": "no"}
    ]
    assert api.post("/commands/activate", headers=AUTH, json={}).status_code == 200
    assert content_item(services, "small")["expires_at"] > time.time()
    assert services.s3.get_object_tagging(Bucket=bucket, Key=content_key("default", "held"))["TagSet"] == [
        {"Key": EXPIRE_TAG, "Value": "yes"}
    ]
    world.settle(["held", "small"])
    assert {world.status(i)["status"] for i in ("held", "small")} == {"sent"} and len(sink.messages) == 2
    assert "Contents" not in services.s3.list_objects_v2(Bucket=bucket, Prefix="contents/")  # deleted once sent


def test_content_of_a_far_deferred_message_has_no_expiry_until_it_ends(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    with_sink(world, smtp_sink_factory)
    in_a_year = int(time.time()) + 365 * 86400
    world.submit(message_payload("later", deferred_ts=in_a_year))
    assert "expires_at" not in content_item(world.services, "later")
    world.clock.advance(365 * 86400 + 60)
    world.report()  # the sweep finds it due
    world.settle(["later"])
    assert world.status("later")["status"] == "sent"
    assert content_item(world.services, "later")["expires_at"] > world.clock()


def test_content_gone_from_s3_ends_the_message_instead_of_looping(world: World, smtp_sink_factory: SinkFactory) -> None:
    with_sink(world, smtp_sink_factory)
    large = incompressible_body()
    healthy = healthy_and(world, smtp_sink_factory, message_payload("gone", body=large))
    world.services.s3.delete_object(Bucket=world.services.settings.body_bucket, Key=content_key("default", "gone"))
    world.settle(["gone", "healthy-1"])
    assert_ended_and_reported(world, "gone", reason="message content is missing")
    assert_healthy_delivered(world, healthy)


def incompressible_body() -> str:
    """Over the inline limit once compressed: the content goes to S3."""
    return base64.b64encode(os.urandom(150_000)).decode()


def content_item(services: Services, message_id: str) -> dict[str, Any]:
    answer = services.dynamodb.get_item(
        TableName=services.settings.messages_table,
        Key={"pk": {"S": message_pk("default", message_id)}, "sk": {"S": CONTENT_SK}},
    )
    return from_item(answer["Item"])


# ------------------------------------------------------------------------- tenant-scoped attachments


def test_attachment_credentials_are_stored_encrypted_and_still_used(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    with_sink(world, smtp_sink_factory)
    with attachment_server() as files:
        files.files["/a.txt"] = b"attached"
        files.required_authorization = "Bearer s3cr3t-attachment-token"
        send_with_sealed_token(world, files.base_url)


def send_with_sealed_token(world: World, base_url: str) -> None:
    attachment = {"filename": "a.txt", "storage_path": base_url + "/a.txt",
                  "auth": {"method": "bearer", "token": "s3cr3t-attachment-token"}}  # fmt: skip
    world.submit(message_payload("m1", attachments=[attachment]))
    stored = zlib.decompress(content_item(world.services, "m1")["z"]).decode()
    assert "s3cr3t-attachment-token" not in stored and "token_enc" in stored
    world.settle(["m1"])
    assert world.status("m1")["status"] == "sent"
    (received,) = world.sinks[0].messages
    parts = [p.get_payload(decode=True) for p in received.message.walk() if p.get_filename() == "a.txt"]
    assert parts == [b"attached"]
