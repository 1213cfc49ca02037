"""Delivery reports from the messages table's stream (docs/design.md, "Delivery reports"): the stream reporter
driven by the local poller as Lambda's event source mapping would, against real HTTP report receivers; the
scheduled reporter takes over what the stream could not deliver."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.stream_reporter import handler as stream_handler
from mailproxy.config import Settings
from mailproxy.config import settings as cached_settings
from mailproxy.dal.messages import Outcome
from mailproxy.dal.sync_state import PostLease
from mailproxy.logic.campaigns import remove_acknowledged
from mailproxy.logic.reports import STREAM_MAX_LAG_SECONDS, Reporter, ReportTarget, reported_at, tenant_target
from mailproxy.models import MessageStatus, TenantIn
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy_local.stream_poller import Handler
from tests.integration.test_reporter import record_outcomes
from tests.report_server import ReportEndpoint, report_endpoint
from tests.streams import reporting_to, stream_poller

SYNC_PATH = "/mail-proxy/sync"
TWO_DAYS = 2 * 86400


@pytest.fixture
def client() -> Iterator[ReportEndpoint]:
    with report_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def acme(services: Services) -> Iterator[ReportEndpoint]:
    """Tenant `acme` with its own report endpoint."""
    with report_endpoint(SYNC_PATH) as endpoint:
        services.tenants.put(
            TenantIn.model_validate({"id": "acme", "client_base_url": endpoint.url.removesuffix(SYNC_PATH)})
        )
        yield endpoint


def per_tenant(services: Services, fallback: ReportTarget | None) -> Any:
    return lambda tenant_id: tenant_target(services, tenant_id, fallback)


def scheduled_run(services: Services, target: ReportTarget | None, *, now: float) -> Any:
    reporter = Reporter(services, per_tenant(services, target), logger=logger, metrics=metrics, clock=lambda: now)
    return reporter.run(budget_seconds=20, batch_size=100)


def item_of(services: Services, message_id: str, tenant_id: str = "default") -> dict[str, Any]:
    item = services.messages.get(tenant_id, message_id)
    assert item is not None
    return item


def outcome_again(services: Services, message_id: str, outcome: Outcome) -> None:
    """A deferred message's next attempt: its time has come, a sender claims it and records `outcome`."""
    services.dynamodb.update_item(
        TableName=services.settings.messages_table,
        Key={"pk": {"S": f"MSG#default#{message_id}"}, "sk": {"S": "STATUS"}},
        UpdateExpression="SET not_before = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}},
    )
    claimed = services.messages.claim("default", message_id, now=int(time.time()), lease_seconds=60)
    assert claimed is not None
    assert services.messages.record(claimed, outcome)


def test_an_outcome_reaches_the_client_through_the_stream_handler_with_no_scheduled_run(
    lambda_env: Settings, services: Services, client: ReportEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GMP_CLIENT_SYNC_URL", client.url)
    monkeypatch.setenv("GMP_CLIENT_SYNC_TOKEN", "sync-token")
    cached_settings.cache_clear()
    stream = stream_poller(services, stream_handler.handler)  # the Lambda handler itself
    record_outcomes(services, 2, MessageStatus.SENT, prefix="sent")
    record_outcomes(services, 1, MessageStatus.DEFERRED, prefix="later")
    stream.drain()
    [request] = client.acknowledged  # one POST for the batch's tenant
    assert request.headers["authorization"] == "Bearer sync-token"
    items = {i["id"]: i for i in request.items}
    assert set(items) == {"sent0", "sent1", "later0"}
    assert items["sent0"]["sent_ts"] and items["later0"]["deferred_reason"] == "451 later"
    assert services.outbox.pending(10) == []


def test_a_delivered_report_writes_nothing_to_the_message(services: Services, client: ReportEndpoint) -> None:
    stream = stream_poller(services, reporting_to(services, ReportTarget(client.url)))
    record_outcomes(services, 1)
    before = item_of(services, "m0")
    stream.drain()
    assert [i["id"] for i in client.items()] == ["m0"]
    assert item_of(services, "m0") == before
    assert services.outbox.pending(10) == []


def test_a_client_outage_longer_than_the_stream_keeps_records_ends_with_every_report_delivered_once(
    services: Services, client: ReportEndpoint
) -> None:
    client.default_status = 503
    target = ReportTarget(client.url)
    stream = stream_poller(services, reporting_to(services, target))
    record_outcomes(services, 3)
    stream.drain()  # the stream's records are handled once: the failed reports go to the outbox
    assert {i["id"] for i in services.outbox.pending(10)} == {"m0", "m1", "m2"}
    client.default_status = 200
    # two days later the stream holds none of those records any more; the outbox still does
    run = scheduled_run(services, target, now=time.time() + TWO_DAYS)
    assert run.posted == 3
    assert Counter(i["id"] for i in client.items()) == {"m0": 1, "m1": 1, "m2": 1}
    assert services.outbox.pending(10) == []
    stream.drain()  # the marks' stream records are no new outcomes: nothing is posted again
    assert len(client.items()) == 3


def test_a_tenant_in_do_not_disturb_gets_its_report_from_the_outbox_after_its_quiet_time(
    services: Services, acme: ReportEndpoint
) -> None:
    now = int(time.time())
    lease = services.sync_state.take_post_lease("acme", now=now, seconds=10)
    assert isinstance(lease, PostLease)
    services.sync_state.synced(lease, at=now, next_sync_after=now + 3600)  # as a reply asking for quiet
    stream = stream_poller(services, reporting_to(services, per_tenant(services, None)))
    record_outcomes(services, 1, tenant_id="acme")
    stream.drain()
    assert acme.received == []
    assert [i["id"] for i in services.outbox.pending(10, "acme")] == ["m0"]
    scheduled_run(services, None, now=now + 3601)
    assert [i["id"] for i in acme.items()] == ["m0"]


def test_a_message_already_in_the_outbox_is_left_to_the_scheduled_reporter(
    services: Services, client: ReportEndpoint
) -> None:
    target = ReportTarget(client.url)
    stream = stream_poller(services, reporting_to(services, target))
    client.default_status = 503
    record_outcomes(services, 1, MessageStatus.DEFERRED)
    stream.drain()  # the deferral waits in the outbox
    client.default_status = 200
    outcome_again(services, "m0", Outcome(MessageStatus.SENT, int(time.time())))
    stream.drain()
    assert client.items() == []  # not posted from the stream: the outbox has it, with its latest state
    [waiting] = services.outbox.pending(10)
    assert waiting["status"] == "sent"
    scheduled_run(services, target, now=time.time())
    [report] = client.items()
    assert report["sent_ts"] and not report["deferred_ts"]


def test_deferred_then_sent_never_ends_with_deferred_at_the_client(services: Services, client: ReportEndpoint) -> None:
    stream = stream_poller(services, reporting_to(services, ReportTarget(client.url)))
    record_outcomes(services, 1, MessageStatus.DEFERRED, prefix="batched")
    record_outcomes(services, 1, MessageStatus.DEFERRED, prefix="apart")
    stream.drain()  # both deferrals reported
    outcome_again(services, "apart0", Outcome(MessageStatus.SENT, int(time.time())))
    stream.drain()
    now = int(time.time())
    outcome_again(services, "batched0", Outcome(MessageStatus.DEFERRED, now, not_before=now + 60, reason="451"))
    outcome_again(services, "batched0", Outcome(MessageStatus.SENT, now))
    stream.drain()  # one batch holds batched0's deferral and its sending: only the latest is posted
    last: dict[str, dict[str, Any]] = {}
    for item in client.items():
        last[item["id"]] = item
    assert last["apart0"]["sent_ts"] and last["batched0"]["sent_ts"]
    assert [i["id"] for i in client.acknowledged[-1].items] == ["batched0"]


def test_one_tenants_failing_endpoint_does_not_delay_anothers_report_in_the_same_batch(
    services: Services, client: ReportEndpoint, acme: ReportEndpoint
) -> None:
    acme.default_status = 503
    stream = stream_poller(services, reporting_to(services, per_tenant(services, ReportTarget(client.url))))
    record_outcomes(services, 2, tenant_id="acme", prefix="a")
    record_outcomes(services, 2, prefix="d")
    stream.drain()
    assert sorted(i["id"] for i in client.items()) == ["d0", "d1"]
    assert sorted(i["id"] for i in services.outbox.pending(10, "acme")) == ["a0", "a1"]
    assert services.outbox.pending(10, "default") == []


def test_a_failed_outbox_write_fails_only_its_record_and_is_delivered_again(
    services: Services, client: ReportEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.default_status = 503
    original = services.outbox.put
    failures = ["m1"]

    def put_failing_once(item: dict[str, Any]) -> bool:
        if item["id"] in failures:
            failures.remove(item["id"])
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "UpdateItem")
        return original(item)

    monkeypatch.setattr(services.outbox, "put", put_failing_once)
    answers: list[dict[str, Any]] = []
    handler = reporting_to(services, ReportTarget(client.url))

    def recording(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answers.append(handler(event, context))
        return answers[-1]

    recorder: Handler = recording
    record_outcomes(services, 3)
    stream_poller(services, recorder).drain()
    failed = [f for a in answers for f in a["batchItemFailures"]]
    assert len(failed) == 1  # m1's record only, then the batch was read again from it
    assert {i["id"] for i in services.outbox.pending(10)} == {"m0", "m1", "m2"}


def test_a_reply_asking_for_quiet_holds_the_next_outcomes_in_the_outbox(
    services: Services, client: ReportEndpoint
) -> None:
    stream = stream_poller(services, reporting_to(services, ReportTarget(client.url)))
    until = int(time.time()) + 3600
    client.reply = {"ok": True, "next_sync_after": until}
    record_outcomes(services, 1, prefix="first")
    stream.drain()
    assert [i["id"] for i in client.items()] == ["first0"]
    assert services.sync_state.all()["default"].next_sync_after == until
    record_outcomes(services, 1, prefix="second")
    stream.drain()
    assert len(client.received) == 1  # not called inside its quiet time
    assert [i["id"] for i in services.outbox.pending(10)] == ["second0"]


def test_a_final_outcome_reported_from_the_stream_counts_as_acknowledged_after_the_streams_maximum_lag(
    services: Services, client: ReportEndpoint
) -> None:
    stream = stream_poller(services, reporting_to(services, ReportTarget(client.url)))
    record_outcomes(services, 1)
    stream.drain()
    now = time.time()
    item = item_of(services, "m0")
    assert reported_at(item, now) is None  # no mark was written; the stream may still be on it
    assert remove_acknowledged(services, services.queries.tenant_messages("default"), now) == 0
    later = now + STREAM_MAX_LAG_SECONDS + 1
    assert reported_at(item, later) == item["updated_ts"]
    assert remove_acknowledged(services, services.queries.tenant_messages("default"), later) == 1
    assert services.messages.get("default", "m0") is None


def test_the_local_poller_hands_over_only_outcomes_of_status_items(services: Services, client: ReportEndpoint) -> None:
    seen: list[dict[str, Any]] = []
    handler = reporting_to(services, ReportTarget(client.url))

    def recording(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(event["Records"])
        return handler(event, context)

    recorder: Handler = recording
    record_outcomes(services, 2)  # ingestion (contents, status), claims, outcomes
    stream_poller(services, recorder).drain()
    assert len(seen) == 2
    assert all(r["eventSource"] == "aws:dynamodb" and r["eventSourceARN"] for r in seen)
    assert {r["dynamodb"]["NewImage"]["status"]["S"] for r in seen} == {"sent"}


def test_two_posters_racing_one_tenant_never_call_it_at_once_and_honour_the_quiet_the_first_reply_asks(
    services: Services, client: ReportEndpoint
) -> None:
    """The stream reporter and the scheduled reporter post for the same tenant at the same moment: one takes
    the tenant's post lease, the other waits for it, then finds the quiet time the first reply asked for."""
    target = ReportTarget(client.url)
    stream = stream_poller(services, reporting_to(services, target))
    client.default_status = 503
    record_outcomes(services, 1, prefix="waiting")
    stream.drain()  # its report waits in the outbox for the scheduled reporter
    client.default_status = 200
    client.hang_seconds = 0.5
    client.reply = {"ok": True, "next_sync_after": int(time.time()) + 3600}
    record_outcomes(services, 1, prefix="fresh")
    calls_before = len(client.received)
    posters = [
        threading.Thread(target=stream.drain),
        threading.Thread(target=scheduled_run, args=(services, target), kwargs={"now": time.time()}),
    ]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join()
    assert len(client.received) == calls_before + 1  # the second poster never called inside the quiet time
    posted = {i["id"] for i in client.items()}
    left = {i["id"] for i in services.outbox.pending(10)}
    assert posted | left == {"waiting0", "fresh0"} and not posted & left
