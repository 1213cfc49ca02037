"""Hosted one-click unsubscribe: a signed token POSTed without credentials puts the address on the tenant's
suppression list; anything else is a 404 that changes nothing."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from functions.api.app import ApiContext
from functions.api.errors import install_error_handlers
from functions.api.routes import unsubscribe as unsubscribe_routes
from mailproxy.config import Settings
from mailproxy.dal.records import StoredSuppression
from mailproxy.dal.schema import LocalResources
from mailproxy.logic.bounces.correlation import deployment_key
from mailproxy.logic.reports import Reporter, ReportTarget
from mailproxy.logic.unsubscribe import Unsubscription, unsubscribe_key, unsubscribe_token, verify_token
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from tests.conftest import API_TOKEN, AUTH, account_payload, make_settings, message_payload
from tests.integration.test_sender import drain
from tests.report_server import report_endpoint
from tests.smtp_servers import ReceivedMessage, SinkFactory, SmtpSink

TARGET = Unsubscription("acme", "Reader@Example.com", "newsletter-42")


@pytest.fixture
def public_api(services: Services) -> TestClient:
    """The unsubscribe route alone, as the app mounts it (functions/api/app.py), with no credentials sent."""
    app = FastAPI(routes=list(unsubscribe_routes.router.routes))
    app.state.context = ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=lambda: None)
    install_error_handlers(app)
    return TestClient(app, raise_server_exceptions=False)


def suppressed(services: Services, tenant_id: str) -> list[StoredSuppression]:
    entries, _ = services.suppressions.list(tenant_id, 100, None)
    return entries


def test_signed_token_unsubscribes_the_address_without_credentials(
    public_api: TestClient, services: Services, settings: Settings
) -> None:
    token = unsubscribe_token(TARGET, key=unsubscribe_key(deployment_key(settings)))
    answer = public_api.post(
        f"/unsubscribe/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    (entry,) = suppressed(services, "acme")
    assert entry.address == "Reader@Example.com"
    assert entry.reason == "unsubscribe" and entry.source_message_id == "newsletter-42"


def test_repeated_post_is_harmless(public_api: TestClient, services: Services, settings: Settings) -> None:
    token = unsubscribe_token(TARGET, key=unsubscribe_key(deployment_key(settings)))
    assert public_api.post(f"/unsubscribe/{token}").status_code == 200
    assert public_api.post(f"/unsubscribe/{token}").status_code == 200
    assert len(suppressed(services, "acme")) == 1


def edited(token: str) -> list[str]:
    tenant, address, message, mac = token.split(".")
    other = unsubscribe_token(Unsubscription("other", TARGET.address, TARGET.message_id), key=b"k" * 32)
    return [
        f"{other.split('.')[0]}.{address}.{message}.{mac}",  # another tenant under this token's MAC
        f"{tenant}.{address}.{message}.{mac[:-2]}AA",
        f"{tenant}.{address}.{message}",
        other,  # signed with another key
        "not-a-token",
        "a.b.c.d",
    ]


def test_forged_or_edited_tokens_are_404_and_change_nothing(
    public_api: TestClient, services: Services, settings: Settings
) -> None:
    token = unsubscribe_token(TARGET, key=unsubscribe_key(deployment_key(settings)))
    for bad in edited(token):
        answer = public_api.post(f"/unsubscribe/{bad}")
        assert answer.status_code == 404, bad
        assert answer.json()["ok"] is False and "token" in answer.json()["error"]
    assert suppressed(services, "acme") == [] and suppressed(services, "other") == []


def test_token_round_trips_and_key_differs_from_the_correlation_key(settings: Settings) -> None:
    from mailproxy.logic.bounces.correlation import deployment_key

    key = unsubscribe_key(deployment_key(settings))
    assert key != deployment_key(settings)
    assert verify_token(unsubscribe_token(TARGET, key=key), key=key) == TARGET
    assert verify_token(unsubscribe_token(TARGET, key=key), key=deployment_key(settings)) is None
    assert verify_token("x" * 3000, key=key) is None


PUBLIC_URL = "https://mail.proxy.example/prod"


@pytest.fixture
def settings(aws: LocalResources) -> Settings:
    """The deployment's public URL names the hosted links (the stack sets it to the API's URL)."""
    return make_settings(aws, public_url=PUBLIC_URL)


def sent_with_hosted_unsubscribe(api: TestClient, services: Services, sink: SmtpSink) -> ReceivedMessage:
    account = account_payload(port=sink.port, user=None, password=None)
    assert api.post("/account", headers=AUTH, json=account).status_code == 200
    message = message_payload(
        "news-1", to=["Reader <reader@example.org>"], list_unsubscribe={"hosted": True, "mailto": "leave@example.com"}
    )
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message]})
    assert answer.status_code == 200 and answer.json()["queued"] == 1
    drain(services)
    (received,) = sink.messages
    return received


def test_a_hosted_link_is_sent_signed_for_the_recipient_and_its_post_suppresses_and_is_reported_once(
    api: TestClient, lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    received = sent_with_hosted_unsubscribe(api, services, smtp_sink_factory("plain"))
    header = str(received.message["List-Unsubscribe"])
    url, mailto = (part.strip(" <>") for part in header.split(","))
    assert url.startswith(f"{PUBLIC_URL}/unsubscribe/") and mailto == "mailto:leave@example.com"
    assert str(received.message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    token = url.removeprefix(f"{PUBLIC_URL}/unsubscribe/")
    assert verify_token(token, key=unsubscribe_key(deployment_key(lambda_env))) == Unsubscription(
        "default", "reader@example.org", "news-1"
    )
    with report_endpoint() as client:
        target = ReportTarget(client.url)
        reporter = Reporter(services, lambda tenant_id: target, logger=logger, metrics=metrics)
        reporter.run(budget_seconds=20, batch_size=100)  # the sent outcome
        client.received.clear()

        # the mailbox provider POSTs the link, with no credentials, through the whole app
        assert api.post(f"/unsubscribe/{token}", content="List-Unsubscribe=One-Click").status_code == 200
        assert api.post(f"/unsubscribe/{token}").status_code == 200  # repeated: harmless
        reporter.run(budget_seconds=20, batch_size=100)

        [entry] = client.items()
    assert entry["id"] == "news-1" and entry["sent_ts"] and entry["unsubscribed_ts"]
    assert services.suppressions.suppressed("default", ["reader@example.org"]) == {"reader@example.org"}
    item = services.messages.get("default", "news-1")
    assert item is not None and [e["event"] for e in item["history"]].count("unsubscribed") == 1


def test_a_hosted_link_needs_exactly_one_recipient(api: TestClient) -> None:
    message = message_payload("two", to=["a@example.org", "b@example.org"], list_unsubscribe={"hosted": True})
    (rejected,) = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message]}).json()["rejected"]
    assert "list_unsubscribe.hosted" in rejected["reason"]


def test_hosted_and_a_url_of_its_own_are_refused_together(api: TestClient) -> None:
    both = {"hosted": True, "url": "https://example.org/u"}
    message = message_payload("both", to=["a@example.org"], list_unsubscribe=both)
    (rejected,) = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message]}).json()["rejected"]
    assert "list_unsubscribe" in rejected["reason"]
