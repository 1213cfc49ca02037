"""Hostile input at the API: header injection in every header-bound field, invalid and oversized
addresses, subjects, bodies and attachments, wrong JSON types, unknown accounts, numbers the storage
cannot hold. A bad message is rejected on its own with a reason naming the field (and the limit, for a
size); a bad request is a 4xx naming the field; nothing is a 5xx."""

from __future__ import annotations

import base64
import email.policy
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from functions.api.app import ApiContext, create_app
from mailproxy.dal.schema import create_resources
from mailproxy.logic.mime import MailAttachment, OutgoingMail, build_message
from mailproxy.models import (
    MAX_ADDRESS_LENGTH,
    MAX_ATTACHMENT_BYTES,
    MAX_BODY_BYTES,
    MAX_HEADERS,
    MAX_INLINE_MESSAGE_BYTES,
    MAX_RECIPIENTS,
    MAX_SUBJECT_LENGTH,
)
from mailproxy.services import Services
from tests.conftest import API_TOKEN, AUTH, account_payload, make_settings, message_payload


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[TestClient, Services]]:
    """One API over one moto for the whole module (validation does not care about earlier requests; ids
    are unique per test), with the account `smtp-main` of the default tenant."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("GMP_", "AWS_")):
                env.delenv(name)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            services = Services.create(make_settings(create_resources(boto3.session.Session())))
            app = create_app(
                ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=lambda: None)
            )
            client = TestClient(app, raise_server_exceptions=False)
            assert client.post("/account", headers=AUTH, json=account_payload()).status_code == 200
            yield client, services


@pytest.fixture
def api_with_account(hostile: tuple[TestClient, Services]) -> TestClient:
    return hostile[0]


@pytest.fixture
def api(hostile: tuple[TestClient, Services]) -> TestClient:
    return hostile[0]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def add(api: TestClient, *messages: Any) -> dict[str, Any]:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": list(messages)})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def rejection(api: TestClient, bad: dict[str, Any]) -> str:
    """Send `bad` next to a good message: the good one is queued, the bad one rejected alone."""
    if bad.get("id") == "bad":
        bad = {**bad, "id": unique("bad")}
    body = add(api, bad, message_payload(unique("good")))
    assert body["queued"] == 1, body
    [rejected] = body["rejected"]
    assert rejected["id"] == bad.get("id") or not isinstance(bad.get("id"), str)
    reason: str = rejected["reason"]
    return reason


def named(reason: str, field: str) -> bool:
    """The reason names the field: its path starts with it (`to.0: ...`, `attachments.0.filename: ...`), or,
    for a check on the whole message, its text names it (`message: ... body larger than ...`)."""
    path, _, text = reason.partition(":")
    return path.split(".", 1)[0] == field or (path == "message" and f"{field} " in text)


# --------------------------------------------------------------------------------- header injection

INJECTED = "Bcc: victim@evil.example"
HEADER_BOUND: list[tuple[str, Any]] = [
    ("subject", lambda s: {"subject": f"hi{s}{INJECTED}"}),
    ("from", lambda s: {"from": f"sender@example.com{s}{INJECTED}"}),
    ("from", lambda s: {"from": f'"Name{s}{INJECTED}" <sender@example.com>'}),
    ("to", lambda s: {"to": [f"rcpt@example.com{s}{INJECTED}"]}),
    ("to", lambda s: {"to": f"rcpt@example.com, other@example.com{s}{INJECTED}"}),
    ("to", lambda s: {"to": [f'"Name{s}{INJECTED}" <rcpt@example.com>']}),
    ("cc", lambda s: {"cc": [f"cc@example.com{s}{INJECTED}"]}),
    ("bcc", lambda s: {"bcc": [f"bcc@example.com{s}{INJECTED}"]}),
    ("reply_to", lambda s: {"reply_to": f"replies@example.com{s}{INJECTED}"}),
    ("return_path", lambda s: {"return_path": f"bounces@example.com{s}{INJECTED}"}),
    ("headers", lambda s: {"headers": {"X-Campaign": f"spring{s}{INJECTED}"}}),
    ("headers", lambda s: {"headers": {f"X-Campaign{s}Bcc": "victim@evil.example"}}),
    ("attachments", lambda s: {"attachments": [{"filename": f"a{s}{INJECTED}.txt", "content": "aGk="}]}),
    ("batch_code", lambda s: {"batch_code": f"spring{s}{INJECTED}"}),
    ("message_id", lambda s: {"message_id": f"<abc{s}{INJECTED}@example.com>"}),
]


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"], ids=["CRLF", "LF", "CR"])
@pytest.mark.parametrize(("field", "inject"), HEADER_BOUND, ids=[f"{f}-{n}" for n, (f, _) in enumerate(HEADER_BOUND)])
def test_line_breaks_in_header_bound_message_fields_are_rejected_naming_the_field(
    api_with_account: TestClient, field: str, inject: Any, breaker: str
) -> None:
    reason = rejection(api_with_account, message_payload("bad", **inject(breaker)))
    assert named(reason, field), reason


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"], ids=["CRLF", "LF", "CR"])
@pytest.mark.parametrize("field", ["user", "id", "host"])
def test_line_breaks_in_account_fields_are_a_422_naming_the_field(api: TestClient, field: str, breaker: str) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(**{field: f"x{breaker}MAIL FROM:<a@b.c>"}))
    assert answer.status_code == 422
    assert field in answer.json()["error"]


LINE_SEPARATORS = {"VT": "\x0b", "FF": "\x0c", "FS": "\x1c", "GS": "\x1d", "RS": "\x1e", "NEL": "\x85", "LS": "\u2028"}


def _separator_cases() -> list[Any]:
    cases = []
    for field, make in [
        ("subject", lambda c: {"subject": f"a{c}b"}),
        ("headers", lambda c: {"headers": {"X-Campaign": f"a{c}b"}}),
        ("attachments", lambda c: {"attachments": [{"filename": f"a{c}b.txt", "content": "aGk="}]}),
        ("message_id", lambda c: {"message_id": f"<a{c}b@example.com>"}),
        ("from", lambda c: {"from": f'"A{c}B" <sender@example.com>'}),
    ]:
        for name, char in LINE_SEPARATORS.items():
            cases.append(pytest.param(field, make(char), id=f"{field}-{name}"))
    return cases


def serialized(services: Services, message_id: str) -> bytes:
    """What the sender would put on the wire for a stored message: its content, built by the same MIME code."""
    content = services.messages.contents.get_many([("default", message_id)])[("default", message_id)]
    attachments = [
        MailAttachment(filename=a["filename"], content=base64.b64decode(a["content"]), mime_type=a.get("mime_type"))
        for a in content.get("attachments", [])
    ]
    mail = OutgoingMail(**{**content, "attachments": attachments})
    item = services.messages.get("default", message_id)
    assert item is not None
    message, _ = build_message(mail, message_id=item["message_id_header"])
    return message.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize(("field", "change"), _separator_cases())
def test_a_message_the_api_accepts_can_be_built_for_sending(
    hostile: tuple[TestClient, Services], field: str, change: dict[str, Any]
) -> None:
    """Other line separators: rejected at the API naming the field, or accepted and then buildable by the
    sender's MIME code without any extra header line (mailproxy/logic/delivery.py ends a message it cannot
    build as an error: the client was told 'queued' for a message that can never go)."""
    api, services = hostile
    message_id = unique("odd")
    body = add(api, message_payload(message_id, **change))
    if body["rejected"]:
        assert named(body["rejected"][0]["reason"], field), body
        return
    try:
        raw = serialized(services, message_id)
    except ValueError as exc:
        raise AssertionError(f"accepted by the API, yet the sender cannot build it: {exc}") from None
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not [line for line in head.split(b"\r\n") if line.lower().startswith(b"bcc")]


# --------------------------------------------------------------------------------- sizes and shapes

_BIG_ATTACHMENT = base64.b64encode(b"\0" * (MAX_ATTACHMENT_BYTES + 3)).decode()
_HALF_MB_ATTACHMENT = base64.b64encode(b"\0" * 500_000).decode()
_LONG_ADDRESS = "a" * (MAX_ADDRESS_LENGTH - 11) + "@example.com"


@pytest.mark.parametrize(
    ("change", "field", "limit"),
    [
        ({"from": _LONG_ADDRESS}, "from", MAX_ADDRESS_LENGTH),
        ({"to": [_LONG_ADDRESS]}, "to", MAX_ADDRESS_LENGTH),
        ({"reply_to": _LONG_ADDRESS}, "reply_to", MAX_ADDRESS_LENGTH),
        ({"to": [f"r{n}@example.com" for n in range(MAX_RECIPIENTS + 1)]}, "to", MAX_RECIPIENTS),
        ({"bcc": [f"r{n}@example.com" for n in range(MAX_RECIPIENTS + 1)]}, "bcc", MAX_RECIPIENTS),
        ({"subject": "x" * (MAX_SUBJECT_LENGTH + 1)}, "subject", MAX_SUBJECT_LENGTH),
        ({"body": "x" * (MAX_BODY_BYTES + 1)}, "body", MAX_BODY_BYTES),
        ({"body": "é" * (MAX_BODY_BYTES // 2 + 1)}, "body", MAX_BODY_BYTES),  # bytes, not characters
        ({"attachments": [{"filename": "big.bin", "content": _BIG_ATTACHMENT}]}, "attachments", MAX_ATTACHMENT_BYTES),
        (
            {"attachments": [{"filename": "big.bin", "storage_path": "base64:" + _BIG_ATTACHMENT}]},
            "attachments",
            MAX_ATTACHMENT_BYTES,
        ),
        ({"attachments": [{"filename": "a.txt", "content": "aGk="}] * 101}, "attachments", 100),
        ({"headers": {f"X-H{n}": "v" for n in range(MAX_HEADERS + 1)}}, "headers", MAX_HEADERS),
        ({"id": "x" * 257}, "id", 256),
        ({"batch_code": "x" * 65}, "batch_code", 64),
        (
            {"body": "x" * MAX_BODY_BYTES, "attachments": [{"filename": "a.bin", "content": _HALF_MB_ATTACHMENT}]},
            "message",
            MAX_INLINE_MESSAGE_BYTES,
        ),
    ],
    ids=lambda value: None if isinstance(value, dict) else str(value),
)
def test_oversized_message_fields_are_rejected_naming_the_field_and_the_limit(
    api_with_account: TestClient, change: dict[str, Any], field: str, limit: int
) -> None:
    message = message_payload(unique("big"), **change)
    reason = rejection(api_with_account, message)
    assert named(reason, field), reason[:300]
    assert str(limit) in reason, reason[:300]
    assert len(reason) < 2000  # the reason names the problem; it does not echo megabytes back


@pytest.mark.parametrize(
    ("change", "field", "limit"),
    [
        ({"host": "a" * 254}, "host", 253),
        ({"password": "p" * 1025}, "password", 1024),
        ({"user": "u" * 321}, "user", 320),
        ({"timeout": 301}, "timeout", 300),
        ({"port": 65536}, "port", 65535),
        ({"id": "x" * 257}, "id", 256),
    ],
)
def test_oversized_account_fields_are_a_422_naming_the_field_and_the_limit(
    api: TestClient, change: dict[str, Any], field: str, limit: int
) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(**change))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert field in error and str(limit) in error, error
    assert "p" * 100 not in answer.text  # never echoes the (password) input


INVALID_ADDRESSES = [
    "not an address",
    "a@",
    "@example.com",
    "a@@example.com",
    "a b@example.com",
    "<>",
    "a@-example.com",
    "a@example..com",
    "a@[999.1.1.1]",
    "a@exa\u0000mple.com",
    "a@exa mple.com",
    '"unterminated@example.com',
    "Name <a@example.com",
    "a@example.com, b@example.com",
    "a@example.com;b@example.com",
]


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
@pytest.mark.parametrize("field", ["from", "to", "reply_to", "return_path"])
def test_invalid_addresses_are_rejected_naming_the_field(
    api_with_account: TestClient, field: str, address: str
) -> None:
    value: Any = [address] if field == "to" else address  # one list element: never split on commas
    reason = rejection(api_with_account, message_payload("bad", **{field: value}))
    assert named(reason, field), reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": 5}, "id"),
        ({"id": None}, "id"),
        ({"id": ""}, "id"),
        ({"account_id": ["smtp-main"]}, "account_id"),
        ({"from": None}, "from"),
        ({"to": 5}, "to"),
        ({"to": [5]}, "to"),
        ({"to": []}, "to"),
        ({"to": {"a": "b@example.com"}}, "to"),
        ({"cc": "not an address"}, "cc"),
        ({"subject": ["x"]}, "subject"),
        pytest.param(
            {"body": {"a": 1}},
            "body",
        ),
        ({"content_type": "pdf"}, "content_type"),
        ({"headers": ["X-A: b"]}, "headers"),
        ({"headers": {"X-A": 5}}, "headers"),
        ({"headers": {"From": "boss@example.com"}}, "headers"),
        ({"attachments": "x"}, "attachments"),
        ({"attachments": [{"filename": 5, "content": "aGk="}]}, "attachments"),
        ({"attachments": [{"filename": "a.txt", "content": "!!not base64!!"}]}, "attachments"),
        ({"attachments": [{"filename": "a.txt"}]}, "attachments"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": 9}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"deferred_ts": "soon"}, "deferred_ts"),
        ({"deferred_ts": -1}, "deferred_ts"),
        ({"tenant_id": "bad tenant"}, "tenant_id"),
        ({"reply_to": ["replies@example.com"]}, "reply_to"),
    ],
)
def test_wrong_json_types_in_a_message_are_rejected_naming_the_field(
    api_with_account: TestClient, change: dict[str, Any], field: str
) -> None:
    reason = rejection(api_with_account, message_payload("bad", **change))
    assert named(reason, field), reason


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'"x"', b"5", b"null", b'{"messages": {}}', b'{"messages": "x"}', b'{"messages": null}', b"{oops", b""],
)
def test_malformed_add_messages_requests_are_422(api_with_account: TestClient, raw: bytes) -> None:
    answer = api_with_account.post(
        "/commands/add-messages", headers={**AUTH, "Content-Type": "application/json"}, content=raw
    )
    assert answer.status_code == 422 and answer.json()["ok"] is False


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_a_4xx(api_with_account: TestClient, depth: int) -> None:
    raw = b'{"messages": [' + b"[" * depth + b"]" * depth + b"]}"
    answer = api_with_account.post(
        "/commands/add-messages", headers={**AUTH, "Content-Type": "application/json"}, content=raw
    )
    assert 400 <= answer.status_code < 500


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": "x"}, "port"),
        ({"port": 25.5}, "port"),
        ({"use_tls": "maybe"}, "use_tls"),
        ({"timeout": "slow"}, "timeout"),
        ({"limit_per_minute": "lots"}, "limit_per_minute"),
        ({"limit_per_day": -5}, "limit_per_day"),
        ({"id": 5}, "id"),
        ({"host": 5}, "host"),
        ({"host": "smtp.example.com/evil"}, "host"),
        ({"password": 12345}, "password"),
    ],
)
def test_wrong_json_types_in_an_account_are_a_422_naming_the_field(
    api: TestClient, change: dict[str, Any], field: str
) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(**change))
    assert answer.status_code == 422
    assert field in answer.json()["error"]
    assert "12345" not in answer.text


def test_unknown_accounts_are_rejected_and_tenants_do_not_share_accounts(api_with_account: TestClient) -> None:
    body = add(
        api_with_account,
        message_payload(unique("nobody"), account_id="nobody"),
        message_payload(unique("other-tenant"), tenant_id="acme"),  # smtp-main is the default tenant's only
        message_payload(unique("unicode"), account_id="smtp-ma\u0131n"),
        message_payload(unique("fine")),
    )
    assert body["queued"] == 1
    reasons = {r["id"].split("-")[0]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {"nobody", "other", "unicode"}
    assert all(named(r, "account_id") and "unknown account" in r for r in reasons.values()), reasons
    answer = api_with_account.delete("/account/nobody", headers=AUTH)
    assert answer.status_code == 404 and "nobody" in answer.json()["error"]


def test_more_than_the_maximum_messages_is_a_400_naming_the_limit(api_with_account: TestClient) -> None:
    answer = api_with_account.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload(str(n)) for n in range(1001)]}
    )
    assert answer.status_code == 400
    assert "messages" in answer.json()["error"] and "1000" in answer.json()["error"]


@pytest.mark.parametrize(
    ("route", "payload", "field"),
    [
        ("/account", account_payload(limit_per_minute=10**40), "limit_per_minute"),
        ("/account", account_payload(limit_per_day=10**200), "limit_per_day"),
        ("/account", account_payload(timeout=5e-324), "timeout"),
        ("/commands/add-messages", {"messages": [message_payload(unique("far"), deferred_ts=10**40)]}, "deferred_ts"),
    ],
    ids=["limit_per_minute", "limit_per_day", "timeout", "deferred_ts"],
)
def test_numbers_dynamodb_cannot_store_are_a_4xx_not_a_500(
    api_with_account: TestClient, route: str, payload: dict[str, Any], field: str
) -> None:
    answer = api_with_account.post(
        route, headers={**AUTH, "Content-Type": "application/json"}, content=json.dumps(payload)
    )
    assert answer.status_code < 500, answer.text
    text = answer.text
    assert field in text
