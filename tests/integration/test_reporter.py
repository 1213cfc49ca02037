"""The reporter against a real HTTP endpoint: payload, auth, retries, bounds, volume, waiting for a URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.reporter import handler as reporter_handler
from mailproxy.config import Settings
from mailproxy.config import settings as cached_settings
from mailproxy.dal.items import to_item
from mailproxy.dal.keys import STATUS_SK, message_pk, report_pk, report_shard, report_sk
from mailproxy.dal.messages import NewMessage, Outcome
from mailproxy.logic.reports import Reporter, ReportTarget
from mailproxy.models import MessageStatus
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from tests.report_server import ReportEndpoint, report_endpoint
from tests.streams import drain_to_outbox

SEED_FIELDS = {"id", "account_id", "priority", "sent_ts", "error_ts", "error", "deferred_ts"}
ENTRY_FIELDS = SEED_FIELDS | {"tenant_id"}  # every entry names its tenant (docs/tenants.md)


@pytest.fixture
def client() -> Iterator[ReportEndpoint]:
    with report_endpoint() as endpoint:
        yield endpoint


def seed_outcomes(
    services: Services,
    count: int,
    status: MessageStatus = MessageStatus.SENT,
    prefix: str = "m",
    tenant_id: str = "default",
) -> None:
    """`record_outcomes`, then into the outbox through the stream reporter, as when their client could not
    be reached (the scheduled reporter's starting point)."""
    record_outcomes(services, count, status, prefix, tenant_id)
    drain_to_outbox(services)


def record_outcomes(
    services: Services,
    count: int,
    status: MessageStatus = MessageStatus.SENT,
    prefix: str = "m",
    tenant_id: str = "default",
) -> None:
    """Messages taken through ingestion, claim and outcome, as the API and the sender would."""
    now = int(time.time())
    new = [
        NewMessage(tenant_id, f"{prefix}{n}", "smtp-main", n % 4, now * 1000, None, None, f"<{n}@example.com>", {})
        for n in range(count)
    ]
    services.messages.put_batch(new, now=now, enqueue_grace=900)

    def finish(message: NewMessage) -> None:
        claimed = services.messages.claim(tenant_id, message.id, now=now, lease_seconds=60)
        assert claimed is not None
        outcome = {
            MessageStatus.SENT: Outcome(MessageStatus.SENT, now),
            MessageStatus.ERROR: Outcome(MessageStatus.ERROR, now, error="550 no such user"),
            MessageStatus.DEFERRED: Outcome(MessageStatus.DEFERRED, now, not_before=now + 600, reason="451 later"),
        }[status]
        assert services.messages.record(claimed, outcome)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(finish, new))


def seed_sent_in_bulk(services: Services, count: int) -> None:
    """Many sent outcomes written straight in the shape `MessageStore.record` leaves them (fast to set up)."""
    now = int(time.time())
    items = []
    for n in range(count):
        message_id = f"m{n}"
        items.append(
            to_item(
                {
                    "pk": message_pk("default", message_id),
                    "sk": STATUS_SK,
                    "id": message_id,
                    "tenant_id": "default",
                    "account_id": "smtp-main",
                    "priority": 2,
                    "status": "sent",
                    "created_ts": now,
                    "sent_ts": now,
                    "claims": 1,
                    "attempts": 1,
                    "rpt_pk": report_pk("default", report_shard("default", message_id)),
                    "rpt_sk": report_sk(now * 1000 + n, "default", message_id),
                    "rpt_seq": 1,
                }
            )
        )
    for start in range(0, count, 25):
        services.dynamodb.batch_write_item(
            RequestItems={
                services.settings.messages_table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            }
        )


def run(services: Services, target: ReportTarget | None, *, budget: float = 30.0, batch_size: int = 100) -> object:
    reporter = Reporter(services, lambda tenant: target, logger=logger, metrics=metrics)
    return reporter.run(budget_seconds=budget, batch_size=batch_size)


def test_reports_carry_the_seed_payload_and_bearer_auth(services: Services, client: ReportEndpoint) -> None:
    seed_outcomes(services, 1, MessageStatus.SENT, prefix="sent")
    seed_outcomes(services, 1, MessageStatus.ERROR, prefix="err")
    seed_outcomes(services, 1, MessageStatus.DEFERRED, prefix="later")
    run(services, ReportTarget(client.url, token="sync-token"))
    [request] = client.acknowledged
    assert request.path == "/email/mailproxy/mp_endpoint/proxy_sync"
    assert request.headers["authorization"] == "Bearer sync-token"
    assert request.headers["content-type"] == "application/json"
    items = {i["id"]: i for i in request.items}
    assert set(items["sent0"]) == set(items["err0"]) == ENTRY_FIELDS
    assert set(items["later0"]) == ENTRY_FIELDS | {"deferred_reason"}  # deferred items say why (docs/tenants.md)
    assert items["later0"]["deferred_reason"] == "451 later"
    assert items["sent0"]["sent_ts"] and items["sent0"]["error_ts"] is None and items["sent0"]["deferred_ts"] is None
    assert (
        items["err0"]["error_ts"] and items["err0"]["error"] == "550 no such user" and items["err0"]["sent_ts"] is None
    )
    assert items["later0"]["deferred_ts"] and items["later0"]["sent_ts"] is None and items["later0"]["error_ts"] is None
    assert items["sent0"]["account_id"] == "smtp-main" and items["sent0"]["priority"] == 0


def test_basic_auth_when_no_token(services: Services, client: ReportEndpoint) -> None:
    seed_outcomes(services, 1)
    run(services, ReportTarget(client.url, user="syncuser", password="syncpass"))
    expected = "Basic " + base64.b64encode(b"syncuser:syncpass").decode()
    assert client.acknowledged[0].headers["authorization"] == expected


def test_signature_lets_the_client_verify_the_body(services: Services, client: ReportEndpoint) -> None:
    seed_outcomes(services, 1)
    run(services, ReportTarget(client.url, signing_secret="shared-secret"))
    request = client.acknowledged[0]
    parts = dict(p.split("=", 1) for p in request.headers["x-gmp-signature"].split(","))
    expected = hmac.new(b"shared-secret", parts["t"].encode() + b"." + request.raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(int(parts["t"]) - time.time()) < 60


def test_client_failing_three_runs_then_back_gets_every_report_once(services: Services, client: ReportEndpoint) -> None:
    seed_outcomes(services, 30)
    client.statuses = [503, 503, 503]
    target = ReportTarget(client.url)
    for _ in range(3):
        result = run(services, target, batch_size=10)
        assert result.failures == 1 and result.posted == 0  # type: ignore[attr-defined]
    assert len(client.received) == 3  # each failing run stopped at its first failure
    run(services, target, batch_size=10)
    ids = Counter(i["id"] for i in client.items())
    assert set(ids) == {f"m{n}" for n in range(30)} and set(ids.values()) == {1}
    assert services.outbox.pending(10) == []


def test_hanging_client_ends_the_run_in_its_bound_and_marks_nothing(services: Services, client: ReportEndpoint) -> None:
    seed_outcomes(services, 3)
    client.hang_seconds = 5
    started = time.monotonic()
    result = run(services, ReportTarget(client.url, timeout=30), budget=1.5)
    assert time.monotonic() - started < 3.5
    assert result.posted == 0  # type: ignore[attr-defined]
    assert len(services.outbox.pending(10)) == 3


# `make soak` runs it with 5,000 (batches of 1,000); `make test` with 1,000, the same five batches and more.
REPORT_VOLUME = int(os.environ.get("GMP_REPORT_VOLUME", "1000"))


def test_thousands_of_outcomes_arrive_in_batches_none_missing_none_twice(
    services: Services, client: ReportEndpoint
) -> None:
    seed_sent_in_bulk(services, REPORT_VOLUME)
    batch_size = REPORT_VOLUME // 5
    result = run(services, ReportTarget(client.url), batch_size=batch_size, budget=300)
    assert result.posted == REPORT_VOLUME  # type: ignore[attr-defined]
    assert all(len(r.items) <= batch_size for r in client.received) and len(client.received) >= 5
    ids = Counter(i["id"] for i in client.items())
    assert len(ids) == REPORT_VOLUME and set(ids.values()) == {1}


def test_without_a_url_reports_wait_and_go_out_once_it_is_set(
    lambda_env: Settings, services: Services, client: ReportEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_outcomes(services, 4)
    answer = reporter_handler.handler({}, LocalLambdaContext("gmp-reporter"))
    assert answer["posted"] == 0 and answer["stopped"] == "no report endpoint configured"
    assert len(services.outbox.pending(10)) == 4
    monkeypatch.setenv("GMP_CLIENT_SYNC_URL", client.url)
    monkeypatch.setenv("GMP_CLIENT_SYNC_USER", "syncuser")
    monkeypatch.setenv("GMP_CLIENT_SYNC_PASSWORD", "syncpass")
    cached_settings.cache_clear()
    answer = reporter_handler.handler({}, LocalLambdaContext("gmp-reporter"))
    assert answer["posted"] == 4
    assert client.acknowledged[0].headers["authorization"].startswith("Basic ")
    assert services.outbox.pending(10) == []


def test_deferred_report_goes_first_and_the_final_one_later(services: Services, client: ReportEndpoint) -> None:
    seed_outcomes(services, 1, MessageStatus.DEFERRED)
    run(services, ReportTarget(client.url))
    services.dynamodb.update_item(  # its time has come
        TableName=services.settings.messages_table,
        Key={"pk": {"S": "MSG#default#m0"}, "sk": {"S": "STATUS"}},
        UpdateExpression="SET not_before = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}},
    )
    claimed = services.messages.claim("default", "m0", now=int(time.time()), lease_seconds=60)
    assert claimed is not None
    services.messages.record(claimed, Outcome(MessageStatus.SENT, int(time.time())))
    drain_to_outbox(services)
    run(services, ReportTarget(client.url))
    first, second = client.items()
    assert first["deferred_ts"] and not first["sent_ts"]
    assert second["sent_ts"] and not second["deferred_ts"]
