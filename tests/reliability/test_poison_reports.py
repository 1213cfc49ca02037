"""The cases of docs/reliability.md, "Poison reports and tenants": no tenant can stall another's reports,
credentials are checked at the door and never leak, the report client is guarded like the attachment fetcher,
each tenant signs with its own secret, keys can be revoked, one reporter runs at a time, cleanup keeps what is
owed, and the local API refuses what the deployed one would. Real moto, real SMTP sinks, real HTTP report
receivers."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.app import MAX_REQUEST_BYTES, ApiContext, create_app
from functions.stream_reporter import handler as stream_handler
from mailproxy.config import ConfigError, load_settings
from mailproxy.dal.items import to_item
from mailproxy.dal.keys import STATUS_SK, message_pk, report_pk, report_shard, report_sk
from mailproxy.dal.tenants import API_KEY_PK, TENANT_PK, key_hash
from mailproxy.logic.http_guard import HttpPolicy
from mailproxy.logic.reports import Reporter, ReportTarget
from mailproxy.models import AccountIn, TenantIn
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy_client.reports import ReportRejected, parse_delivery_report
from tests.conftest import API_TOKEN, AUTH, ReportTriggers, make_settings, message_payload
from tests.http_servers import QuietHandler, serving
from tests.reliability.harness import World
from tests.report_server import ReportEndpoint, report_endpoint
from tests.smtp_servers import SinkFactory, free_port
from tests.streams import stream_poller

SYNC_PATH = "/mail-proxy/sync"


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def tenant_endpoint() -> Iterator[ReportEndpoint]:
    with report_endpoint(SYNC_PATH) as endpoint:
        yield endpoint


@pytest.fixture
def other_endpoint() -> Iterator[ReportEndpoint]:
    with report_endpoint(SYNC_PATH) as endpoint:
        yield endpoint


@pytest.fixture
def api(services: Services, report_triggers: ReportTriggers) -> TestClient:
    app = create_app(ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=report_triggers))
    return TestClient(app, raise_server_exceptions=False)


def base_of(endpoint: ReportEndpoint) -> str:
    return endpoint.url.removesuffix(SYNC_PATH)


def add_tenant(services: Services, tenant_id: str, endpoint: ReportEndpoint | None = None, **extra: Any) -> None:
    data: dict[str, Any] = {"id": tenant_id, **extra}
    if endpoint is not None:
        data["client_base_url"] = base_of(endpoint)
    services.tenants.put(TenantIn.model_validate(data))


def seed_pending(services: Services, tenant_id: str, count: int, *, prefix: str = "old") -> list[str]:
    """`count` sent outcomes in the tenant's outbox, in the shape `MessageStore.record` leaves them."""
    now = int(time.time()) - 3600
    ids = [f"{prefix}{n}" for n in range(count)]
    items = [
        to_item(
            {
                "pk": message_pk(tenant_id, message_id),
                "sk": STATUS_SK,
                "id": message_id,
                "tenant_id": tenant_id,
                "account_id": "smtp-main",
                "priority": 2,
                "status": "sent",
                "created_ts": now,
                "sent_ts": now,
                "claims": 1,
                "attempts": 1,
                "rpt_pk": report_pk(tenant_id, report_shard(tenant_id, message_id)),
                "rpt_sk": report_sk(now * 1000 + n, tenant_id, message_id),
                "rpt_seq": 1,
            }
        )
        for n, message_id in enumerate(ids)
    ]
    for start in range(0, len(items), 25):
        services.dynamodb.batch_write_item(
            RequestItems={
                services.settings.messages_table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            }
        )
    return ids


def send_through_smtp(
    world: World, sink_factory: SinkFactory, tenant_id: str, count: int, prefix: str = "m"
) -> list[str]:
    sink = sink_factory("plain")
    world.sinks.append(sink)
    world.services.accounts.put(AccountIn(id="smtp-main", tenant_id=tenant_id, **sink.account()))
    ids = [f"{tenant_id}-{prefix}{n}" for n in range(count)]
    world.submit(*[message_payload(i, tenant_id=tenant_id) for i in ids])
    world.drain()
    assert {world.services.messages.get(tenant_id, i)["status"] for i in ids} == {"sent"}  # type: ignore[index]
    world.stream_to_outbox()  # the scheduled reporter's cases: the stream could not deliver them
    return ids


def reported_ids(endpoint: ReportEndpoint) -> Counter[str]:
    return Counter(i["id"] for i in endpoint.items())


class MetricLog:
    """Every metric the code under test adds (the handler flushes the Powertools set, so it is recorded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.values: dict[str, list[float]] = {}
        original = metrics.add_metric

        def record(name: str, unit: Any, value: float, **kwargs: Any) -> None:
            self.values.setdefault(name, []).append(float(value))
            original(name=name, unit=unit, value=value, **kwargs)

        monkeypatch.setattr(metrics, "add_metric", record)

    def total(self, name: str) -> float:
        return sum(self.values.get(name, []))


@pytest.fixture
def metric_log(monkeypatch: pytest.MonkeyPatch) -> MetricLog:
    return MetricLog(monkeypatch)


# --------------------------------------------------------------------------------------------- 1. isolation


@pytest.mark.parametrize("fault", ["503", "refused", "hanging", "no target"])
def test_failing_tenant_endpoint_does_not_delay_other_tenants_reports(
    world: World,
    smtp_sink_factory: SinkFactory,
    tenant_endpoint: ReportEndpoint,
    other_endpoint: ReportEndpoint,
    metric_log: MetricLog,
    fault: str,
) -> None:
    services = world.services
    no_target = fault == "no target"
    # "no target": acme has no endpoint of its own and the deployment none either (no GMP_CLIENT_SYNC_URL)
    add_tenant(services, "acme", None if no_target else tenant_endpoint)
    add_tenant(services, "beta", other_endpoint)
    backlog = seed_pending(services, "acme", 150)  # more than a read (100) and than a batch (50)
    healthy = send_through_smtp(world, smtp_sink_factory, "beta", 5)
    if fault == "503":
        tenant_endpoint.default_status = 503
    elif fault == "hanging":
        tenant_endpoint.hang_seconds = 3.0  # past GMP_CLIENT_SYNC_TIMEOUT (2 s)
        tenant_endpoint.statuses = [503]  # what the hung request finally gets (the proxy is gone by then)
    elif fault == "refused":
        set_base_url(services, "acme", f"http://127.0.0.1:{free_port()}")

    started = time.monotonic()
    answer = run_without_deployment_url(world) if no_target else world.report()
    # beta's messages are reported in the same run, whatever acme's state
    assert reported_ids(other_endpoint) == Counter(healthy)
    assert all(i["tenant_id"] == "beta" for i in other_endpoint.items())
    assert time.monotonic() - started < 6
    assert len(services.outbox.pending(500, "acme")) == 150
    if not no_target:
        assert answer["failures"] == 1
        assert metric_log.total("ReportTenantFailures") == 1
        assert len(tenant_endpoint.received) <= 1  # one try per failing run
    assert max(metric_log.values["OldestPendingReportAge"]) >= 3000  # acme's backlog is an hour old

    # acme's endpoint is back: its backlog arrives, each once, oldest first
    if fault == "hanging":  # the hung request ends first (answered 503: the proxy had given up on it)
        assert tenant_endpoint.wait_for(lambda e: len(e.received) == 1)
    tenant_endpoint.default_status = 200
    tenant_endpoint.hang_seconds = 0
    if fault == "refused":
        set_base_url(services, "acme", base_of(tenant_endpoint))
    if no_target:
        add_tenant(services, "acme", tenant_endpoint)
    for _ in range(3):
        world.report()
        if not services.outbox.pending(1, "acme"):
            break
    # Reports are at least once: under load a post that outlives the client timeout is posted again.
    assert set(reported_ids(tenant_endpoint)) == set(backlog)
    first = [i["id"] for i in tenant_endpoint.items()][:50]
    assert first == backlog[:50]  # oldest first within the tenant
    assert services.outbox.pending(10) == []


def set_base_url(services: Services, tenant_id: str, url: str) -> None:
    services.dynamodb.update_item(
        TableName=services.settings.config_table,
        Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
        UpdateExpression="SET client_base_url = :u",
        ExpressionAttributeValues={":u": {"S": url}},
    )


def run_without_deployment_url(world: World) -> dict[str, Any]:
    reporter = Reporter(world.services, _targets_without_deployment(world.services), logger=logger, metrics=metrics)
    run = reporter.run(budget_seconds=10, batch_size=50)
    return {"ok": True, **run.__dict__}


def _targets_without_deployment(services: Services) -> Callable[[str], ReportTarget | None]:
    from mailproxy.logic.reports import tenant_target

    return lambda tenant_id: tenant_target(services, tenant_id, None)


def test_a_tenant_whose_outbox_reads_or_marks_fail_does_not_stop_the_others(
    world: World,
    smtp_sink_factory: SinkFactory,
    tenant_endpoint: ReportEndpoint,
    other_endpoint: ReportEndpoint,
    metric_log: MetricLog,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: io.StringIO,
) -> None:
    add_tenant(world.services, "acme", tenant_endpoint)
    add_tenant(world.services, "beta", other_endpoint)
    seed_pending(world.services, "acme", 3)
    healthy = send_through_smtp(world, smtp_sink_factory, "beta", 3)
    store = type(world.services.outbox)
    original = store.mark_reported

    def failing_for_acme(self: Any, item: dict[str, Any], now: int) -> bool:
        if item["tenant_id"] == "acme":
            raise KeyError("simulated failure after the POST")
        return original(self, item, now)

    monkeypatch.setattr(store, "mark_reported", failing_for_acme)
    answer = world.report()
    assert reported_ids(other_endpoint) == Counter(healthy)
    assert answer["failures"] == 1 and metric_log.total("ReportTenantFailures") == 1
    line = next(
        json.loads(x) for x in captured_logs.getvalue().splitlines() if '"tenant_id": "acme"' in x or "acme" in x
    )
    assert line["tenant_id"] == "acme" and line["exception"] == "KeyError"
    monkeypatch.setattr(store, "mark_reported", original)
    world.report()
    assert world.services.outbox.pending(10) == []  # acme's reports went out again (at least once)


# --------------------------------------------------------------------------------------------- 2. credentials


@pytest.mark.parametrize(
    "bad_token",
    ["tok-SECRET-4242\r\nX-Injected: 1", "tok-SECRET-4242-\u00e9\u20ac", "tok-SECRET-4242\u2028"],
    ids=["crlf", "non-latin-1", "unicode-line-separator"],
)
def test_a_stored_bad_token_does_not_abort_the_run_nor_reach_the_logs(
    world: World,
    smtp_sink_factory: SinkFactory,
    tenant_endpoint: ReportEndpoint,
    other_endpoint: ReportEndpoint,
    captured_logs: io.StringIO,
    metric_log: MetricLog,
    bad_token: str,
) -> None:
    services = world.services
    add_tenant(services, "acme", tenant_endpoint)
    add_tenant(services, "beta", other_endpoint)
    # Written straight to the table, as an item from before the API validated tokens would be.
    from mailproxy.dal.tenants import _secret_context

    encrypted = services.tenants._secrets().encrypt(bad_token, _secret_context("acme", "token"))
    services.dynamodb.update_item(
        TableName=services.settings.config_table,
        Key={"pk": {"S": TENANT_PK}, "sk": {"S": "acme"}},
        UpdateExpression="SET client_auth = :a",
        ExpressionAttributeValues={":a": to_item({"a": {"method": "bearer", "token_enc": encrypted}})["a"]},
    )
    seed_pending(services, "acme", 2)
    healthy = send_through_smtp(world, smtp_sink_factory, "beta", 2)
    default_ids = send_through_smtp(world, smtp_sink_factory, "default", 2)
    answer = world.report()
    assert answer["ok"] and answer["failures"] == 1
    assert reported_ids(other_endpoint) == Counter(healthy)
    assert reported_ids(world.endpoint) == Counter(default_ids)
    assert tenant_endpoint.received == []  # nothing was sent with the broken header
    assert metric_log.total("ReportTenantFailures") == 1
    logs = captured_logs.getvalue()
    assert "SECRET-4242" not in logs and "tok-" not in logs
    assert "token" in answer["stopped"] and "SECRET" not in answer["stopped"]
    assert len(services.outbox.pending(10, "acme")) == 2


def test_an_undecryptable_stored_secret_fails_only_its_tenant(
    world: World,
    smtp_sink_factory: SinkFactory,
    tenant_endpoint: ReportEndpoint,
    captured_logs: io.StringIO,
) -> None:
    add_tenant(world.services, "acme", tenant_endpoint, client_auth={"method": "bearer", "token": "t-ok"})
    world.services.dynamodb.update_item(
        TableName=world.services.settings.config_table,
        Key={"pk": {"S": TENANT_PK}, "sk": {"S": "acme"}},
        UpdateExpression="SET client_auth.token_enc = :t",
        ExpressionAttributeValues={":t": {"S": "fernet:not-a-token"}},
    )
    seed_pending(world.services, "acme", 2)
    default_ids = send_through_smtp(world, smtp_sink_factory, "default", 2)
    answer = world.report()
    assert answer["failures"] == 1 and reported_ids(world.endpoint) == Counter(default_ids)
    lines = [json.loads(x) for x in captured_logs.getvalue().splitlines() if x.startswith("{")]
    assert [x["exception"] for x in lines if x.get("exception")] == ["DecryptionError"]


@pytest.mark.parametrize("field", ["token", "user", "password"])
@pytest.mark.parametrize("value", ["a\nb", "a\r\nb", "caf\u00e9", "a\x00b", "a\u2028b"])
def test_credentials_with_line_breaks_or_non_ascii_are_refused_at_the_door_naming_the_field(
    api: TestClient, field: str, value: str
) -> None:
    auth = (
        {"method": "bearer", "token": "ok"} if field == "token" else {"method": "basic", "user": "u", "password": "p"}
    )
    auth[field] = value
    answer = api.post("/tenant", headers=AUTH, json={"id": "acme", "client_auth": auth})
    assert answer.status_code == 422
    assert f"client_auth.{field}" in answer.json()["error"]
    assert value not in answer.text
    attachment = {"filename": "a.pdf", "storage_path": "https://files.example.com/a.pdf", "auth": dict(auth)}
    answer = api.post(
        "/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1", attachments=[attachment])]}
    )
    assert answer.status_code == 200
    [rejected] = answer.json()["rejected"]
    assert f"attachments.0.auth.{field}" in rejected["reason"]


def test_a_bad_sync_token_in_the_environment_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GMP_CLIENT_SYNC_TOKEN", "sync-SECRET\r\nX: 1")
    with pytest.raises(ConfigError, match="GMP_CLIENT_SYNC_TOKEN") as raised:
        load_settings()
    assert "SECRET" not in str(raised.value)


# --------------------------------------------------------------------------------------------- 3. the guard


@contextmanager
def redirecting_receiver(location: str, status: int = 307) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Redirect(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Redirect) as base:
        yield base, seen


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirecting_report_receiver_is_not_followed_and_its_target_receives_nothing(
    world: World, smtp_sink_factory: SinkFactory, tenant_endpoint: ReportEndpoint, status: int
) -> None:
    with redirecting_receiver(tenant_endpoint.url, status) as (base, seen):
        add_tenant(world.services, "acme", client_base_url=base, client_auth={"method": "bearer", "token": "tok-1"})
        ids = send_through_smtp(world, smtp_sink_factory, "acme", 2)
        answer = world.report()
        assert len(seen) == 1 and seen[0]["authorization"] == "Bearer tok-1"
    assert tenant_endpoint.received == []  # neither the POST nor a GET with the Authorization went there
    assert answer["posted"] == 0 and answer["failures"] == 1
    assert f"HTTP {status}" in answer["stopped"] and "not followed" in answer["stopped"]
    assert {i["id"] for i in world.services.outbox.pending(10, "acme")} == set(ids)


def test_http_report_url_is_refused_in_aws_mode(aws: Any, endpoint: ReportEndpoint, metric_log: MetricLog) -> None:
    settings = make_settings(aws, mode="aws", client_sync_url=endpoint.url, report_batch_size=50)
    services = Services.create(settings)
    seed_pending(services, "default", 3)
    target = ReportTarget(endpoint.url, trusted_host=True)
    run = Reporter(services, lambda tenant: target, logger=logger, metrics=metrics).run(budget_seconds=5, batch_size=50)
    assert run.posted == 0 and run.failures == 1
    assert "https" in run.stopped and "aws mode" in run.stopped
    assert endpoint.received == []
    # an https URL that resolves to loopback is refused too (an address the guard vets at connect time)
    loopback = ReportTarget("https://127.0.0.1:1/sync")
    run = Reporter(services, lambda tenant: loopback, logger=logger, metrics=metrics).run(
        budget_seconds=5, batch_size=50
    )
    assert run.failures == 1 and "loopback" in run.stopped
    assert len(services.outbox.pending(10)) == 3


@contextmanager
def https_receiver(context: Any) -> Iterator[tuple[int, list[dict[str, str]]]]:
    from http.server import ThreadingHTTPServer

    seen: list[dict[str, str]] = []

    class Receiver(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_report_endpoint_is_reached_in_aws_mode_with_its_certificate_verified(
    aws: Any, smtp_certs: Any, trust_smtp_certs: Any
) -> None:
    services = Services.create(make_settings(aws, mode="aws"))
    seed_pending(services, "default", 3)
    with https_receiver(smtp_certs.server_context()) as (port, seen):
        target = ReportTarget(f"https://localhost:{port}/sync", token="tok-https", trusted_host=True)
        run = Reporter(services, lambda tenant: target, logger=logger, metrics=metrics).run(
            budget_seconds=10, batch_size=50
        )
        assert run.posted == 3 and run.failures == 0
        assert seen[0]["authorization"] == "Bearer tok-https"
        # the same endpoint without the operator's trust is a loopback address: refused in aws mode
        seed_pending(services, "default", 1, prefix="next")
        untrusted = ReportTarget(f"https://localhost:{port}/sync")
        run = Reporter(services, lambda tenant: untrusted, logger=logger, metrics=metrics).run(
            budget_seconds=10, batch_size=50
        )
        assert run.failures == 1 and "loopback" in run.stopped and len(seen) == 1


def test_the_report_client_resolves_once_and_connects_to_the_vetted_address(endpoint: ReportEndpoint) -> None:
    """DNS rebinding: the name is resolved once, checked, and the connection goes to that address."""
    port = int(endpoint.url.split(":")[2].split("/")[0])
    answers = iter(["127.0.0.1", "169.254.169.254"])  # the second answer would be the metadata service
    calls: list[str] = []

    def resolver(host: str, port_: Any, **_: Any) -> list[tuple[Any, ...]]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port_))]

    policy = HttpPolicy(mode="local", resolve=resolver)
    answer = policy.request(
        "POST", f"http://reports.example.test:{port}/email/mailproxy/mp_endpoint/proxy_sync",
        headers={"Content-Type": "application/json"}, body=b'{"delivery_report":[]}', timeout=5,
    )  # fmt: skip
    assert answer.ok and calls == ["reports.example.test"]
    assert endpoint.received[0].headers["host"].startswith("reports.example.test")
    with pytest.raises(ValueError, match="link-local"):
        policy.request("POST", "http://reports.example.test/", body=b"{}", timeout=5)


# --------------------------------------------------------------------------------------------- 4. signing


def test_each_tenant_signs_with_its_own_secret_and_cannot_forge_anothers_reports(
    world: World,
    api: TestClient,
    smtp_sink_factory: SinkFactory,
    tenant_endpoint: ReportEndpoint,
    other_endpoint: ReportEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GMP_CLIENT_SYNC_SECRET", "deployment-signing-secret")
    from mailproxy.config import settings as cached_settings

    cached_settings.cache_clear()
    for tenant_id, endpoint in (("acme", tenant_endpoint), ("beta", other_endpoint)):
        assert api.post(
            "/tenant", headers=AUTH, json={"id": tenant_id, "client_base_url": base_of(endpoint)}
        ).is_success
    secret_a = api.post("/tenant/acme/signing-secret", headers=AUTH).json()["signing_secret"]
    beta_key = api.post("/tenant/beta/api-key", headers=AUTH).json()["api_key"]
    answer = api.post("/tenant/beta/signing-secret", headers={"X-API-Token": beta_key})  # a tenant's own key may
    secret_b = answer.json()["signing_secret"]
    assert answer.status_code == 200 and secret_a != secret_b
    assert api.post("/tenant/acme/signing-secret", headers={"X-API-Token": beta_key}).status_code == 403
    send_through_smtp(world, smtp_sink_factory, "acme", 1)
    send_through_smtp(world, smtp_sink_factory, "default", 1)
    world.report()
    [request] = tenant_endpoint.acknowledged
    [report] = parse_delivery_report(request.raw, request.headers, signing_secret=secret_a)
    assert report.tenant_id == "acme"
    for other in (secret_b, "deployment-signing-secret"):  # beta's secret, the deployment's: neither verifies
        with pytest.raises(ReportRejected, match="does not match"):
            parse_delivery_report(request.raw, request.headers, signing_secret=other)
    # the deployment endpoint (tenants without their own) keeps the deployment's secret
    [deployment_request] = world.endpoint.acknowledged
    parse_delivery_report(
        deployment_request.raw, deployment_request.headers, signing_secret="deployment-signing-secret"
    )

    # rotation: a new secret, reports signed with it; the old one no longer verifies
    rotated = api.post("/tenant/acme/signing-secret", headers=AUTH).json()["signing_secret"]
    assert rotated != secret_a
    send_through_smtp(world, smtp_sink_factory, "acme", 2, prefix="r")
    world.report()
    latest = tenant_endpoint.acknowledged[-1]
    parse_delivery_report(latest.raw, latest.headers, signing_secret=rotated)
    with pytest.raises(ReportRejected):
        parse_delivery_report(latest.raw, latest.headers, signing_secret=secret_a)

    # never shown again, nor stored in plain text
    for path in ("/tenant/acme", "/tenants"):
        text = api.get(path, headers=AUTH).text
        assert rotated not in text and secret_a not in text
    assert api.get("/tenant/acme", headers=AUTH).json()["tenant"]["has_signing_secret"] is True
    raw = world.services.dynamodb.scan(TableName=world.services.settings.config_table)
    assert rotated not in json.dumps(raw)

    # deleting it: reports to acme go unsigned, never with the deployment's secret
    assert api.delete("/tenant/acme/signing-secret", headers=AUTH).status_code == 200
    assert api.delete("/tenant/acme/signing-secret", headers=AUTH).status_code == 404
    send_through_smtp(world, smtp_sink_factory, "acme", 3, prefix="u")
    world.report()
    assert "x-gmp-signature" not in tenant_endpoint.acknowledged[-1].headers


# --------------------------------------------------------------------------------------------- 5. keys


@pytest.fixture(scope="module")
def served_moto() -> Iterator[str]:
    """A moto server handling one request at a time, as the local stack runs it: moto in process is not
    safe for concurrent transactions from threads, and DynamoDB applies each write atomically."""
    from mailproxy_local.runner import moto_server

    with moto_server(serialize=True) as url:
        yield url


@pytest.fixture
def served_api(served_moto: str, monkeypatch: pytest.MonkeyPatch, report_triggers: ReportTriggers) -> TestClient:
    import boto3
    import requests

    from mailproxy.dal.schema import create_resources

    requests.post(f"{served_moto}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", served_moto)
    services = Services.create(make_settings(create_resources(boto3.session.Session())))
    app = create_app(ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=report_triggers))
    client = TestClient(app, raise_server_exceptions=False)
    client.app_state_services = services  # type: ignore[attr-defined]
    return client


def works(api: TestClient, key: str) -> bool:
    return api.get("/tenant/acme", headers={"X-API-Token": key}).status_code == 200


def test_two_concurrent_key_rotations_leave_exactly_one_working_key(served_api: TestClient) -> None:
    api, services = served_api, served_api.app_state_services  # type: ignore[attr-defined]
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).is_success
    barrier = threading.Barrier(2)

    def rotate() -> str:
        barrier.wait()
        answer = api.post("/tenant/acme/api-key", headers=AUTH)
        assert answer.status_code == 200
        return str(answer.json()["api_key"])

    for _ in range(5):
        with ThreadPoolExecutor(max_workers=2) as pool:
            keys = list(pool.map(lambda _: rotate(), range(2)))
        assert sum(works(api, key) for key in keys) == 1
        lookups = services.dynamodb.query(
            TableName=services.settings.config_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": API_KEY_PK}},
        )["Items"]
        assert len(lookups) == 1  # no lookup item left behind by the race


def test_a_put_tenant_racing_a_rotation_never_resurrects_a_revoked_key(served_api: TestClient) -> None:
    api = served_api
    assert api.post("/tenant", headers=AUTH, json={"id": "acme", "name": "Acme"}).is_success
    first = api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]
    stop = threading.Event()

    def keep_updating() -> int:
        count = 0
        while not stop.is_set():
            body = {"id": "acme", "name": f"Acme {count}", "client_sync_path": "/sync"}
            assert api.put("/tenant/acme", headers=AUTH, json=body).status_code == 200
            count += 1
        return count

    with ThreadPoolExecutor(max_workers=1) as pool:
        updates = pool.submit(keep_updating)
        keys = [first]
        for _ in range(5):
            keys.append(api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"])
        assert api.delete("/tenant/acme/api-key", headers=AUTH).status_code == 200
        time.sleep(0.2)
        stop.set()
        assert updates.result() > 0
    assert not any(works(api, key) for key in keys)
    tenant = api.get("/tenant/acme", headers=AUTH).json()["tenant"]
    assert tenant["has_api_key"] is False and tenant["client_sync_path"] == "/sync"


def test_a_stale_api_key_item_whose_hash_is_not_current_is_refused(api: TestClient, services: Services) -> None:
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).is_success
    current = api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]
    stale = "gmpk_" + "s" * 43
    services.dynamodb.put_item(  # a lookup item left behind by an interrupted rotation
        TableName=services.settings.config_table,
        Item={"pk": {"S": API_KEY_PK}, "sk": {"S": key_hash(stale)}, "tenant_id": {"S": "acme"}},
    )
    assert api.get("/tenant/acme", headers={"X-API-Token": stale}).status_code == 401
    assert works(api, current)
    # PUT keeps the current key: it is one UpdateItem that leaves the hash alone
    assert api.put("/tenant/acme", headers=AUTH, json={"id": "acme", "name": "renamed"}).status_code == 200
    assert works(api, current)


def test_an_update_racing_the_tenants_deletion_does_not_recreate_it(api: TestClient, services: Services) -> None:
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).is_success
    key = api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]
    assert api.delete("/tenant/acme", headers=AUTH).status_code == 200
    # the update that had read the tenant just before the deletion: conditional on its existence
    assert services.tenants.put(TenantIn(id="acme", name="late"), must_exist=True) is False
    assert services.tenants.get("acme") is None
    assert api.get("/tenant/acme", headers={"X-API-Token": key}).status_code == 401


# --------------------------------------------------------------------------------------------- 6. one reporter


def test_concurrent_reporter_runs_post_each_report_once(world: World, smtp_sink_factory: SinkFactory) -> None:
    ids = send_through_smtp(world, smtp_sink_factory, "default", 30)
    world.endpoint.hang_seconds = 0.3  # each POST takes a while: the runs would overlap without the lock
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: world.report(), range(4)))
    assert reported_ids(world.endpoint) == Counter(ids)  # each once
    assert len(world.endpoint.received) == 1  # one batch of 30 (batch size 50): no run posted beside another
    assert sum(1 for a in answers if a.get("coalesced")) >= 1
    assert world.services.outbox.pending(10) == []


def test_a_trigger_during_a_run_makes_one_more_run_after_it(world: World, smtp_sink_factory: SinkFactory) -> None:
    send_through_smtp(world, smtp_sink_factory, "default", 1)
    world.endpoint.hang_seconds = 1.0
    runs: list[float] = []
    from functions.reporter import handler as reporter_handler

    original = reporter_handler._run_once

    def timed(*args: Any) -> dict[str, Any]:
        runs.append(time.monotonic())
        return original(*args)

    reporter_handler._run_once = timed  # type: ignore[assignment]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            first = pool.submit(world.report)
            time.sleep(0.3)
            later = [pool.submit(world.report) for _ in range(3)]
            [f.result() for f in [first, *later]]
    finally:
        reporter_handler._run_once = original  # type: ignore[assignment]
    assert len(runs) == 2  # the first run, and one more for the three triggers that came during it


def test_twenty_run_now_calls_in_a_row_trigger_the_reporter_once(
    aws: Any, endpoint: ReportEndpoint, report_triggers: ReportTriggers
) -> None:
    # 3 s: the twenty calls (each also writes its audit entry) must fit in one interval on a loaded machine
    settings = make_settings(aws, client_sync_url=endpoint.url, run_now_min_interval=3.0)
    services = Services.create(settings)
    app = create_app(ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=report_triggers))
    api = TestClient(app)
    answers = [api.post("/commands/run-now", headers=AUTH) for _ in range(20)]
    assert all(a.status_code == 200 and a.json()["ok"] for a in answers)
    assert report_triggers.count == 1
    assert sum(a.json()["throttled"] for a in answers) == 19
    # a second API instance (another Lambda) shares the throttle: it is a conditional write in the table
    other = TestClient(create_app(ApiContext(lambda: Services.create(settings), lambda: API_TOKEN, report_triggers)))
    assert other.post("/commands/run-now", headers=AUTH).json()["throttled"] is True
    time.sleep(3.1)
    assert api.post("/commands/run-now", headers=AUTH).json()["throttled"] is False
    assert report_triggers.count == 2


# --------------------------------------------------------------------------------------------- 7. cleanup


def test_a_message_deferred_and_reported_then_sent_while_the_client_is_down_survives_cleanup(
    world: World, smtp_sink_factory: SinkFactory, api: TestClient
) -> None:
    stream = stream_poller(world.services, stream_handler.handler)
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.3.0 try later", times=1)
    world.sinks.append(sink)
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.submit(message_payload("m1"))
    world.drain()
    assert world.status("m1")["status"] == "deferred"
    stream.drain()  # the deferral is reported through the stream and acknowledged: nothing is written
    assert [i["id"] for i in world.endpoint.items() if i["deferred_ts"]] == ["m1"]
    world.endpoint.default_status = 503  # the client goes down
    world.clock.advance(120)
    world.report()  # the sweep brings the message back
    world.drain()
    assert world.status("m1")["status"] == "sent"
    cleanup = {"older_than_seconds": 0}
    # the final report is on the stream, not yet posted: not acknowledged, though the deferral was
    assert api.post("/commands/cleanup-messages", headers=AUTH, json=cleanup).json()["removed"] == 0
    stream.drain()  # the final report fails: into the outbox
    assert world.status("m1").get("rpt_pk")
    assert api.post("/commands/cleanup-messages", headers=AUTH, json=cleanup).json()["removed"] == 0
    assert world.status("m1")["status"] == "sent"
    world.endpoint.default_status = 200  # back: the final report is delivered
    world.report()
    finals = [i for i in world.endpoint.items() if i["id"] == "m1" and i["sent_ts"]]
    assert len(finals) == 1
    assert api.post("/commands/cleanup-messages", headers=AUTH, json=cleanup).json()["removed"] == 1
    assert world.services.messages.get("default", "m1") is None


# --------------------------------------------------------------------------------------------- 8. body limit


def test_a_request_body_over_6_mb_is_a_413_that_points_to_attachments_by_reference(api: TestClient) -> None:
    big = {"messages": [message_payload("m1", body="x" * (MAX_REQUEST_BYTES + 10))]}
    answer = api.post("/commands/add-messages", headers=AUTH, json=big)
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert "API Gateway" in error and "Lambda" in error and "storage_path" in error
    # streamed without a Content-Length (chunked): counted as it arrives
    payload = json.dumps(big).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 1 << 20):
            yield payload[start : start + (1 << 20)]

    answer = api.post("/commands/add-messages", headers={**AUTH, "Content-Type": "application/json"}, content=chunks())
    assert answer.status_code == 413 and "storage_path" in answer.json()["error"]
    # just under the limit is still handled (and refused by the field caps, not by size)
    under = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m2")]})
    assert under.status_code == 200


@pytest.fixture
def uvicorn_api(services: Services, report_triggers: ReportTriggers) -> Iterator[tuple[str, int]]:
    import uvicorn

    app = create_app(ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=report_triggers))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=5)


def test_the_local_server_refuses_a_body_over_6_mb_like_the_deployed_stack(uvicorn_api: tuple[str, int]) -> None:
    host, port = uvicorn_api
    connection = http.client.HTTPConnection(host, port, timeout=10)  # announced: refused before the body
    connection.putrequest("POST", "/commands/add-messages")
    connection.putheader("X-API-Token", API_TOKEN)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413 and "storage_path" in json.loads(answer.read())["error"]
    connection.close()
    connection = http.client.HTTPConnection(host, port, timeout=20)  # chunked: refused once past the limit
    connection.putrequest("POST", "/commands/add-messages")
    connection.putheader("X-API-Token", API_TOKEN)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(7):
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close as soon as it answered
    answer = connection.getresponse()
    assert answer.status == 413 and "API Gateway" in json.loads(answer.read())["error"]
    connection.close()
