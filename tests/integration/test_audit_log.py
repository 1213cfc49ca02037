"""The audit (command) log: every call of a state-changing route leaves one entry (who, what, on which
tenant, the HTTP status, ids and counts), a refused one too; GETs leave none; no entry holds a secret the
call carried; list (filters, cursor), export (JSON lines), purge; admin only; a failed write never fails
the call."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from functions.api.app import ApiContext, create_app
from functions.api.middleware import AuditTrail
from mailproxy.dal.audit import AuditEntry, AuditLog, new_entry_id
from mailproxy.services import Services
from tests.conftest import API_TOKEN, AUTH, account_payload, message_payload

PATH_VALUES = {"tenant_id": "acme", "account_id": "smtp-main"}


def _state_changing_routes() -> list[tuple[str, str]]:
    """Every non-GET route of the app as composed, so a route added later is covered without a change here."""
    app = create_app(ApiContext(services=lambda: None, api_token=lambda: API_TOKEN, trigger_report=lambda: None))  # type: ignore[arg-type,return-value]
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found += [(method, route.path) for method in sorted((route.methods or set()) - {"GET", "HEAD"})]
    return found


UNSUBSCRIBE = ("POST", "/unsubscribe/{token}")  # unauthenticated: the signed token in the link is the credential
STATE_CHANGING = [route for route in _state_changing_routes() if route != UNSUBSCRIBE]


def concrete(template: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), template)


def entries(services: Services, **filters: Any) -> list[AuditEntry]:
    return list(services.audit.export(**filters))


def raw_audit_items(services: Services) -> str:
    items = services.dynamodb.scan(TableName=services.settings.config_table)["Items"]
    return json.dumps([item for item in items if item["pk"]["S"].startswith("AUDIT#")])


@pytest.fixture
def acme(api: TestClient) -> dict[str, str]:
    """Tenant acme with its key (these setup calls are logged too)."""
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).status_code == 200
    return {"X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]}


def test_the_app_has_state_changing_routes_to_walk() -> None:
    assert len(STATE_CHANGING) >= 15
    assert ("POST", "/command-log/purge") in STATE_CHANGING and ("PUT", "/tenant/{tenant_id}") in STATE_CHANGING


@pytest.mark.parametrize(("method", "template"), STATE_CHANGING, ids=[f"{m} {t}" for m, t in STATE_CHANGING])
def test_every_state_changing_route_leaves_an_entry_with_its_status(
    api: TestClient, services: Services, method: str, template: str
) -> None:
    answer = api.request(method, concrete(template), headers=AUTH, json={})
    [entry] = entries(services)
    assert (entry.method, entry.route, entry.endpoint) == (method, template, f"{method} {template}")
    assert entry.status == answer.status_code
    assert (entry.caller, entry.key_id) == ("admin", None)
    assert abs(entry.ts - time.time() * 1000) < 600_000  # a clock sanity check, not a timing assertion


@pytest.mark.parametrize(("method", "template"), STATE_CHANGING, ids=[f"{m} {t}" for m, t in STATE_CHANGING])
def test_a_call_without_a_token_is_logged_as_anonymous_with_its_401(
    api: TestClient, services: Services, method: str, template: str
) -> None:
    assert api.request(method, concrete(template), json={}).status_code == 401
    [entry] = entries(services)
    assert (entry.route, entry.status, entry.caller, entry.caller_tenant_id) == (template, 401, "anonymous", None)


def test_an_unsubscribe_call_is_logged_as_anonymous_without_its_token(api: TestClient, services: Services) -> None:
    assert UNSUBSCRIBE in _state_changing_routes()
    token = "a-forged-token-that-must-not-be-logged"
    assert api.post(f"/unsubscribe/{token}").status_code == 404
    [entry] = entries(services)
    assert (entry.route, entry.status, entry.caller, entry.summary["path"]) == (
        UNSUBSCRIBE[1],
        404,
        "anonymous",
        {"token": "***"},
    )
    assert token not in raw_audit_items(services)


def test_get_routes_and_unknown_paths_leave_no_entry(api: TestClient, services: Services, acme: dict[str, str]) -> None:
    before = len(entries(services))
    for path in ("/status", "/accounts", "/messages", "/tenants", "/tenant/acme", "/command-log", "/health"):
        assert api.get(path, headers=AUTH).status_code == 200, path
    assert api.post("/no/such/route", headers=AUTH, json={}).status_code == 404
    assert len(entries(services)) == before


def test_a_tenant_key_call_names_the_tenant_and_the_key_id_never_the_key(
    api: TestClient, services: Services, acme: dict[str, str]
) -> None:
    assert api.post("/commands/suspend", headers=acme, json={"batch_code": "spring"}).status_code == 200
    entry = entries(services, endpoint_filter="/commands/suspend")[-1]
    key = acme["X-API-Token"]
    assert (entry.caller, entry.caller_tenant_id, entry.tenant_id) == ("tenant", "acme", "acme")
    assert entry.key_id == hashlib.sha256(key.encode()).hexdigest()[:8]
    assert entry.summary == {"body": {"batch_code": "spring"}}
    assert key not in raw_audit_items(services)


def test_a_refused_call_is_logged_with_its_403_and_the_tenant_it_named(
    api: TestClient, services: Services, acme: dict[str, str]
) -> None:
    assert api.post("/tenant", headers=AUTH, json={"id": "globex"}).status_code == 200
    answer = api.post("/commands/delete-messages", headers=acme, json={"tenant_id": "globex", "ids": ["m1"]})
    assert answer.status_code == 403
    entry = entries(services, endpoint_filter="delete-messages")[-1]
    assert (entry.status, entry.caller_tenant_id, entry.tenant_id) == (403, "acme", "globex")
    assert entry.summary["body"] == {"tenant_id": "globex", "ids_count": 1, "ids": ["m1"]}


def test_an_admin_call_records_the_tenant_the_route_resolved(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())  # no tenant_id: the default tenant
    api.post("/tenant", headers=AUTH, json={"id": "acme"})
    api.delete("/tenant/acme", headers=AUTH)
    resolved = {(e.endpoint, e.tenant_id) for e in entries(services)}
    assert resolved == {("POST /account", "default"), ("POST /tenant", "acme"), ("DELETE /tenant/{tenant_id}", "acme")}


def test_no_entry_holds_a_secret_the_calls_carried(api: TestClient, services: Services) -> None:
    secrets = {
        "smtp": "smtp-password-9f8e7d",
        "report_token": "tenant-report-token-1a2b3c",
        "basic": "tenant-basic-password-4d5e6f",
        "attachment": "attachment-bearer-7g8h9i",
        "probe": "probe-password-0j1k2l",
        "body": "the confidential body of the message",
        "subject": "Confidential subject line",
    }
    tenant = {
        "id": "acme",
        "client_base_url": "http://127.0.0.1:9",
        "client_auth": {"method": "bearer", "token": secrets["report_token"]},
    }
    assert api.post("/tenant", headers=AUTH, json=tenant).status_code == 200
    basic = {"id": "acme", "client_auth": {"method": "basic", "user": "u", "password": secrets["basic"]}}
    assert api.put("/tenant/acme", headers=AUTH, json=basic).status_code == 200
    key = api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]
    signing = api.post("/tenant/acme/signing-secret", headers=AUTH).json()["signing_secret"]
    account = account_payload(tenant_id="acme", password=secrets["smtp"])
    assert api.post("/account", headers=AUTH, json=account).status_code == 200
    message = message_payload(
        "m1",
        tenant_id="acme",
        subject=secrets["subject"],
        body=secrets["body"],
        attachments=[
            {
                "filename": "a.pdf",
                "storage_path": "https://files.example.com/a.pdf",
                "auth": {"token": secrets["attachment"]},
            }
        ],
    )
    queued = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message, message_payload("m2", tenant_id="acme")]}
    )
    assert queued.json()["queued"] == 2, queued.text
    probe = {
        "tenant_id": "acme",
        "host": "127.0.0.1",
        "port": 9,
        "user": "u",
        "password": secrets["probe"],
        "timeout": 1,
    }
    api.post("/commands/test-smtp", headers=AUTH, json=probe)
    assert api.post("/account", headers=AUTH, json={**account, "port": "not a port"}).status_code == 422

    stored = raw_audit_items(services)
    exported = api.get("/command-log/export", headers=AUTH).text
    listed = api.get("/command-log", headers=AUTH).text
    for secret in [*secrets.values(), key, signing, "rcpt@example.com"]:
        assert secret not in stored and secret not in exported and secret not in listed, secret
    add = entries(services, endpoint_filter="add-messages")[-1]
    assert add.summary["body"] == {"messages_count": 2, "messages_ids": ["m1", "m2"]}
    assert add.tenant_id == "acme"
    assert {"POST /commands/test-smtp", "PUT /tenant/{tenant_id}"} <= {e.endpoint for e in entries(services)}


def test_list_filters_by_tenant_endpoint_and_time(api: TestClient, services: Services, acme: dict[str, str]) -> None:
    log = services.audit
    for seconds, tenant, route in [
        (1_000, "acme", "/commands/suspend"),
        (2_000, "globex", "/commands/suspend"),
        (3_000, "acme", "/account"),
    ]:
        log.record(_entry(seconds * 1000, tenant, route))
    old = {"until_ts": 10_000}

    def ids(**query: Any) -> list[tuple[int, str | None, str]]:
        answer = api.get("/command-log", headers=AUTH, params={**old, **query})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["ok"] is True and body["total"] == len(body["commands"])
        return [(c["ts"] // 1000, c["tenant_id"], c["route"]) for c in body["commands"]]

    assert ids() == [
        (1_000, "acme", "/commands/suspend"),
        (2_000, "globex", "/commands/suspend"),
        (3_000, "acme", "/account"),
    ]
    assert ids(tenant_id="acme") == [(1_000, "acme", "/commands/suspend"), (3_000, "acme", "/account")]
    assert ids(endpoint_filter="POST /commands/") == [
        (1_000, "acme", "/commands/suspend"),
        (2_000, "globex", "/commands/suspend"),
    ]
    assert ids(since_ts=2_000) == [(2_000, "globex", "/commands/suspend"), (3_000, "acme", "/account")]
    assert ids(since_ts=1_001, until_ts=2_000) == [(2_000, "globex", "/commands/suspend")]
    assert ids(tenant_id="acme", endpoint_filter="suspend", until_ts=999) == []
    # the calls of the fixture are recent: outside the old window, in the default one
    recent = api.get("/command-log", headers=AUTH, params={"since_ts": 10_001}).json()["commands"]
    assert [c["endpoint"] for c in recent] == ["POST /tenant", "POST /tenant/{tenant_id}/api-key"]


def test_pages_follow_the_cursor_oldest_first_without_repeats(api: TestClient, services: Services) -> None:
    for second in range(1, 8):
        services.audit.record(_entry(second * 1000, "acme", "/account"))
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/command-log", headers=AUTH, params=params).json()
        seen += [c["ts"] // 1000 for c in page["commands"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"cursor": "nonsense"}, "cursor"), ({"limit": 1001}, "limit"), ({"since_ts": -1}, "since_ts")],
)
def test_bad_list_parameters_are_refused_naming_the_field(api: TestClient, params: dict[str, Any], field: str) -> None:
    answer = api.get("/command-log", headers=AUTH, params=params)
    assert answer.status_code in (400, 422) and field in answer.json()["error"]


def test_export_streams_json_lines_that_parse(api: TestClient, services: Services, acme: dict[str, str]) -> None:
    api.post("/commands/suspend", headers=acme, json={})
    answer = api.get("/command-log/export", headers=AUTH, params={"tenant_id": "acme"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [line["endpoint"] for line in lines] == [
        "POST /tenant",
        "POST /tenant/{tenant_id}/api-key",
        "POST /commands/suspend",
    ]
    assert lines[-1]["caller"] == "tenant" and services.audit.get(lines[-1]["id"]).endpoint == "POST /commands/suspend"  # type: ignore[union-attr]


def test_purge_deletes_entries_before_the_threshold_and_is_itself_logged(api: TestClient, services: Services) -> None:
    for second in (100, 200, 300):
        services.audit.record(_entry(second * 1000, "acme", "/account"))
    answer = api.post("/command-log/purge", headers=AUTH, json={"threshold_ts": 250})
    assert answer.json() == {"ok": True, "deleted": 2}
    remaining = [(e.ts, e.endpoint) for e in entries(services)]
    assert remaining[0] == (300_000, "POST /account") and remaining[1][1] == "POST /command-log/purge"
    assert len(remaining) == 2
    assert api.post("/command-log/purge", headers=AUTH, json={}).status_code == 422


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/command-log"), ("GET", "/command-log/export"), ("POST", "/command-log/purge")]
)
def test_a_tenant_key_cannot_read_or_purge_the_log(
    api: TestClient, services: Services, acme: dict[str, str], method: str, path: str
) -> None:
    answer = api.request(method, path, headers=acme, json={"threshold_ts": int(time.time()) + 10})
    assert answer.status_code == 403
    assert len(entries(services)) >= 2  # nothing purged


def test_a_failed_audit_write_is_logged_and_counted_and_the_call_succeeds(
    api: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch, captured_logs: Any
) -> None:
    def broken(entry: AuditEntry) -> None:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(services.audit, "record", broken)
    failures = AuditTrail.write_failures
    answer = api.post("/tenant", headers=AUTH, json={"id": "acme"})
    assert answer.status_code == 200 and services.tenants.get("acme") is not None
    assert AuditTrail.write_failures == failures + 1
    assert "audit write failed" in captured_logs.getvalue()


def test_entries_expire_by_ttl_after_the_retention(api: TestClient, services: Services) -> None:
    def audit_items() -> list[dict[str, Any]]:
        items = services.dynamodb.scan(TableName=services.settings.config_table)["Items"]
        return [item for item in items if item["pk"]["S"].startswith("AUDIT#")]

    api.post("/tenant", headers=AUTH, json={"id": "acme"})
    [item] = audit_items()
    assert int(item["expires_at"]["N"]) == int(item["ts"]["N"]) // 1000 + 90 * 86_400  # GMP_AUDIT_RETENTION_DAYS
    AuditLog(services.dynamodb, services.settings.config_table, retention_days=7).record(
        _entry(1_000_000, "acme", "/x")
    )
    [short] = [item for item in audit_items() if item["route"]["S"] == "/x"]
    assert int(short["expires_at"]["N"]) == 1_000 + 7 * 86_400


def _entry(ts_ms: int, tenant: str, route: str) -> AuditEntry:
    return AuditEntry(
        id=new_entry_id(ts_ms),
        ts=ts_ms,
        method="POST",
        route=route,
        endpoint=f"POST {route}",
        status=200,
        caller="admin",
        tenant_id=tenant,
    )
