"""Every route of the REST API, success and failure paths, against moto."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from mailproxy.dal.queues import QueueEntry
from mailproxy.services import Services
from tests.conftest import AUTH, ReportTriggers, account_payload, message_payload

ROUTES = [
    ("GET", "/status"),
    ("POST", "/account"),
    ("DELETE", "/account/x"),
    ("GET", "/accounts"),
    ("POST", "/commands/add-messages"),
    ("POST", "/commands/run-now"),
    ("GET", "/messages"),
    ("GET", "/metrics"),
]


def received(services: Services, url: str) -> list[QueueEntry]:
    messages = services.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [QueueEntry.parse(m["Body"]) for m in messages]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("token", [None, "wrong", "TEST-TOKEN-0123456789-ABCDEFGHIJKLMNOP", ""])
def test_every_route_refuses_a_missing_wrong_or_recased_token(
    api: TestClient, method: str, path: str, token: str | None
) -> None:
    headers = {} if token is None else {"X-API-Token": token}
    answer = api.request(method, path, headers=headers, json={})
    assert answer.status_code == 401
    assert answer.json() == {"ok": False, "error": "missing or wrong X-API-Token"}


def test_health_answers_without_token(api: TestClient) -> None:
    assert api.get("/health").json() == {"status": "ok"}


def test_status_reports_its_dependencies(api: TestClient) -> None:
    body = api.get("/status", headers=AUTH).json()
    assert body["ok"] is True
    assert body["dependencies"] == {"dynamodb": "ok", "sqs": "ok"}
    assert body["queues"] == {"urgent": 0, "bulk": 0}


def test_status_is_503_when_a_dependency_is_gone(api: TestClient, services: Services) -> None:
    services.dynamodb.delete_table(TableName=services.settings.messages_table)
    answer = api.get("/status", headers=AUTH)
    assert answer.status_code == 503
    assert answer.json()["dependencies"]["dynamodb"].startswith("unavailable")


def test_account_is_stored_with_its_password_encrypted_and_listed_masked(api: TestClient, services: Services) -> None:
    assert api.post("/account", headers=AUTH, json=account_payload(limit_per_minute=10)).json()["ok"] is True
    accounts = api.get("/accounts", headers=AUTH).json()
    assert accounts["ok"] is True
    [account] = accounts["accounts"]
    assert account["id"] == "smtp-main" and account["password"] == "***" and account["limit_per_minute"] == 10
    assert "app-specific-password" not in json.dumps(accounts)
    raw = services.dynamodb.scan(TableName=services.settings.config_table)["Items"]
    assert "app-specific-password" not in json.dumps(raw)
    stored = services.accounts.get("default", "smtp-main")
    assert stored is not None and services.accounts.password(stored) == "app-specific-password"


def test_account_without_password_lists_null(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload(user=None, password=None))
    assert api.get("/accounts", headers=AUTH).json()["accounts"][0]["password"] is None


def test_posting_an_account_again_replaces_it(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    api.post("/account", headers=AUTH, json=account_payload(port=587))
    [account] = api.get("/accounts", headers=AUTH).json()["accounts"]
    assert account["port"] == 587


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": "x"}, "port"),
        ({"host": "a b"}, "host"),
        ({"id": ""}, "id"),
        ({"timeout": -1}, "timeout"),
        ({"user": "a\r\nb"}, "user"),
        ({"limit_per_hour": 0}, "limit_per_hour"),
    ],
)
def test_bad_account_is_422_naming_the_field(api: TestClient, change: dict[str, object], field: str) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(**change))
    assert answer.status_code == 422
    assert field in answer.json()["error"]


def test_validation_error_never_echoes_the_password(api: TestClient) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(port="nope", password="hunter2-secret"))
    assert answer.status_code == 422
    assert "hunter2-secret" not in answer.text


def test_delete_account_then_404(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    assert api.delete("/account/smtp-main", headers=AUTH).json() == {"ok": True, "id": "smtp-main"}
    answer = api.delete("/account/smtp-main", headers=AUTH)
    assert answer.status_code == 404
    assert "smtp-main" in answer.json()["error"]
    assert api.get("/accounts", headers=AUTH).json()["accounts"] == []


def test_add_messages_queues_good_and_rejects_bad_ones_alone(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    answer = api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={
            "messages": [
                message_payload("good-1"),
                message_payload("bad-from", **{"from": "not an address"}),
                message_payload("good-2", to='a@example.com, "Doe, J" <j@example.com>'),
                message_payload("bad-account", account_id="nobody"),
                message_payload("bad-subject", subject="hi\r\nBcc: victim@example.com"),
                "not an object",
            ]
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is True and body["queued"] == 2
    reasons = {r["id"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {"bad-from", "bad-account", "bad-subject", None}
    assert reasons["bad-from"].startswith("from:")
    assert reasons["bad-account"].startswith("account_id:")
    assert "subject" in reasons["bad-subject"] and "header injection" in reasons["bad-subject"]
    assert reasons[None].startswith("messages.5")
    assert sorted(e.message_id for e in received(services, services.queues.bulk_url)) == ["good-1", "good-2"]


def test_a_known_id_is_not_queued_twice(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    first = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("same")]}).json()
    services.messages.claim("default", "same", now=int(time.time()), lease_seconds=60)  # taken: not replaceable
    again = api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={"messages": [message_payload("same", subject="changed"), message_payload("same")]},
    ).json()
    assert first["queued"] == 1
    assert again["queued"] == 0
    assert [r["reason"] for r in again["rejected"]] == [
        "id: appears twice in this request",
        "id: already known; not queued again",
    ]
    assert [e.message_id for e in received(services, services.queues.bulk_url)] == ["same"]
    content = services.messages.contents.get_many([("default", "same")])[("default", "same")]
    assert content["subject"] == "Hello"


def test_urgent_priorities_go_to_their_own_queue(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={
            "default_priority": "low",
            "messages": [
                message_payload("p0", priority=0),
                message_payload("p1", priority="high"),
                message_payload("p2", priority="medium"),
                message_payload("p3"),
            ],
        },
    )
    assert sorted(e.message_id for e in received(services, services.queues.urgent_url)) == ["p0", "p1"]
    bulk = {e.message_id: e.priority for e in received(services, services.queues.bulk_url)}
    assert bulk == {"p2": 2, "p3": 3}


def test_more_than_1000_messages_is_400_saying_so(api: TestClient) -> None:
    answer = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload(str(n)) for n in range(1001)]}
    )
    assert answer.status_code == 400
    assert "at most 1000" in answer.json()["error"]


@pytest.mark.parametrize("payload", [{}, {"messages": "x"}, [], {"messages": [1], "default_priority": "urgent"}])
def test_malformed_add_messages_request_is_422(api: TestClient, payload: object) -> None:
    answer = api.post("/commands/add-messages", headers=AUTH, json=payload)
    assert answer.status_code == 422
    assert answer.json()["ok"] is False


def test_non_json_body_is_422_not_500(api: TestClient) -> None:
    answer = api.post("/commands/add-messages", headers={**AUTH, "Content-Type": "application/json"}, content=b"{oops")
    assert answer.status_code == 422


def test_message_deferred_beyond_fifteen_minutes_waits_for_the_sweep(api: TestClient, services: Services) -> None:
    import time

    api.post("/account", headers=AUTH, json=account_payload())
    later = int(time.time()) + 3600
    body = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload("later", deferred_ts=later)]}
    ).json()
    assert body["queued"] == 1
    assert received(services, services.queues.bulk_url) == []
    stored = services.messages.get("default", "later")
    assert stored is not None and stored["not_before"] == later and stored["due_ts"] >= later


def test_list_messages_filters_and_pages(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    api.post("/account", headers=AUTH, json=account_payload(id="other"))
    messages = [message_payload(f"m{n}") for n in range(7)] + [message_payload("o1", account_id="other")]
    api.post("/commands/add-messages", headers=AUTH, json={"messages": messages})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, "account_id": "smtp-main", **({"cursor": cursor} if cursor else {})}
        page = api.get("/messages", headers=AUTH, params=params).json()
        assert len(page["messages"]) <= 3
        seen += [m["id"] for m in page["messages"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"m{n}" for n in range(7)]
    queued = api.get("/messages", headers=AUTH, params={"status": "queued"}).json()["messages"]
    assert {m["status"] for m in queued} == {"queued"} and len(queued) == 8
    assert api.get("/messages", headers=AUTH, params={"status": "sent"}).json()["messages"] == []


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"limit": 0}, {"limit": "x"}, {"cursor": "garbage!"}, {"tenant_id": "bad tenant"}]
)
def test_bad_message_query_is_4xx_naming_the_parameter(api: TestClient, params: dict[str, object]) -> None:
    answer = api.get("/messages", headers=AUTH, params=params)
    assert answer.status_code in (400, 422)
    assert next(iter(params)) in answer.json()["error"]


def test_run_now_sweeps_due_messages_and_triggers_a_report(
    api: TestClient, services: Services, report_triggers: ReportTriggers
) -> None:
    import time

    api.post("/account", headers=AUTH, json=account_payload())
    api.post(
        "/commands/add-messages",
        headers=AUTH,
        json={"messages": [message_payload("soon", deferred_ts=int(time.time()) + 3600)]},
    )
    assert api.post("/commands/run-now", headers=AUTH).json() == {"ok": True, "enqueued": 0, "throttled": False}
    assert report_triggers.count == 1
    # a second call within GMP_RUN_NOW_MIN_INTERVAL is throttled (docs/tenants.md; tests/reliability/
    # test_poison_reports.py); clear the throttle item so that this test sees the sweep again
    services.dynamodb.delete_item(
        TableName=services.settings.config_table, Key={"pk": {"S": "THROTTLE"}, "sk": {"S": "run-now"}}
    )
    services.dynamodb.update_item(  # its time has come
        TableName=services.settings.messages_table,
        Key={"pk": {"S": "MSG#default#soon"}, "sk": {"S": "STATUS"}},
        UpdateExpression="SET due_ts = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}},
    )
    assert api.post("/commands/run-now", headers=AUTH).json() == {"ok": True, "enqueued": 1, "throttled": False}
    assert [e.message_id for e in received(services, services.queues.bulk_url)] == ["soon"]


def test_metrics_are_prometheus_text_of_the_originals_series(api: TestClient) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("a"), message_payload("b")]})
    answer = api.get("/metrics", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    labels = 'tenant_id="default",tenant_name="default",account_id="smtp-main",account_name="smtp-main"'
    assert f"gmp_sent_total{{{labels}}} 0" in answer.text
    assert "# TYPE gmp_pending_messages gauge\ngmp_pending_messages 2\n" in answer.text


def test_openapi_is_served_at_docs(api: TestClient) -> None:
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert {
        "/account",
        "/accounts",
        "/commands/add-messages",
        "/commands/run-now",
        "/messages",
        "/status",
        "/metrics",
        "/health",
    } <= set(paths)
