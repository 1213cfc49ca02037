"""SMTP servers misbehaving: down then up, temporary refusals for a while, stalls past the account's
timeout, connections dropped in the middle of DATA. Real aiosmtpd servers, the real sender handler.
After each: every message `sent` exactly once (counted by Message-ID at the server) or `error` with a
reason, and every outcome reported once (see harness.assert_each_once)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailproxy.models import AccountIn
from tests.conftest import message_payload
from tests.reliability.harness import World, assert_each_once
from tests.smtp_servers import SinkFactory, SmtpSink, free_port


def add_account(world: World, sink: SmtpSink, account_id: str = "smtp-main", **extra: Any) -> None:
    world.services.accounts.put(AccountIn(id=account_id, **{**sink.account(), **extra}))
    if sink not in world.sinks:
        world.sinks.append(sink)


def messages(count: int, prefix: str = "m", **extra: Any) -> list[dict[str, Any]]:
    return [message_payload(f"{prefix}{n}", **extra) for n in range(count)]


def test_server_down_then_up_defers_and_then_sends_each_once(world: World, smtp_sink_factory: SinkFactory) -> None:
    port = free_port()
    world.services.accounts.put(AccountIn(id="smtp-main", host="127.0.0.1", port=port, timeout=2))
    world.submit(*messages(5))
    ids = [f"m{n}" for n in range(5)]
    for _ in range(2):  # two rounds with nothing listening
        world.drain()
        world.report()
        assert set(world.statuses(ids).values()) == {"deferred"}
        assert all("connection refused" in world.status(i)["deferred_reason"] for i in ids)
        world.clock.advance(120)
    deferred_reports = [i for i in world.endpoint.items() if i["deferred_ts"]]
    assert {i["id"] for i in deferred_reports} == set(ids)  # the client heard about the delay

    world.sinks.append(smtp_sink_factory("plain", port=port))  # the server comes back
    world.settle(ids)
    assert_each_once(world, ids)
    assert all(world.status(i)["attempts"] >= 2 for i in ids)


def test_server_refusing_with_421_and_451_for_a_while(world: World, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("MAIL", "421 4.3.2 service shutting down", times=3)
    sink.fail("RCPT", "451 4.7.1 greylisted, try again later", times=4)
    sink.fail("EOM", "451 4.3.0 queue full, try later", times=2)
    add_account(world, sink)
    ids = [f"m{n}" for n in range(8)]
    world.submit(*messages(8))
    world.settle(ids)
    assert_each_once(world, ids)
    assert any(world.status(i)["attempts"] > 1 for i in ids)
    assert sum(f.hits for f in sink._faults) == 9  # every scripted refusal was met


def test_server_refusing_forever_ends_in_error_after_max_attempts(world: World, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "451 4.7.1 try again later", times=None)
    add_account(world, sink)
    world.submit(*messages(2))
    ids = ["m0", "m1"]
    world.settle(ids)
    assert_each_once(world, ids, errors=ids)
    for message_id in ids:
        item = world.status(message_id)
        assert item["attempts"] == world.services.settings.max_attempts
        assert item["error"].startswith(f"gave up after {item['attempts']} attempts: 451")


def test_permanent_refusal_is_an_error_with_the_reply_and_is_reported(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 mailbox unavailable", match="bounce@", times=None)
    add_account(world, sink)
    world.submit(*messages(3), message_payload("bad", to=["bounce@example.com"]))
    ids = ["m0", "m1", "m2", "bad"]
    world.settle(ids)
    assert_each_once(world, ids, errors=["bad"])
    assert "550 5.1.1 mailbox unavailable" in world.status("bad")["error"]


@pytest.mark.parametrize("stage", ["CONNECT", "MAIL", "EOM"])
def test_server_stalling_past_the_account_timeout(world: World, smtp_sink_factory: SinkFactory, stage: str) -> None:
    """The server goes silent (before its greeting, after MAIL FROM, after the message content) for
    longer than the account's timeout: the attempt is deferred, never half-counted, and the retry sends
    the message once. (After the content, the stalled server drops the transaction when the proxy hangs
    up; a server that kept it would be the double-send window of docs/reliability.md.)"""
    sink = smtp_sink_factory("plain")
    stall = sink.stall(stage, 3.0, times=1)
    add_account(world, sink, timeout=0.5)
    ids = ["m0", "m1"]
    world.submit(*messages(2))
    started = time.monotonic()
    world.drain()
    assert time.monotonic() - started < 2.5  # the proxy gave up after its timeout, not the server's stall
    assert stall.hits == 1
    world.settle(ids)
    assert_each_once(world, ids)
    timed_out = [
        e for i in ids for e in world.status(i).get("history", []) if "timed out" in str(e.get("reason") or "")
    ]
    assert timed_out and {e["event"] for e in timed_out} == {"deferred"}  # deferred on the timeout, then sent


@pytest.mark.parametrize("stage", ["DATA", "EOM"])
def test_connection_dropped_mid_data(world: World, smtp_sink_factory: SinkFactory, stage: str) -> None:
    """The server hangs up after DATA, or after the whole content but before its reply: deferred, then
    sent once on retry; the dropped copy was never accepted by the server."""
    sink = smtp_sink_factory("plain")
    dropped = sink.drop(stage, times=2)
    add_account(world, sink)
    ids = [f"m{n}" for n in range(4)]
    world.submit(*messages(4))
    world.drain()
    assert dropped.hits == 2 and "deferred" in world.statuses(ids).values()
    world.settle(ids)
    assert_each_once(world, ids)
    assert sink.connections >= 3  # the pool reopened the connection after each drop


def test_pooled_connection_dropped_before_mail_is_reopened_within_the_same_attempt(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    """The server cuts the reused connection (a restart, an idle timeout) when the third message starts:
    nothing of that message was accepted, so the pool reconnects and sends it in the same attempt."""
    sink = smtp_sink_factory("plain")
    add_account(world, sink)
    sink.drop("MAIL", match="third@", times=1)
    ids = [f"m{n}" for n in range(5)]
    world.submit(
        *[message_payload(i, **{"from": "third@example.com" if i == "m2" else "sender@example.com"}) for i in ids]
    )
    world.drain()
    assert set(world.statuses(ids).values()) == {"sent"}
    assert world.status("m2")["attempts"] == 1
    assert sink.connections == 2
    world.settle(ids)
    assert_each_once(world, ids)


def test_one_dead_server_does_not_stop_another_account(world: World, smtp_sink_factory: SinkFactory) -> None:
    healthy = smtp_sink_factory("plain")
    add_account(world, healthy, "healthy")
    world.services.accounts.put(AccountIn(id="dead", host="127.0.0.1", port=free_port(), timeout=1))
    world.submit(*messages(3, "h", account_id="healthy"), *messages(3, "d", account_id="dead"))
    world.drain()
    assert set(world.statuses(["h0", "h1", "h2"]).values()) == {"sent"}
    assert set(world.statuses(["d0", "d1", "d2"]).values()) == {"deferred"}


def test_a_stalled_server_costs_one_timeout_per_batch_not_one_per_message(
    world: World, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.stall("CONNECT", 3.0, times=None)
    add_account(world, sink, timeout=0.4)
    world.submit(*messages(4))
    started = time.monotonic()
    handled = world.poller.poll_once()  # one sender invocation
    elapsed = time.monotonic() - started
    assert handled >= 2
    assert sink.connections == 1 and elapsed < 1.2, f"{handled} messages: {sink.connections} connects, {elapsed:.1f} s"
