"""Secrets and access: the token guards every route and is compared in constant time; aws mode refuses a
short token; SMTP passwords are encrypted at rest, never returned, and never written to a log line, a
stored error or a delivery report - checked over a whole run in process and over the local stack."""

from __future__ import annotations

import base64
import hmac
import io
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mailproxy.config import ConfigError, Settings, load_settings
from mailproxy.config import settings as cached_settings
from mailproxy.crypto import DecryptionError, LocalSecretBox, new_local_key
from mailproxy.dal.schema import LocalResources
from mailproxy.models import AccountIn
from mailproxy.services import Services
from tests.conftest import API_TOKEN, AUTH, account_payload, make_settings, message_payload
from tests.e2e.stack import local_stack
from tests.reliability.conftest import FAST
from tests.reliability.harness import World
from tests.report_server import report_endpoint
from tests.smtp_servers import SinkFactory

# /health is the load balancer's probe, needing no token (docs/api.md, `GET /health`); /docs and /openapi.json
# are not APIRoutes; an unsubscribe link is followed by a mail client, its signed token is the credential
UNGUARDED = {"/health", "/unsubscribe/{token}"}


def guarded_routes(api: TestClient) -> list[tuple[str, str]]:
    routes = []
    for route in api.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path not in UNGUARDED:
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            routes += [(method, path) for method in sorted(route.methods or ())]
    return routes


BAD_TOKENS = {
    "missing": None,
    "empty": "",
    "wrong": "wrong",
    "upper-cased": API_TOKEN.upper(),
    "prefix": API_TOKEN[:-1],
    "longer": API_TOKEN + "x",
    "tenant-key-shaped": "gmpk_" + "0" * 40,
}


def test_every_route_refuses_a_missing_wrong_or_differently_cased_token(api: TestClient) -> None:
    routes = guarded_routes(api)
    assert len(routes) >= 8
    failures = []
    for method, path in routes:
        for label, token in BAD_TOKENS.items():
            headers = {} if token is None else {"X-API-Token": token}
            answer = api.request(method, path, headers=headers, json={})
            if answer.status_code != 401 or answer.json() != {"ok": False, "error": "missing or wrong X-API-Token"}:
                failures.append(f"{method} {path} with {label} token: {answer.status_code} {answer.text[:80]}")
    assert not failures, "\n".join(failures)
    assert api.get("/health").status_code == 200


def test_the_token_is_compared_in_constant_time(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.api import app as app_module

    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", recording)
    assert api.get("/status", headers=AUTH).status_code == 200
    assert calls and calls[-1] == (API_TOKEN.encode(), API_TOKEN.encode())
    calls.clear()
    assert api.get("/status", headers={"X-API-Token": "short"}).status_code == 401
    assert calls == [(b"short", API_TOKEN.encode())]  # no early exit on a different length


def test_compare_digest_alone_decides(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.api import app as app_module

    monkeypatch.setattr(app_module.hmac, "compare_digest", lambda a, b: False)
    assert api.get("/status", headers=AUTH).status_code == 401  # no other equality test lets the token in
    monkeypatch.setattr(app_module.hmac, "compare_digest", lambda a, b: True)
    assert api.get("/status", headers={"X-API-Token": "anything"}).status_code == 200


@pytest.mark.parametrize(("mode", "length", "ok"), [("aws", 31, False), ("aws", 32, True), ("local", 8, True)])
def test_aws_mode_refuses_a_token_under_32_characters(
    monkeypatch: pytest.MonkeyPatch, mode: str, length: int, ok: bool
) -> None:
    monkeypatch.setenv("GMP_MODE", mode)
    monkeypatch.setenv("GMP_API_TOKEN", "t" * length)
    if ok:
        assert load_settings().api_token is not None
    else:
        with pytest.raises(ConfigError, match="GMP_API_TOKEN"):
            load_settings()


@pytest.mark.parametrize(("length", "ok"), [(31, False), (48, True)])
def test_aws_mode_refuses_a_short_token_read_from_secrets_manager(
    aws: LocalResources, monkeypatch: pytest.MonkeyPatch, length: int, ok: bool
) -> None:
    """The deployed API reads its token from Secrets Manager (the CDK generates >= 32 characters: see
    tests/infrastructure/test_secrets.py); a shorter one is refused and nothing gets in."""
    from functions.api import handler as api_handler
    from mailproxy import runtime

    arn = boto3.client("secretsmanager").create_secret(Name=f"gmp-token-{uuid.uuid4().hex}", SecretString="s" * length)[
        "ARN"
    ]
    settings = make_settings(aws, mode="aws", api_token=None, api_token_secret_arn=arn)
    for name, value in settings.model_dump(exclude_none=True).items():
        plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        monkeypatch.setenv(f"GMP_{name.upper()}", str(plain).lower() if isinstance(plain, bool) else str(plain))
    cached_settings.cache_clear()
    runtime.services.cache_clear()
    try:
        if ok:
            assert runtime.api_token() == "s" * length
        else:
            with pytest.raises(ConfigError, match="GMP_API_TOKEN"):
                runtime.api_token()
            client = TestClient(api_handler.app, raise_server_exceptions=False)
            assert client.get("/status", headers={"X-API-Token": "s" * length}).status_code >= 400
    finally:
        cached_settings.cache_clear()
        runtime.services.cache_clear()


# ------------------------------------------------------------------------------------------- at rest

PASSWORD = "Pa55-w0rd-" + uuid.uuid4().hex[:10]


def encodings(secret: str) -> list[str]:
    """The secret and the obvious ways it could leak: base64, in an AUTH PLAIN blob, JSON-escaped."""
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0sender\0{secret}".encode()).decode(),
        json.dumps(secret)[1:-1],
    ]


def test_smtp_passwords_are_encrypted_at_rest_and_never_returned(api: TestClient, services: Services) -> None:
    created = api.post("/account", headers=AUTH, json=account_payload(password=PASSWORD))
    assert created.status_code == 200 and PASSWORD not in created.text
    listed = api.get("/accounts", headers=AUTH)
    assert listed.json()["accounts"][0]["password"] == "***"
    raw = json.dumps(services.dynamodb.scan(TableName=services.settings.config_table)["Items"])
    assert not [form for form in encodings(PASSWORD) if form in raw]
    stored = services.accounts.get("default", "smtp-main")
    assert stored is not None and stored.password_enc is not None and stored.password_enc.startswith("fernet:")
    with pytest.raises(DecryptionError):  # another key (another deployment) cannot read it
        LocalSecretBox(new_local_key()).decrypt(
            stored.password_enc, {"purpose": "smtp-password", "tenant": "default", "account": "smtp-main"}
        )
    moved = stored.model_copy(update={"id": "other"})  # a ciphertext copied onto another account is refused
    with pytest.raises(DecryptionError):
        services.accounts.password(moved)
    invalid = api.post("/account", headers=AUTH, json=account_payload(password=PASSWORD, port="x"))
    assert invalid.status_code == 422 and PASSWORD not in invalid.text


@pytest.fixture
def settings(aws: LocalResources, endpoint: Any) -> Settings:
    """As the suite's, plus a report token and one log line per SMTP attempt: more secrets, more lines."""
    return make_settings(
        aws,
        client_sync_url=endpoint.url,
        client_sync_token="sync-" + uuid.uuid4().hex,
        log_delivery_activity=True,
        **FAST,
    )


def test_no_secret_in_any_log_line_stored_error_or_report_of_a_full_run(
    world: World,
    api: TestClient,
    smtp_sink_factory: SinkFactory,
    trust_smtp_certs: Path,
    captured_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every library's debug lines too: botocore, urllib, smtplib's logger
    good = smtp_sink_factory("starttls", auth=("sender", PASSWORD))
    picky = smtp_sink_factory("starttls", auth=("sender", "the-right-one"))
    world.sinks += [good, picky]
    wrong = "Wr0ng-" + uuid.uuid4().hex[:10]
    responses = [
        api.post("/account", headers=AUTH, json={**account_payload(**good.account(password=PASSWORD)), "id": "good"}),
        api.post("/account", headers=AUTH, json={**account_payload(**picky.account(password=wrong)), "id": "picky"}),
        api.post("/account", headers=AUTH, json=account_payload(password=PASSWORD, timeout="x")),
    ]
    responses.append(
        api.post(
            "/commands/add-messages",
            headers=AUTH,
            json={
                "messages": [message_payload("ok", account_id="good"), message_payload("refused", account_id="picky")]
            },
        )
    )
    world.settle(["ok", "refused"])
    responses += [api.get(path, headers=AUTH) for path in ("/accounts", "/messages", "/metrics", "/status")]
    assert world.statuses(["ok", "refused"]) == {"ok": "sent", "refused": "error"}
    assert good.auth_attempts[0].success and good.messages[0].tls

    sync_token = world.services.settings.client_sync_token
    assert sync_token is not None
    haystacks = {
        "structured logs": captured_logs.getvalue(),
        "library logs": caplog.text,
        "API answers": "\n".join(r.text for r in responses),
        "reports": "\n".join(r.raw.decode() for r in world.endpoint.received),
        "messages table": json.dumps(
            world.services.dynamodb.scan(TableName=world.services.settings.messages_table), default=repr
        ),
    }
    assert "smtp attempt" in haystacks["structured logs"]  # GMP_LOG_DELIVERY_ACTIVITY lines were written
    for secret_name, secret in {
        "SMTP password": PASSWORD,
        "wrong SMTP password": wrong,
        "API token": API_TOKEN,
        "report token": sync_token.get_secret_value(),
    }.items():
        for where, text in haystacks.items():
            leaked = [form for form in encodings(secret) if form in text]
            assert not leaked, f"the {secret_name} appears in the {where}"


def test_a_server_echoing_the_auth_blob_does_not_leak_the_password(
    world: World, smtp_sink_factory: SinkFactory, captured_logs: io.StringIO
) -> None:
    sink = smtp_sink_factory("plain", auth=("sender", PASSWORD))
    blob = base64.b64encode(f"\0sender\0{PASSWORD}".encode()).decode()
    sink.fail("AUTH", f"535 5.7.8 rejected AUTH PLAIN {blob}", times=None)
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.submit(message_payload("m0"))
    world.settle(["m0"])
    error = world.status("m0")["error"]
    assert "535" in error
    everything = error + captured_logs.getvalue() + "".join(r.raw.decode() for r in world.endpoint.received)
    assert blob not in everything


@pytest.mark.stack
def test_no_secret_in_the_local_stack_output(smtp_sink_factory: SinkFactory, trust_smtp_certs: Path) -> None:
    """`make run` as a user runs it, at DEBUG with one log line per SMTP attempt: its whole output is
    searched for the SMTP password, the API token and the report token."""
    sink = smtp_sink_factory("starttls", auth=("sender", PASSWORD))
    sync_token = "sync-" + uuid.uuid4().hex
    with report_endpoint() as client:
        environment = {
            "GMP_CLIENT_SYNC_URL": client.url,
            "GMP_CLIENT_SYNC_TOKEN": sync_token,
            "GMP_LOG_LEVEL": "DEBUG",
            "GMP_LOG_DELIVERY_ACTIVITY": "true",
            "SSL_CERT_FILE": str(trust_smtp_certs),
        }
        with local_stack(environment, senders=1) as stack:
            account = {**account_payload(**sink.account(password=PASSWORD)), "id": "smtp-main"}
            answers = [stack.call("POST", "/account", json=account)]
            answers.append(stack.call("POST", "/account", json={**account, "id": "bad", "port": "x"}))
            answers.append(stack.call("POST", "/commands/add-messages", json={"messages": [message_payload("MSG-1")]}))
            sink.wait_for_messages(1, timeout=30)
            assert client.wait_for(lambda c: any(i["id"] == "MSG-1" and i["sent_ts"] for i in c.items()), timeout=20)
            answers += [stack.call("GET", "/accounts"), stack.call("GET", "/messages")]
            assert stack.stop() == 0
            time.sleep(0.2)
            output = "".join(stack.output) + "".join(a.text for a in answers)
            assert "smtp attempt" in output
            for secret in (PASSWORD, stack.token, sync_token):
                assert not [form for form in encodings(secret) if form in output], "a secret in the stack output"
