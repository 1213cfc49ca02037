"""The January-2026 query form (`?tenant_id=…&batch_code=…`) and our body form act on the tenant they name,
and on no other: each route in each form, with `default` and `acme` both holding accounts and messages."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.dal.messages import Outcome
from mailproxy.logic import campaigns, ingest, jobs
from mailproxy.models import AddMessagesRequest, MessageStatus
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.streams import drain_to_outbox

TENANTS = ("default", "acme")
DAY = 86400

# form -> (query, body fields, the tenant that must change; None: a 400 that changes nothing)
FORMS: dict[str, tuple[dict[str, str], dict[str, str], str | None]] = {
    "query": ({"tenant_id": "acme"}, {}, "acme"),
    "body": ({}, {"tenant_id": "acme"}, "acme"),
    "both_agreeing": ({"tenant_id": "acme"}, {"tenant_id": "acme"}, "acme"),
    "both_differing": ({"tenant_id": "acme"}, {"tenant_id": "default"}, None),
    "neither": ({}, {}, "default"),
}
QUERY_ONLY_FORMS = ("query", "neither")  # GET and DELETE routes: the original never took a body there


@pytest.fixture
def two_tenants(api: TestClient, services: Services) -> Services:
    """Each tenant: account `smtp-main`, messages `m1` (batch `spring`) and `m2`."""
    for tenant in TENANTS:
        assert api.post("/account", headers=AUTH, json=account_payload(tenant_id=tenant)).status_code == 200
        messages = [
            message_payload("m1", tenant_id=tenant, batch_code="spring"),
            message_payload("m2", tenant_id=tenant),
        ]
        assert api.post("/commands/add-messages", headers=AUTH, json={"messages": messages}).json()["queued"] == 2
    return services


def _finish_and_acknowledge(services: Services, tenant: str, message_id: str) -> None:
    claimed = services.messages.claim(tenant, message_id, now=int(time.time()), lease_seconds=60)
    assert claimed is not None
    services.messages.record(claimed, Outcome(MessageStatus.SENT, int(time.time())))
    drain_to_outbox(services)
    for report in services.outbox.pending(10):
        services.outbox.mark_reported(report, int(time.time()))


def _suspended(services: Services, tenant: str) -> bool:
    item = services.messages.get(tenant, "m1")
    assert item is not None
    return bool(item.get("suspended"))


def _call(api: TestClient, method: str, path: str, query: dict[str, str], body: dict[str, Any] | None) -> Any:
    return api.request(method, path, headers=AUTH, params=query, json=body)


@pytest.mark.parametrize("form", FORMS)
def test_suspend_holds_only_the_named_tenant(api: TestClient, two_tenants: Services, form: str) -> None:
    query, body, target = FORMS[form]
    # batch_code travels with the tenant: in the query of the query form, in the body otherwise
    answer = _call(
        api,
        "POST",
        "/commands/suspend",
        {**query, "batch_code": "spring"} if form == "query" else query,
        None if form == "query" else {**body, "batch_code": "spring"},
    )
    if target is None:
        assert answer.status_code == 400 and "tenant_id" in answer.json()["error"]
        assert not any(_suspended(two_tenants, t) for t in TENANTS)
        return
    assert answer.status_code == 200, answer.text
    assert answer.json()["tenant_id"] == target and answer.json()["suspended_batches"] == ["spring"]
    assert {t: _suspended(two_tenants, t) for t in TENANTS} == {t: t == target for t in TENANTS}
    assert {t: campaigns.suspended_batches(two_tenants, t) for t in TENANTS} == {
        t: ["spring"] if t == target else [] for t in TENANTS
    }


@pytest.mark.parametrize("form", FORMS)
def test_activate_releases_only_the_named_tenant(api: TestClient, two_tenants: Services, form: str) -> None:
    for tenant in TENANTS:
        jobs.start(two_tenants, tenant, "suspend", {"batch_code": None}, now=time.time())
    query, body, target = FORMS[form]
    answer = _call(api, "POST", "/commands/activate", query, body or None)
    if target is None:
        assert answer.status_code == 400 and "tenant_id" in answer.json()["error"]
        assert all(_suspended(two_tenants, t) for t in TENANTS)
        return
    assert answer.status_code == 200, answer.text
    assert answer.json()["activated"] == 2 and answer.json()["suspended_batches"] == []
    assert {t: _suspended(two_tenants, t) for t in TENANTS} == {t: t != target for t in TENANTS}


@pytest.mark.parametrize("form", FORMS)
def test_delete_messages_removes_only_from_the_named_tenant(api: TestClient, two_tenants: Services, form: str) -> None:
    query, body, target = FORMS[form]
    answer = _call(api, "POST", "/commands/delete-messages", query, {**body, "ids": ["m1"]})
    if target is None:
        assert answer.status_code == 400 and "tenant_id" in answer.json()["error"]
    else:
        assert answer.status_code == 200 and answer.json()["removed"] == ["m1"], answer.text
    assert {t: two_tenants.messages.get(t, "m1") is None for t in TENANTS} == {t: t == target for t in TENANTS}


@pytest.mark.parametrize("form", FORMS)
def test_cleanup_messages_removes_only_from_the_named_tenant(api: TestClient, two_tenants: Services, form: str) -> None:
    for tenant in TENANTS:
        _finish_and_acknowledge(two_tenants, tenant, "m1")
    time.sleep(0.01)  # created strictly before the cleanup's cut-off, which has millisecond resolution
    query, body, target = FORMS[form]
    answer = _call(api, "POST", "/commands/cleanup-messages", query, {**body, "older_than_seconds": 0})
    if target is None:
        assert answer.status_code == 400 and "tenant_id" in answer.json()["error"]
    else:
        assert answer.status_code == 200 and answer.json()["removed"] == 1, answer.text
    assert {t: two_tenants.messages.get(t, "m1") is None for t in TENANTS} == {t: t == target for t in TENANTS}


@pytest.mark.parametrize("form", QUERY_ONLY_FORMS)
def test_delete_account_removes_only_the_named_tenants(api: TestClient, two_tenants: Services, form: str) -> None:
    query, _, target = FORMS[form]
    assert _call(api, "DELETE", "/account/smtp-main", query, None).status_code == 200
    assert {t: two_tenants.accounts.get(t, "smtp-main") is None for t in TENANTS} == {t: t == target for t in TENANTS}


@pytest.mark.parametrize("form", QUERY_ONLY_FORMS)
def test_list_accounts_and_messages_read_only_the_named_tenant(
    api: TestClient, two_tenants: Services, form: str
) -> None:
    query, _, target = FORMS[form]
    two_tenants.accounts.delete("acme" if target == "default" else "default", "smtp-main")
    campaigns.delete_messages(two_tenants, "acme" if target == "default" else "default", ["m2"])
    accounts = _call(api, "GET", "/accounts", query, None).json()["accounts"]
    messages = _call(api, "GET", "/messages", query, None).json()["messages"]
    assert [a["id"] for a in accounts] == ["smtp-main"]
    assert {m["tenant_id"] for m in messages} == {target} and len(messages) == 2


def test_differing_batch_codes_are_400_naming_the_field(api: TestClient, two_tenants: Services) -> None:
    answer = _call(api, "POST", "/commands/suspend", {"batch_code": "spring"}, {"batch_code": "autumn"})
    assert answer.status_code == 400 and answer.json()["error"].startswith("batch_code")
    assert campaigns.suspended_batches(two_tenants, "default") == []


@pytest.mark.parametrize("path", ["/commands/suspend", "/commands/activate", "/commands/suspended-batches"])
def test_a_tenant_key_naming_another_tenant_in_the_query_is_403(
    api: TestClient, two_tenants: Services, path: str
) -> None:
    api.post("/tenant", headers=AUTH, json={"id": "acme", "name": "Acme"})
    key = api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]
    method = "GET" if path.endswith("batches") else "POST"
    answer = api.request(method, path, headers={"X-API-Token": key}, params={"tenant_id": "default"})
    assert answer.status_code == 403 and "tenant_id" in answer.json()["error"]
    assert not _suspended(two_tenants, "default")


def test_suspended_batches_lists_the_tenants_suspensions(api: TestClient, two_tenants: Services) -> None:
    for batch in ("spring", "autumn"):
        assert (
            api.post("/commands/suspend", headers=AUTH, params={"tenant_id": "acme", "batch_code": batch}).status_code
            == 200
        )
    answer = api.get("/commands/suspended-batches", headers=AUTH, params={"tenant_id": "acme"}).json()
    assert answer == {"ok": True, "tenant_id": "acme", "suspended_batches": ["autumn", "spring"]}
    assert api.get("/commands/suspended-batches", headers=AUTH).json()["suspended_batches"] == []


def test_suspend_without_a_batch_holds_everything_and_says_star(api: TestClient, two_tenants: Services) -> None:
    answer = api.post("/commands/suspend", headers=AUTH, params={"tenant_id": "acme"}).json()
    assert answer["suspended"] == 2 and answer["suspended_batches"] == ["*"]


def test_cleanup_without_an_age_keeps_seven_days(api: TestClient, services: Services) -> None:
    """The original's retention: an acknowledged message of 8 days ago goes, one of 6 days ago stays."""
    api.post("/account", headers=AUTH, json=account_payload())
    now_ms = int(time.time() * 1000)
    for message_id, days in (("old", 8), ("recent", 6)):
        request = AddMessagesRequest(messages=[message_payload(message_id)])
        assert ingest.add_messages(services, request, now_ms=now_ms - days * DAY * 1000).queued == 1
        _finish_and_acknowledge(services, "default", message_id)
    answer = api.post("/commands/cleanup-messages", headers=AUTH)  # no body at all
    assert answer.status_code == 200 and answer.json()["removed"] == 1, answer.text
    assert services.messages.get("default", "old") is None
    assert services.messages.get("default", "recent") is not None
