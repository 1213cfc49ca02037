"""Tenant API keys with an expiry (`expires_at`, unix seconds): refused with a 401 that says so once past it,
on every route, admin routes included; the expiry is shown on the tenant, never the key."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from mailproxy.services import Services
from tests.conftest import AUTH


@pytest.fixture
def acme(api: TestClient) -> None:
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).status_code == 200


def expired_key(services: Services) -> dict[str, str]:
    """A key whose expiry passed a second ago, set through the store (the API refuses a past expiry)."""
    key = services.tenants.new_api_key("acme", expires_at=int(time.time()) - 1)
    assert key is not None
    return {"X-API-Token": key}


def test_a_key_with_a_future_expiry_works_and_the_tenant_shows_the_expiry(api: TestClient, acme: None) -> None:
    expires_at = int(time.time()) + 3600
    answer = api.post("/tenant/acme/api-key", headers=AUTH, json={"expires_at": expires_at})
    assert answer.status_code == 200, answer.text
    issued = answer.json()
    assert issued["expires_at"] == expires_at
    key = {"X-API-Token": issued["api_key"]}
    assert api.get("/accounts", headers=key).status_code == 200
    tenant = api.get("/tenant/acme", headers=AUTH).json()["tenant"]
    assert tenant["api_key_expires_at"] == expires_at and tenant["has_api_key"] is True
    assert issued["api_key"] not in api.get("/tenants", headers=AUTH).text


def test_no_body_means_a_key_that_never_expires(api: TestClient, acme: None) -> None:
    issued = api.post("/tenant/acme/api-key", headers=AUTH).json()
    assert issued["expires_at"] is None
    assert api.get("/tenant/acme", headers=AUTH).json()["tenant"]["api_key_expires_at"] is None
    assert api.get("/accounts", headers={"X-API-Token": issued["api_key"]}).status_code == 200


@pytest.mark.parametrize("expires_at", [0, 1, "past"])
def test_an_expiry_not_in_the_future_is_422_naming_the_field(
    api: TestClient, acme: None, expires_at: int | str
) -> None:
    value = int(time.time()) - 1 if expires_at == "past" else expires_at
    answer = api.post("/tenant/acme/api-key", headers=AUTH, json={"expires_at": value})
    assert answer.status_code == 422
    assert "expires_at" in answer.json()["error"] and "future" in answer.json()["error"]
    assert api.get("/tenant/acme", headers=AUTH).json()["tenant"]["has_api_key"] is False


def test_expired_key_is_401_and_says_so(api: TestClient, services: Services, acme: None) -> None:
    answer = api.get("/accounts", headers=expired_key(services))
    assert answer.status_code == 401
    assert answer.json() == {"ok": False, "error": "X-API-Token: this API key has expired"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/metrics"), ("DELETE", "/tenant/acme"), ("GET", "/command-log"), ("POST", "/command-log/purge")],
)
def test_expired_key_is_401_not_403_on_admin_routes(
    api: TestClient, services: Services, acme: None, method: str, path: str
) -> None:
    answer = api.request(method, path, headers=expired_key(services), json={"threshold_ts": 0})
    assert answer.status_code == 401 and "expired" in answer.json()["error"]
    assert services.tenants.get("acme") is not None


def test_a_new_key_without_expiry_replaces_an_expired_one(api: TestClient, services: Services, acme: None) -> None:
    old = expired_key(services)
    new = {"X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]}
    assert api.get("/accounts", headers=new).status_code == 200
    replaced = api.get("/accounts", headers=old)
    assert replaced.status_code == 401 and "expired" not in replaced.json()["error"]  # no longer its key at all
    assert api.get("/tenant/acme", headers=AUTH).json()["tenant"]["api_key_expires_at"] is None


def test_revoking_a_key_clears_its_expiry(api: TestClient, services: Services, acme: None) -> None:
    api.post("/tenant/acme/api-key", headers=AUTH, json={"expires_at": int(time.time()) + 60})
    assert api.delete("/tenant/acme/api-key", headers=AUTH).status_code == 200
    assert services.tenants.get("acme").api_key_expires_at is None  # type: ignore[union-attr]
    tenant = api.get("/tenant/acme", headers=AUTH).json()["tenant"]
    assert (tenant["has_api_key"], tenant["api_key_expires_at"]) == (False, None)


def test_updating_the_tenant_keeps_the_key_and_its_expiry(api: TestClient, acme: None) -> None:
    expires_at = int(time.time()) + 3600
    key = {
        "X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH, json={"expires_at": expires_at}).json()["api_key"]
    }
    assert api.put("/tenant/acme", headers=AUTH, json={"id": "acme", "name": "Acme"}).status_code == 200
    assert api.get("/tenant/acme", headers=key).json()["tenant"]["api_key_expires_at"] == expires_at


def test_a_tenant_key_can_rotate_its_own_key_with_an_expiry(api: TestClient, acme: None) -> None:
    own = {"X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]}
    expires_at = int(time.time()) + 600
    answer = api.post("/tenant/acme/api-key", headers=own, json={"expires_at": expires_at})
    assert answer.status_code == 200 and answer.json()["expires_at"] == expires_at
