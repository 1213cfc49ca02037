"""The February-2026 surface (`/{entity}/{method}`, UPSTREAM-API.md §2) over our handlers: each method's
GET-query / POST-body rule, its answer in the original's shape, our auth and tenant scoping, and the 501s."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from functions.api.routes import upstream
from mailproxy.dal.messages import Outcome
from mailproxy.logic import ingest
from mailproxy.models import AddMessagesRequest, MessageStatus
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.streams import drain_to_outbox

DAY = 86400
CLIENT_TOKEN = "client-bearer-token-that-must-never-come-back"
SMTP_PASSWORD = account_payload()["password"]


def _served(http_method: str) -> list[str]:
    return sorted(
        route.path
        for route in upstream.router.routes
        if isinstance(route, APIRoute) and route.include_in_schema and http_method in (route.methods or ())
    )


@pytest.fixture
def acme(api: TestClient) -> dict[str, str]:
    """Tenants `acme` (with a bearer client_auth, an account, messages m1 of batch `spring` and m2) and
    `other` (an account); the header of acme's own tenant key."""
    for tenant in ("acme", "other"):
        tenant_body = {
            "id": tenant,
            "name": tenant.title(),
            "client_base_url": "http://127.0.0.1:9/app",
            "client_auth": {"method": "bearer", "token": CLIENT_TOKEN},
        }
        assert api.post("/tenant", headers=AUTH, json=tenant_body).status_code == 200
        assert api.post("/account", headers=AUTH, json=account_payload(tenant_id=tenant)).status_code == 200
    messages = [message_payload("m1", tenant_id="acme", batch_code="spring"), message_payload("m2", tenant_id="acme")]
    assert api.post("/commands/add-messages", headers=AUTH, json={"messages": messages}).json()["queued"] == 2
    key = api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]
    return {"X-API-Token": key}


def _finish(services: Services, tenant: str, message_id: str, status: MessageStatus = MessageStatus.SENT) -> None:
    claimed = services.messages.claim(tenant, message_id, now=int(time.time()), lease_seconds=60)
    assert claimed is not None
    services.messages.record(claimed, Outcome(status, int(time.time()), error="550 no" if status.is_final else None))


def _acknowledge_all(services: Services) -> None:
    drain_to_outbox(services)
    for report in services.outbox.pending(100):
        services.outbox.mark_reported(report, int(time.time()))


def _no_secret_in(text: str) -> None:
    for secret in (CLIENT_TOKEN, SMTP_PASSWORD, "api_key_hash", "password_enc", "token_enc"):
        assert secret not in text


# -- the GET-query / POST-body rule ------------------------------------------------------------------------


@pytest.mark.parametrize("path", _served("POST"))
def test_a_post_method_without_a_body_is_422(api: TestClient, acme: dict[str, str], path: str) -> None:
    answer = api.post(path, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["ok"] is False


def test_an_empty_body_is_enough_where_every_parameter_is_optional(api: TestClient, report_triggers: Any) -> None:
    answer = api.post("/instance/run_now", headers=AUTH, json={})
    assert answer.status_code == 200 and answer.json()["ok"] is True
    assert report_triggers.count == 1


def test_a_get_method_reads_the_query_and_ignores_a_body(api: TestClient, acme: dict[str, str]) -> None:
    answer = api.request("GET", "/tenants/get", headers=AUTH, json={"tenant_id": "acme"})
    assert answer.status_code == 422 and "tenant_id" in answer.json()["error"]
    assert api.get("/tenants/get", headers=AUTH, params={"tenant_id": "acme"}).json()["id"] == "acme"


def test_a_required_body_parameter_left_out_is_422_naming_it(api: TestClient, acme: dict[str, str]) -> None:
    answer = api.post("/tenants/suspend_batch", headers=AUTH, json={"batch_code": "spring"})
    assert answer.status_code == 422 and "tenant_id" in answer.json()["error"]


def test_the_other_http_method_is_405_saying_which(api: TestClient) -> None:
    answer = api.get("/messages/add_batch", headers=AUTH)
    assert answer.status_code == 405 and "POST" in answer.json()["error"]
    answer = api.post("/messages/list", headers=AUTH, json={"tenant_id": "acme"})
    assert answer.status_code == 405 and "GET" in answer.json()["error"]


def test_an_unknown_method_is_404_listing_the_entitys_methods(api: TestClient) -> None:
    answer = api.get("/tenants/frobnicate", headers=AUTH)
    assert answer.status_code == 404
    assert "tenants/frobnicate" in answer.json()["error"] and "suspend_batch" in answer.json()["error"]


# -- instance ----------------------------------------------------------------------------------------------


def test_instance_health_and_status_answer_the_originals_shapes(api: TestClient) -> None:
    assert api.get("/instance/health", headers=AUTH).json() == {"status": "ok"}
    assert api.get("/instance/health").status_code == 401  # unlike /health, a generated route needs a token
    status = api.get("/instance/status", headers=AUTH).json()
    assert status["ok"] is True and status["active"] is True
    assert status["dependencies"] == {"dynamodb": "ok", "sqs": "ok"}


def test_run_now_for_a_tenant_is_for_that_tenant(api: TestClient, acme: dict[str, str], services: Services) -> None:
    assert api.post("/instance/run_now", headers=acme, json={}).json()["ok"] is True
    assert api.post("/instance/run_now", headers=acme, json={"tenant_id": "other"}).status_code == 403


def test_sync_status_lists_every_tenant_for_the_admin_and_its_own_for_a_key(
    api: TestClient, acme: dict[str, str]
) -> None:
    admin = api.get("/instance/get_sync_status", headers=AUTH).json()
    assert admin["ok"] is True and {t["id"] for t in admin["tenants"]} == {"acme", "other"}
    assert set(admin["tenants"][0]) == {
        "id",
        "name",
        "active",
        "client_base_url",
        "last_sync_ts",
        "next_sync_due",
        "in_dnd",
    }
    assert isinstance(admin["sync_interval_seconds"], int)
    own = api.get("/instance/get_sync_status", headers=acme).json()
    assert [t["id"] for t in own["tenants"]] == ["acme"]


@pytest.mark.parametrize(
    ("http", "path", "why"),
    [
        ("GET", "/instance/get", "Secrets Manager"),
        ("POST", "/instance/update", "Secrets Manager"),
        ("POST", "/instance/upgrade_to_ee", "no editions"),
        ("GET", "/accounts/list_pec", "issue 17"),
        ("GET", "/accounts/get_pec_ids", "issue 17"),
        ("POST", "/storages/add", "S3"),
        ("GET", "/storages/list", "S3"),
    ],
)
def test_a_method_with_no_meaning_here_is_501_saying_why(api: TestClient, http: str, path: str, why: str) -> None:
    answer = api.request(http, path, headers=AUTH, json={})
    assert answer.status_code == 501
    assert answer.json()["ok"] is False and why in answer.json()["error"]


# -- tenants -----------------------------------------------------------------------------------------------


def test_tenants_add_gives_a_new_tenant_its_key_once_and_never_a_secret(api: TestClient) -> None:
    body = {"id": "beta", "name": "Beta", "client_auth": {"method": "bearer", "token": CLIENT_TOKEN}}
    first = api.post("/tenants/add", headers=AUTH, json=body)
    assert first.status_code == 200, first.text
    row = first.json()
    assert row["id"] == "beta" and row["name"] == "Beta" and row["api_key"].startswith("gmpk_")
    assert row["client_auth"] == {"method": "bearer", "user": None, "token": "***"} and row["has_api_key"] is True
    _no_secret_in(first.text)
    key = {"X-API-Token": row["api_key"]}
    assert api.get("/tenants/get", headers=key, params={"tenant_id": "beta"}).status_code == 200
    again = api.post("/tenants/add", headers=AUTH, json={**body, "name": "Beta 2"}).json()
    assert again["api_key"] is None and again["name"] == "Beta 2"
    assert api.get("/tenants/get", headers=key, params={"tenant_id": "beta"}).status_code == 200  # key kept


def test_tenants_get_is_the_bare_row_and_unknown_is_404(api: TestClient, acme: dict[str, str]) -> None:
    answer = api.get("/tenants/get", headers=AUTH, params={"tenant_id": "acme"})
    assert answer.status_code == 200 and "ok" not in answer.json() and answer.json()["name"] == "Acme"
    _no_secret_in(answer.text)
    missing = api.get("/tenants/get", headers=AUTH, params={"tenant_id": "nobody"})
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]


def test_tenants_list_is_a_bare_list_filtered_by_active_only(api: TestClient, acme: dict[str, str]) -> None:
    api.post("/tenants/update", headers=AUTH, json={"tenant_id": "other", "active": False})
    listed = api.get("/tenants/list", headers=AUTH).json()
    assert isinstance(listed, list) and {t["id"] for t in listed} == {"acme", "other"}
    active = api.get("/tenants/list", headers=AUTH, params={"active_only": "true"}).json()
    assert [t["id"] for t in active] == ["acme"]
    assert [t["id"] for t in api.get("/tenants/list", headers=acme).json()] == ["acme"]


def test_tenants_update_changes_only_what_it_names(api: TestClient, acme: dict[str, str], services: Services) -> None:
    answer = api.post("/tenants/update", headers=acme, json={"tenant_id": "acme", "name": "Acme Ltd", "active": None})
    assert answer.status_code == 200, answer.text
    row = answer.json()
    assert row["name"] == "Acme Ltd" and row["client_base_url"] == "http://127.0.0.1:9/app" and row["active"] is True
    stored = services.tenants.get("acme")
    assert stored is not None and services.tenants.credentials(stored).token == CLIENT_TOKEN  # kept, re-encrypted
    assert api.get("/tenants/get", headers=acme, params={"tenant_id": "acme"}).status_code == 200  # key untouched
    missing = api.post("/tenants/update", headers=AUTH, json={"tenant_id": "nobody", "name": "x"})
    assert missing.status_code == 404


def test_tenants_delete_answers_true_and_cascades(api: TestClient, acme: dict[str, str], services: Services) -> None:
    assert api.post("/tenants/delete", headers=acme, json={"tenant_id": "acme"}).status_code == 403
    answer = api.post("/tenants/delete", headers=AUTH, json={"tenant_id": "acme"})
    assert answer.status_code == 200 and answer.json() is True
    assert services.tenants.get("acme") is None and services.accounts.get("acme", "smtp-main") is None
    assert services.messages.get("acme", "m2") is None
    assert api.post("/tenants/delete", headers=AUTH, json={"tenant_id": "acme"}).status_code == 404


def test_create_api_key_with_expiry_and_revoke(api: TestClient, acme: dict[str, str]) -> None:
    expires = int(time.time()) + 3600
    created = api.post("/tenants/create_api_key", headers=AUTH, json={"tenant_id": "acme", "expires_at": expires})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["ok"] is True and body["tenant_id"] == "acme" and body["expires_at"] == expires and body["message"]
    new_key = {"X-API-Token": body["api_key"]}
    assert api.get("/tenants/get", headers=new_key, params={"tenant_id": "acme"}).status_code == 200
    assert api.get("/tenants/get", headers=acme, params={"tenant_id": "acme"}).status_code == 401  # replaced
    past = api.post("/tenants/create_api_key", headers=AUTH, json={"tenant_id": "acme", "expires_at": 1000})
    assert past.status_code == 422 and "expires_at" in past.json()["error"]
    revoked = api.post("/tenants/revoke_api_key", headers=AUTH, json={"tenant_id": "acme"}).json()
    assert revoked["ok"] is True and revoked["tenant_id"] == "acme" and revoked["message"]
    assert api.get("/tenants/get", headers=new_key, params={"tenant_id": "acme"}).status_code == 401
    assert api.post("/tenants/revoke_api_key", headers=AUTH, json={"tenant_id": "acme"}).status_code == 404


def test_suspend_and_activate_batch_in_the_originals_shape(
    api: TestClient, acme: dict[str, str], services: Services
) -> None:
    held = api.post("/tenants/suspend_batch", headers=acme, json={"tenant_id": "acme", "batch_code": "spring"}).json()
    assert held["ok"] is True and held["tenant_id"] == "acme" and held["suspended_batches"] == ["spring"]
    assert held["suspended"] == 1
    assert api.get("/tenants/get_suspended_batches", headers=acme, params={"tenant_id": "acme"}).json() == {
        "ok": True,
        "tenant_id": "acme",
        "suspended_batches": ["spring"],
    }
    item = services.messages.get("acme", "m1")
    assert item is not None and item.get("suspended")
    released = api.post("/instance/activate", headers=AUTH, json={"tenant_id": "acme", "batch_code": "spring"}).json()
    assert released["suspended_batches"] == [] and released["activated"] == 1
    whole = api.post("/instance/suspend", headers=AUTH, json={"tenant_id": "acme"}).json()
    assert whole["suspended_batches"] == ["*"] and whole["suspended"] == 2


def test_suspending_an_unknown_tenant_is_404(api: TestClient) -> None:
    answer = api.post("/tenants/suspend_batch", headers=AUTH, json={"tenant_id": "nobody"})
    assert answer.status_code == 404 and "nobody" in answer.json()["error"]
    assert api.post("/tenants/suspend_batch", headers=AUTH, json={"tenant_id": "default"}).status_code == 200


# -- accounts ----------------------------------------------------------------------------------------------


def test_accounts_add_get_list_delete(api: TestClient, acme: dict[str, str]) -> None:
    body = account_payload(id="relay", tenant_id="acme", port=587)
    del body["use_tls"]
    added = api.post("/accounts/add", headers=acme, json=body)
    assert added.status_code == 200, added.text
    row = added.json()
    assert row["pk"] == "acme/relay" and row["use_tls"] is True and row["password"] == "***"
    _no_secret_in(added.text)
    got = api.get("/accounts/get", headers=acme, params={"tenant_id": "acme", "account_id": "relay"}).json()
    assert got == row
    listed = api.get("/accounts/list", headers=acme, params={"tenant_id": "acme"})
    assert [a["pk"] for a in listed.json()] == ["acme/relay", "acme/smtp-main"]
    _no_secret_in(listed.text)
    gone = api.post("/accounts/delete", headers=acme, json={"tenant_id": "acme", "account_id": "relay"})
    assert gone.status_code == 200 and gone.json() is None
    again = api.post("/accounts/delete", headers=acme, json={"tenant_id": "acme", "account_id": "relay"})
    assert again.status_code == 404
    missing = api.get("/accounts/get", headers=acme, params={"tenant_id": "acme", "account_id": "relay"})
    assert missing.status_code == 404 and "relay" in missing.json()["error"]


def test_accounts_add_needs_the_tenant(api: TestClient) -> None:
    answer = api.post("/accounts/add", headers=AUTH, json=account_payload())
    assert answer.status_code == 422 and "tenant_id" in answer.json()["error"]


def test_accounts_add_with_null_use_tls_lets_the_port_decide(api: TestClient, acme: dict[str, str]) -> None:
    body = account_payload(id="relay", tenant_id="acme", port=2525, use_tls=None)
    assert api.post("/accounts/add", headers=AUTH, json=body).json()["use_tls"] is False


# -- messages ----------------------------------------------------------------------------------------------


def test_add_batch_takes_from_addr_a_string_to_and_a_default_priority(
    api: TestClient, acme: dict[str, str], services: Services
) -> None:
    message = message_payload("b1", tenant_id="acme", to="a@example.com, b@example.com")
    message["from_addr"] = message.pop("from")
    answer = api.post("/messages/add_batch", headers=acme, json={"messages": [message], "default_priority": 0})
    assert answer.json() == {"ok": True, "queued": 1, "rejected": []}
    item = services.messages.get("acme", "b1")
    assert item is not None and int(item["priority"]) == 0


def test_messages_add_answers_id_and_pk(api: TestClient, acme: dict[str, str], services: Services) -> None:
    message = message_payload("single", tenant_id="acme")
    message["from_addr"] = message.pop("from")
    answer = api.post("/messages/add", headers=acme, json=message)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": "single", "pk": "acme/single"}
    assert services.messages.get("acme", "single") is not None


def test_messages_add_needs_a_body_field(api: TestClient, acme: dict[str, str]) -> None:
    message = message_payload("single", tenant_id="acme")
    del message["body"]
    answer = api.post("/messages/add", headers=acme, json=message)
    assert answer.status_code == 422 and "body" in answer.json()["error"]


@pytest.mark.parametrize(
    ("overrides", "status", "says"),
    [({"account_id": "nowhere"}, 404, "account_id"), ({"id": "m1"}, 400, "already known")],
)
def test_a_refused_single_message_is_an_error_naming_why(
    api: TestClient, acme: dict[str, str], services: Services, overrides: dict[str, str], status: int, says: str
) -> None:
    _finish(services, "acme", "m1")
    answer = api.post("/messages/add", headers=acme, json=message_payload(**{"tenant_id": "acme", **overrides}))
    assert answer.status_code == status and says in answer.json()["error"]


def test_messages_get_and_list_carry_the_originals_status_and_smtp_ts(
    api: TestClient, acme: dict[str, str], services: Services
) -> None:
    _finish(services, "acme", "m1")
    got = api.get("/messages/get", headers=acme, params={"tenant_id": "acme", "message_id": "m1"}).json()
    assert got["pk"] == "acme/m1" and got["status"] == "sent" and got["state"] == "sent"
    assert got["smtp_ts"] == got["sent_ts"] and got["smtp_ts"] is not None
    listed = api.get("/messages/list", headers=acme, params={"tenant_id": "acme"}).json()
    assert isinstance(listed, list) and {m["id"]: m["status"] for m in listed} == {"m1": "sent", "m2": "pending"}
    assert all(m["history"] is None for m in listed)
    active = api.get(
        "/messages/list", headers=acme, params={"tenant_id": "acme", "active_only": "true", "include_history": "true"}
    ).json()
    assert [m["id"] for m in active] == ["m2"] and active[0]["history"][0]["event"] == "queued"
    missing = api.get("/messages/get", headers=acme, params={"tenant_id": "acme", "message_id": "nope"})
    assert missing.status_code == 404


def test_an_error_sets_smtp_ts_from_error_ts(api: TestClient, acme: dict[str, str], services: Services) -> None:
    _finish(services, "acme", "m2", MessageStatus.ERROR)
    got = api.get("/messages/get", headers=AUTH, params={"tenant_id": "acme", "message_id": "m2"}).json()
    assert got["status"] == "error" and got["smtp_ts"] == got["error_ts"] and got["error"]


def test_messages_delete_by_pk_answers_a_bool(api: TestClient, acme: dict[str, str], services: Services) -> None:
    assert api.post("/messages/delete", headers=acme, json={"message_pk": "acme/m2"}).json() is True
    assert services.messages.get("acme", "m2") is None
    assert api.post("/messages/delete", headers=acme, json={"message_pk": "acme/m2"}).json() is False
    _finish(services, "acme", "m1")
    assert api.post("/messages/delete", headers=acme, json={"message_pk": "acme/m1"}).json() is False  # sent: kept
    for bad_pk in ("no-slash", "acme/" + "x" * 257, "ac#me/m1"):
        bad = api.post("/messages/delete", headers=acme, json={"message_pk": bad_pk})
        assert bad.status_code == 422 and "message_pk" in bad.json()["error"], bad_pk


def test_delete_batch_counts_removed_as_the_original(api: TestClient, acme: dict[str, str], services: Services) -> None:
    _finish(services, "acme", "m1")
    answer = api.post("/messages/delete_batch", headers=acme, json={"tenant_id": "acme", "ids": ["m1", "m2", "zz"]})
    body = answer.json()
    assert body["ok"] is True and body["removed"] == 1 and body["not_found"] == ["zz"] and body["unauthorized"] == []
    assert [entry["id"] for entry in body["not_removed"]] == ["m1"]


def test_cleanup_is_a_get_keeping_one_day_by_default(api: TestClient, acme: dict[str, str], services: Services) -> None:
    now_ms = int(time.time() * 1000)
    for message_id, hours in (("old", 30), ("recent", 20)):
        request = AddMessagesRequest(messages=[message_payload(message_id, tenant_id="acme")])
        assert ingest.add_messages(services, request, now_ms=now_ms - hours * 3600 * 1000).queued == 1
        _finish(services, "acme", message_id)
    _acknowledge_all(services)
    answer = api.get("/messages/cleanup", headers=acme, params={"tenant_id": "acme"})
    assert answer.json() == {"ok": True, "removed": 1, "job_id": answer.json()["job_id"]}  # done inline
    assert services.messages.get("acme", "old") is None and services.messages.get("acme", "recent") is not None


def test_counts_are_bare_ints(api: TestClient, acme: dict[str, str], services: Services) -> None:
    # Admin: the deployment's pending messages from the counters of /metrics, which the sender keeps;
    # acme's two are queued, and `other` has none.
    assert api.get("/messages/count_active", headers=AUTH).json() == 2
    _finish(services, "acme", "m1")  # the store alone: no sender, so no counter moves
    count = api.get("/messages/count_pending_for_tenant", headers=acme, params={"tenant_id": "acme"})
    assert count.status_code == 200 and count.json() == 1
    spring = api.get(
        "/messages/count_pending_for_tenant", headers=acme, params={"tenant_id": "acme", "batch_code": "spring"}
    )
    assert spring.json() == 0
    assert api.get("/messages/count_active", headers=acme).json() == 1  # a tenant key: its own, counted exactly


# -- command log -------------------------------------------------------------------------------------------


def test_command_log_list_get_export_purge(api: TestClient, acme: dict[str, str]) -> None:
    api.post("/tenants/suspend_batch", headers=acme, json={"tenant_id": "acme", "batch_code": "spring"})
    listed = api.get("/command_log/list", headers=AUTH, params={"endpoint_filter": "suspend_batch"}).json()
    assert isinstance(listed, list) and len(listed) == 1
    entry = listed[0]
    assert entry["endpoint"] == "POST /tenants/suspend_batch" and entry["tenant_id"] == "acme"
    assert entry["caller"] == "tenant"
    skipped = api.get("/command_log/list", headers=AUTH, params={"endpoint_filter": "suspend_batch", "offset": 1})
    assert skipped.json() == []
    assert api.get("/command_log/get", headers=AUTH, params={"command_id": entry["id"]}).json() == entry
    assert api.get("/command_log/get", headers=AUTH, params={"command_id": "nope"}).status_code == 404
    exported = api.get("/command_log/export", headers=AUTH, params={"tenant_id": "acme"}).json()
    suspend = next(e for e in exported if e["endpoint"] == "POST /tenants/suspend_batch")
    assert set(suspend) == {"endpoint", "tenant_id", "payload", "command_ts"}
    assert suspend["payload"]["body"]["batch_code"] == "spring"
    purged = api.post("/command_log/purge", headers=AUTH, json={"threshold_ts": int(time.time()) + 60}).json()
    assert purged["ok"] is True and purged["deleted"] >= 1


@pytest.mark.parametrize(
    ("http", "path", "payload"),
    [
        ("POST", "/tenants/add", {"id": "zeta"}),
        ("GET", "/command_log/list", None),
        ("GET", "/command_log/export", None),
        ("GET", "/command_log/get", None),
        ("POST", "/command_log/purge", {"threshold_ts": 1}),
    ],
)
def test_admin_only_methods_refuse_a_tenant_key(
    api: TestClient, acme: dict[str, str], http: str, path: str, payload: dict[str, Any] | None
) -> None:
    params = {"command_id": "0000000000000-000000000000"} if path.endswith("/get") else None
    answer = api.request(http, path, headers=acme, params=params, json=payload)
    assert answer.status_code == 403 and "admin" in answer.json()["error"]


# -- tenant scoping ----------------------------------------------------------------------------------------

# Every tenant-named method, naming `other`: (HTTP method, path, query or body)
ON_OTHER: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/instance/run_now", {"tenant_id": "other"}),
    ("POST", "/instance/suspend", {"tenant_id": "other"}),
    ("POST", "/instance/activate", {"tenant_id": "other"}),
    ("POST", "/tenants/suspend_batch", {"tenant_id": "other", "batch_code": "spring"}),
    ("POST", "/tenants/activate_batch", {"tenant_id": "other"}),
    ("GET", "/tenants/get_suspended_batches", {"tenant_id": "other"}),
    ("GET", "/tenants/get", {"tenant_id": "other"}),
    ("POST", "/tenants/update", {"tenant_id": "other", "name": "mine now"}),
    ("POST", "/tenants/delete", {"tenant_id": "other"}),
    ("POST", "/tenants/create_api_key", {"tenant_id": "other"}),
    ("POST", "/tenants/revoke_api_key", {"tenant_id": "other"}),
    ("POST", "/accounts/add", account_payload(id="x", tenant_id="other")),
    ("POST", "/accounts/add_pec", {**account_payload(id="x", tenant_id="other"), "imap_host": "127.0.0.1"}),
    ("GET", "/accounts/get", {"tenant_id": "other", "account_id": "smtp-main"}),
    ("GET", "/accounts/list", {"tenant_id": "other"}),
    ("POST", "/accounts/delete", {"tenant_id": "other", "account_id": "smtp-main"}),
    ("POST", "/messages/add_batch", {"messages": [message_payload("o1", tenant_id="other")]}),
    ("POST", "/messages/add", message_payload("o1", tenant_id="other")),
    ("GET", "/messages/get", {"tenant_id": "other", "message_id": "m1"}),
    ("GET", "/messages/list", {"tenant_id": "other"}),
    ("POST", "/messages/delete", {"message_pk": "other/m1"}),
    ("POST", "/messages/delete_batch", {"tenant_id": "other", "ids": ["m1"]}),
    ("GET", "/messages/cleanup", {"tenant_id": "other", "older_than_seconds": "0"}),
    ("GET", "/messages/count_pending_for_tenant", {"tenant_id": "other"}),
]


def test_every_tenant_named_method_is_in_the_scoping_table() -> None:
    served = {path for path in _served("GET") + _served("POST")}
    untenanted = {
        "/instance/health",
        "/instance/status",
        "/instance/get_sync_status",
        "/tenants/add",
        "/tenants/list",
        "/messages/count_active",
        "/command_log/list",
        "/command_log/get",
        "/command_log/export",
        "/command_log/purge",
        "/instance/get_bounce_config",
        "/instance/set_bounce_config",
        "/instance/reload_bounce",
    }
    assert served - untenanted == {path for _, path, _ in ON_OTHER}


@pytest.mark.parametrize(("http", "path", "named"), ON_OTHER, ids=[path for _, path, _ in ON_OTHER])
def test_a_tenant_key_naming_another_tenant_is_403_and_changes_nothing(
    api: TestClient, acme: dict[str, str], services: Services, http: str, path: str, named: dict[str, Any]
) -> None:
    before = (services.tenants.get("other"), services.accounts.list("other"), services.suspensions.suspended("other"))
    answer = api.get(path, headers=acme, params=named) if http == "GET" else api.post(path, headers=acme, json=named)
    assert answer.status_code == 403, answer.text
    assert ("admin" if path == "/tenants/delete" else "tenant_id") in answer.json()["error"]  # delete: admin only
    after = (services.tenants.get("other"), services.accounts.list("other"), services.suspensions.suspended("other"))
    assert after == before and services.messages.get("other", "o1") is None
