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
from mailproxy.logic.bounces.correlation import deployment_key
from mailproxy.logic.unsubscribe import Unsubscription, unsubscribe_key, unsubscribe_token, verify_token
from mailproxy.services import Services
from tests.conftest import API_TOKEN

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
