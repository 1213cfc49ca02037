"""The client application's report endpoint failing for many runs: answering 5xx, hanging past the
timeout, refusing connections. Reports wait in the outbox and every outcome arrives, once, when it is
back; a failing run stops at its first failed POST instead of hammering the client."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailproxy.config import settings as cached_settings
from mailproxy.models import AccountIn
from tests.conftest import message_payload
from tests.reliability.harness import World, assert_each_once
from tests.smtp_servers import SinkFactory, free_port


def deliver(world: World, smtp_sink_factory: SinkFactory, count: int, bounces: int = 0) -> list[str]:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 no such user", match="bounce@", times=None)
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.sinks.append(sink)
    ids = [f"m{n}" for n in range(count)]
    world.submit(
        *[
            message_payload(i, to=["bounce@example.com"] if n < bounces else ["rcpt@example.com"])
            for n, i in enumerate(ids)
        ]
    )
    world.drain()
    return ids


def test_client_answering_503_for_many_runs_then_back(world: World, smtp_sink_factory: SinkFactory) -> None:
    ids = deliver(world, smtp_sink_factory, 60, bounces=7)  # more than one report batch (50)
    world.endpoint.default_status = 503
    world.stream.drain()  # the stream reporter meets the 503 first and leaves every outcome to the outbox
    stream_posts = len(world.endpoint.received)
    assert 0 < stream_posts <= world.stream.batches  # each stream batch stops at its first failed POST
    assert len(world.services.outbox.pending(200)) == 60
    for run in range(1, 13):
        answer = world.report()
        assert answer["posted"] == 0 and answer["failures"] == 1
        assert len(world.endpoint.received) == stream_posts + run  # one POST per failing run, then it stops
    assert len(world.services.outbox.pending(200)) == 60  # all waiting
    world.endpoint.default_status = 200
    world.settle(ids)
    assert_each_once(world, ids, errors=ids[:7])
    assert len(world.endpoint.acknowledged) == 2  # 60 reports in batches of 50


def test_client_hanging_past_the_timeout_marks_nothing_then_gets_everything(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    ids = deliver(world, smtp_sink_factory, 5)
    world.endpoint.hang_seconds = 3.0  # longer than GMP_CLIENT_SYNC_TIMEOUT (2 s)
    # What the two hung requests (the stream reporter's, then the scheduled one's) finally get: the proxy
    # is gone by then.
    world.endpoint.statuses = [503, 503]
    started = time.monotonic()
    world.stream.drain()
    assert time.monotonic() - started < 2.9
    assert len(world.services.outbox.pending(10)) == 5  # the stream reporter gave up: every outcome waits
    started = time.monotonic()
    answer = world.report()
    assert time.monotonic() - started < 2.9
    assert answer["posted"] == 0 and "unreachable" in answer["stopped"]
    assert len(world.services.outbox.pending(10)) == 5
    world.endpoint.hang_seconds = 0
    assert world.endpoint.wait_for(lambda e: len(e.received) == 2, timeout=5)  # the hung requests are over
    world.settle(ids)
    assert_each_once(world, ids)


def test_client_refusing_connections_for_many_runs_then_back(
    world: World, smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = deliver(world, smtp_sink_factory, 10)
    monkeypatch.setenv("GMP_CLIENT_SYNC_URL", f"http://127.0.0.1:{free_port()}/sync")
    cached_settings.cache_clear()
    for _ in range(8):
        answer = world.report()
        assert answer["posted"] == 0 and "refused" in answer["stopped"]
    monkeypatch.setenv("GMP_CLIENT_SYNC_URL", world.endpoint.url)
    cached_settings.cache_clear()
    world.settle(ids)
    assert_each_once(world, ids)


def test_deferred_then_final_reports_survive_a_failing_client(world: World, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.7.1 greylisted", times=3)
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.sinks.append(sink)
    ids = ["m0", "m1", "m2"]
    world.submit(*[message_payload(i) for i in ids])
    world.endpoint.statuses = [500] * 4
    world.settle(ids)
    assert_each_once(world, ids)
    for message_id in ids:  # the final report is the last one the client acknowledged for each message
        last = [i for i in world.endpoint.items() if i["id"] == message_id][-1]
        assert last["sent_ts"]


def test_a_report_read_while_the_message_is_being_retried_says_what_happened(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.7.1 greylisted", times=1)
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    world.sinks.append(sink)
    world.submit(message_payload("m0"))
    world.drain()
    assert world.status("m0")["status"] == "deferred"
    retry_at = world.status("m0")["not_before"]
    assert world.services.messages.claim("default", "m0", now=retry_at, lease_seconds=60)  # the retry is running
    world.report()
    for item in world.endpoint.items():
        assert [bool(item["sent_ts"]), bool(item["error_ts"]), bool(item["deferred_ts"])].count(True) == 1, item


def test_a_torn_outbox_read_never_loses_the_final_report(world: World, smtp_sink_factory: SinkFactory) -> None:
    ids = deliver(world, smtp_sink_factory, 1)
    assert world.status("m0")["status"] == "sent"
    original = type(world.services.outbox).pending

    def torn(store: Any, limit: int, tenant_id: str | None = None) -> list[dict[str, Any]]:
        items = original(store, limit, tenant_id)  # the reporter reads per tenant (docs/reliability.md)
        return [{k: v for k, v in i.items() if k not in ("sent_ts", "history")} for i in items]  # half-applied write

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(world.services.outbox), "pending", torn)
        answer = world.report()
    assert answer["failures"] == 0, answer  # the torn image was read and left, not a failure
    for item in world.endpoint.items():
        assert item["sent_ts"] or item["error_ts"] or item["deferred_ts"], f"an empty report: {item}"
    world.settle(ids)
    assert_each_once(world, ids)
    assert [e["event"] for e in world.status("m0")["history"]][:2] == ["queued", "sent"]
