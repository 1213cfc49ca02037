"""Tenants and tenant API keys: isolation on every route, secrets kept, deletion."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload

TENANT = {
    "id": "acme",
    "name": "Acme",
    "client_base_url": "http://127.0.0.1:9/app",
    "client_auth": {"method": "bearer", "token": "acme-report-token"},
}


def key_for(api: TestClient, tenant_id: str) -> dict[str, str]:
    answer = api.post(f"/tenant/{tenant_id}/api-key", headers=AUTH).json()
    assert answer["ok"] is True and answer["api_key"].startswith("gmpk_")
    return {"X-API-Token": answer["api_key"]}


@pytest.fixture
def two_tenants(api: TestClient) -> tuple[dict[str, str], dict[str, str]]:
    assert api.post("/tenant", headers=AUTH, json=TENANT).json() == {"ok": True, "id": "acme"}
    assert api.post("/tenant", headers=AUTH, json={"id": "globex"}).json()["ok"] is True
    return key_for(api, "acme"), key_for(api, "globex")


def test_tenant_is_created_listed_and_its_secrets_masked(api: TestClient, services: Services) -> None:
    api.post("/tenant", headers=AUTH, json=TENANT)
    [tenant] = api.get("/tenants", headers=AUTH).json()["tenants"]
    assert tenant["id"] == "acme" and tenant["client_sync_path"] == "/mail-proxy/sync"
    assert tenant["client_auth"] == {"method": "bearer", "user": None, "token": "***"}
    assert "acme-report-token" not in json.dumps(api.get("/tenant/acme", headers=AUTH).json())
    raw = json.dumps(services.dynamodb.scan(TableName=services.settings.config_table)["Items"])
    assert "acme-report-token" not in raw


def test_api_key_is_shown_once_and_stored_only_as_a_hash(api: TestClient, services: Services) -> None:
    api.post("/tenant", headers=AUTH, json={"id": "acme"})
    key = key_for(api, "acme")["X-API-Token"]
    raw = json.dumps(services.dynamodb.scan(TableName=services.settings.config_table)["Items"])
    assert key not in raw
    assert api.get("/tenant/acme", headers={"X-API-Token": key}).json()["tenant"]["has_api_key"] is True
    assert api.delete("/tenant/acme/api-key", headers=AUTH).json()["ok"] is True
    assert api.get("/accounts", headers={"X-API-Token": key}).status_code == 401


def test_new_api_key_replaces_the_old_one(api: TestClient) -> None:
    api.post("/tenant", headers=AUTH, json={"id": "acme"})
    old, new = key_for(api, "acme"), key_for(api, "acme")
    assert api.get("/accounts", headers=old).status_code == 401
    assert api.get("/accounts", headers=new).status_code == 200


def test_inactive_tenant_key_is_refused(api: TestClient) -> None:
    api.post("/tenant", headers=AUTH, json={"id": "acme"})
    key = key_for(api, "acme")
    api.put("/tenant/acme", headers=AUTH, json={"id": "acme", "active": False})
    assert api.get("/accounts", headers=key).status_code == 401


def test_tenant_key_acts_on_its_own_tenant_on_every_route(
    api: TestClient, services: Services, two_tenants: tuple[dict[str, str], dict[str, str]]
) -> None:
    acme, _ = two_tenants
    assert api.post("/account", headers=acme, json=account_payload()).json()["tenant_id"] == "acme"
    assert [a["id"] for a in api.get("/accounts", headers=acme).json()["accounts"]] == ["smtp-main"]
    queued = api.post("/commands/add-messages", headers=acme, json={"messages": [message_payload("m1")]}).json()
    assert queued["queued"] == 1
    assert [m["tenant_id"] for m in api.get("/messages", headers=acme).json()["messages"]] == ["acme"]
    assert api.post("/commands/run-now", headers=acme).status_code == 200
    assert api.post("/commands/suspend", headers=acme, json={"batch_code": "b"}).json()["tenant_id"] == "acme"
    assert api.post("/commands/activate", headers=acme, json={"batch_code": "b"}).json()["tenant_id"] == "acme"
    assert api.post("/commands/delete-messages", headers=acme, json={"ids": ["m1"]}).json()["removed"] == ["m1"]
    assert api.post("/commands/cleanup-messages", headers=acme, json={"older_than_seconds": 0}).json()["ok"]
    assert api.get("/tenant/acme", headers=acme).json()["tenant"]["id"] == "acme"
    assert [t["id"] for t in api.get("/tenants", headers=acme).json()["tenants"]] == ["acme"]
    assert api.delete("/account/smtp-main", headers=acme).json()["ok"] is True
    assert services.accounts.list("default") == []


OTHER_TENANT_CALLS = [
    ("POST", "/account", {"json": account_payload(tenant_id="acme")}),
    ("DELETE", "/account/smtp-main?tenant_id=acme", {}),
    ("GET", "/accounts?tenant_id=acme", {}),
    ("POST", "/commands/add-messages", {"json": {"messages": [message_payload("x", tenant_id="acme")]}}),
    ("POST", "/commands/run-now", {"json": {"tenant_id": "acme"}}),
    ("POST", "/commands/delete-messages", {"json": {"ids": ["m1"], "tenant_id": "acme"}}),
    ("POST", "/commands/cleanup-messages", {"json": {"older_than_seconds": 0, "tenant_id": "acme"}}),
    ("POST", "/commands/suspend", {"json": {"tenant_id": "acme"}}),
    ("POST", "/commands/activate", {"json": {"tenant_id": "acme"}}),
    ("GET", "/messages?tenant_id=acme", {}),
    ("POST", "/tenant", {"json": {"id": "acme", "active": False}}),
    ("GET", "/tenant/acme", {}),
    ("PUT", "/tenant/acme", {"json": {"id": "acme", "active": False}}),
    ("DELETE", "/tenant/acme", {}),
    ("POST", "/tenant/acme/api-key", {}),
    ("DELETE", "/tenant/acme/api-key", {}),
    ("GET", "/metrics", {}),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), OTHER_TENANT_CALLS, ids=[f"{m} {p}" for m, p, _ in OTHER_TENANT_CALLS]
)
def test_another_tenants_key_is_refused_and_nothing_changes(
    api: TestClient,
    services: Services,
    two_tenants: tuple[dict[str, str], dict[str, str]],
    method: str,
    path: str,
    kwargs: dict[str, object],
) -> None:
    acme, globex = two_tenants
    api.post("/account", headers=acme, json=account_payload())
    api.post("/commands/add-messages", headers=acme, json={"messages": [message_payload("m1")]})
    before = services.dynamodb.scan(TableName=services.settings.config_table)["Items"]
    before_messages = services.dynamodb.scan(TableName=services.settings.messages_table)["Items"]
    answer = api.request(method, path, headers=globex, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code in (401, 403), answer.text
    after = services.dynamodb.scan(TableName=services.settings.config_table)["Items"]
    # The refused call's audit entry is the one item it may add (tests/integration/test_audit_log.py).
    assert [item for item in after if item not in before and not item["pk"]["S"].startswith("AUDIT#")] == []
    assert [item for item in before if item not in after] == []
    assert services.dynamodb.scan(TableName=services.settings.messages_table)["Items"] == before_messages


def test_same_message_id_in_two_tenants_is_two_messages(
    api: TestClient, two_tenants: tuple[dict[str, str], dict[str, str]]
) -> None:
    for key in two_tenants:
        api.post("/account", headers=key, json=account_payload())
        assert (
            api.post("/commands/add-messages", headers=key, json={"messages": [message_payload("same")]}).json()[
                "queued"
            ]
            == 1
        )
    for key, tenant in zip(two_tenants, ("acme", "globex"), strict=True):
        [message] = api.get("/messages", headers=key).json()["messages"]
        assert message["id"] == "same" and message["tenant_id"] == tenant


def test_deleting_a_tenant_removes_its_accounts_and_queued_mail(
    api: TestClient, services: Services, two_tenants: tuple[dict[str, str], dict[str, str]]
) -> None:
    acme, globex = two_tenants
    for key in (acme, globex):
        api.post("/account", headers=key, json=account_payload())
        api.post("/commands/add-messages", headers=key, json={"messages": [message_payload("m1")]})
    answer = api.delete("/tenant/acme", headers=AUTH).json()
    assert answer["removed"] == {"accounts": 1, "messages": 1}
    assert services.accounts.list("acme") == [] and services.messages.get("acme", "m1") is None
    assert api.get("/tenant/acme", headers=AUTH).status_code == 404
    assert api.get("/accounts", headers=acme).status_code == 401
    assert services.messages.get("globex", "m1") is not None and services.accounts.list("globex")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"id": "bad id"}, "id"),
        ({"id": "a", "client_base_url": "ftp://x"}, "client_base_url"),
        ({"id": "a", "client_auth": {"method": "bearer"}}, "client_auth"),
        ({"id": "a", "client_sync_path": "no-slash"}, "client_sync_path"),
    ],
)
def test_bad_tenant_is_422_naming_the_field(api: TestClient, payload: dict[str, object], field: str) -> None:
    answer = api.post("/tenant", headers=AUTH, json=payload)
    assert answer.status_code == 422 and field in answer.json()["error"]
