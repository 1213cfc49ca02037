"""`POST /commands/test-smtp`: the proxy tries an SMTP account's handshake (connect, EHLO, STARTTLS, AUTH)
without sending mail, against real aiosmtpd servers on 127.0.0.1 (tests/smtp_servers.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.logic import policy
from tests.conftest import AUTH, account_payload
from tests.smtp_servers import SinkFactory, SmtpSink, free_port

PASSWORD = "Pr0be-" + uuid.uuid4().hex[:12]


def probe(api: TestClient, body: dict[str, Any], headers: dict[str, str] = AUTH) -> dict[str, Any]:
    answer = api.post("/commands/test-smtp", headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    assert PASSWORD not in answer.text
    result: dict[str, Any] = answer.json()
    return result


def steps(result: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(step["step"], step["ok"]) for step in result["steps"]]


@pytest.fixture
def submission(smtp_sink_factory: SinkFactory, trust_smtp_certs: Path) -> SmtpSink:
    """A submission server: STARTTLS, then AUTH, with a certificate the proxy trusts."""
    return smtp_sink_factory("starttls", auth=("sender", PASSWORD))


def test_an_ad_hoc_account_passes_starttls_and_auth_and_no_mail_is_sent(api: TestClient, submission: SmtpSink) -> None:
    result = probe(api, submission.account())
    assert result["ok"] is True
    assert steps(result) == [("connect", True), ("ehlo", True), ("starttls", True), ("auth", True)]
    assert submission.auth_attempts[0].success and submission.auth_attempts[0].tls
    assert submission.messages == [] and not submission.saw("MAIL", "DATA")


def test_a_wrong_password_fails_at_auth(api: TestClient, submission: SmtpSink) -> None:
    wrong = "Wr0ng-" + uuid.uuid4().hex[:12]
    answer = api.post("/commands/test-smtp", headers=AUTH, json=submission.account(password=wrong))
    assert answer.status_code == 200 and wrong not in answer.text
    result = answer.json()
    assert result["ok"] is False
    assert steps(result)[-1] == ("auth", False) and "535" in result["steps"][-1]["detail"]


def test_an_account_without_credentials_passes_with_auth_skipped(
    api: TestClient, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    result = probe(api, sink.account())
    assert result["ok"] is True and steps(result)[-1] == ("auth", True)
    assert "skipped" in result["steps"][-1]["detail"]


def test_a_stored_account_is_tried_by_id_with_its_decrypted_password(api: TestClient, submission: SmtpSink) -> None:
    stored = account_payload(**submission.account(password=PASSWORD))
    assert api.post("/account", headers=AUTH, json=stored).status_code == 200
    result = probe(api, {"account_id": "smtp-main"})
    assert result["ok"] is True and steps(result)[-1] == ("auth", True)
    assert [attempt.login for attempt in submission.auth_attempts] == ["sender"]
    assert submission.auth_attempts[0].success


def test_an_unknown_stored_account_is_404(api: TestClient) -> None:
    answer = api.post("/commands/test-smtp", headers=AUTH, json={"account_id": "nobody"})
    assert answer.status_code == 404 and "nobody" in answer.json()["error"]


def test_a_tenant_key_tries_its_own_accounts_only(api: TestClient, submission: SmtpSink) -> None:
    for tenant in ("acme", "globex"):
        assert api.post("/tenant", headers=AUTH, json={"id": tenant}).status_code == 200
    acme = {"X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]}
    stored = account_payload(**submission.account(password=PASSWORD), tenant_id="globex")
    assert api.post("/account", headers=AUTH, json=stored).status_code == 200
    refused = api.post("/commands/test-smtp", headers=acme, json={"account_id": "smtp-main", "tenant_id": "globex"})
    assert refused.status_code == 403 and "tenant_id" in refused.json()["error"]
    unseen = api.post("/commands/test-smtp", headers=acme, json={"account_id": "smtp-main"})
    assert unseen.status_code == 404  # acme has no such account; globex's is not visible
    assert submission.connections == 0
    assert api.post("/account", headers=acme, json=account_payload(**submission.account())).status_code == 200
    assert probe(api, {"account_id": "smtp-main"}, headers=acme)["ok"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"account_id": "smtp-main", "host": "127.0.0.1", "port": 25}, "account_id"),
        ({"account_id": "smtp-main", "password": PASSWORD}, "account_id"),
        ({}, "account_id"),
        ({"host": "127.0.0.1"}, "port"),
        ({"host": "127.0.0.1", "port": 0}, "port"),
        ({"host": "a b", "port": 25}, "host"),
        ({"host": "127.0.0.1", "port": 25, "timeout": 0}, "timeout"),
        ({"host": "127.0.0.1", "port": 25, "user": "a\r\nb"}, "user"),
        ({"host": "127.0.0.1", "port": 25, "tenant_id": "bad tenant"}, "tenant_id"),
    ],
)
def test_a_bad_request_is_422_naming_the_field_and_never_the_password(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    answer = api.post("/commands/test-smtp", headers=AUTH, json={"password": PASSWORD, **body})
    assert answer.status_code == 422
    assert field in answer.json()["error"] and PASSWORD not in answer.text


def test_the_ssrf_guard_refuses_an_ad_hoc_host_as_post_account_does(api: TestClient) -> None:
    answer = api.post("/commands/test-smtp", headers=AUTH, json={"host": "169.254.169.254", "port": 25})
    assert answer.status_code == 422
    assert "host" in answer.json()["error"] and "instance metadata" in answer.json()["error"]


def test_the_probe_waits_at_most_the_probe_wait_whatever_the_account_says(
    api: TestClient, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy, "PROBE_WAIT_SECONDS", 0.5)
    sink = smtp_sink_factory("plain")
    sink.stall("CONNECT", 5.0)  # the greeting comes late
    started = time.monotonic()
    result = probe(api, sink.account(timeout=300))
    assert time.monotonic() - started < 3.0
    assert result["ok"] is False and steps(result) == [("connect", False)]


def test_a_server_that_is_down_fails_at_connect(api: TestClient) -> None:
    result = probe(api, {"host": "127.0.0.1", "port": free_port(), "timeout": 2})
    assert result["ok"] is False and steps(result) == [("connect", False)]
