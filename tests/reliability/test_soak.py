"""Soak: many messages through the whole local stack (`make run`'s runner in a subprocess: moto server,
API under uvicorn, two sender pollers, the reporter timer) over several accounts with rate limits and a
flaky SMTP server. At the end: sent + error = N, one SMTP transaction per sent message, none for an
error, and one final delivery report per message at the client's endpoint.

`make test` runs a reduced form (300 messages); `make soak` the full one (GMP_SOAK_MESSAGES=10000)."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.stack import LocalStack, local_stack
from tests.report_server import ReportEndpoint, report_endpoint
from tests.smtp_servers import Fault, SinkFactory, SmtpSink

N = int(os.environ.get("GMP_SOAK_MESSAGES", "300"))  # read at import: tests/conftest.py clears GMP_*
BATCH = 250  # messages per add-messages request
BOUNCE_EVERY = 50  # one message in 50 goes to a mailbox that does not exist: a permanent 550
# Converging takes the delivery itself, the retries of the flaky server (backoff 1-4 s) and, for the
# rate-limited account, up to two minute windows; the margin absorbs a machine shared with other work.
CALL_TIMEOUT = 120  # seconds for one API call (250 messages stored and enqueued) on a loaded machine
LIMIT_SECONDS = 240 + N * 0.1
# The rate-limited account gets the first messages (at most 300), twice its per-minute limit: the limit
# bites in every run (the senders are faster than it) and costs one or two minute windows.
LIMITED_SHARE = min(N // 4 + 1, 300)


@dataclass
class EveryNth(Fault):
    """A fault that fires on every `every`-th occurrence of its command, for the whole run."""

    every: int = 7
    seen: int = 0

    def _applies(self, command: str, arg: str | None) -> bool:
        if command != self.command:
            return False
        self.seen += 1
        return self.seen % self.every == 0


def progress(message: str) -> None:
    print(f"soak[{N}]: {message}", flush=True)


def account_for(n: int) -> str:
    """The rate-limited account's messages come first, in a burst faster than its limit; then the others."""
    return "limited" if n < LIMITED_SHARE else ("steady", "flaky", "hourly")[n % 3]


def accounts(sinks: dict[str, SmtpSink]) -> list[dict[str, Any]]:
    limits = {
        "steady": {},
        "flaky": {"limit_per_hour": 100 * N},
        "limited": {"limit_per_minute": LIMITED_SHARE // 2 + 1},  # about half of its share waits for a window
        "hourly": {"limit_per_minute": 10 * N, "limit_per_day": 100 * N},
    }
    return [
        {"id": name, "host": sink.host, "port": sink.port, "use_tls": False, "timeout": 10, **limits[name]}
        for name, sink in sinks.items()
    ]


def final_reports(endpoint: ReportEndpoint) -> dict[str, dict[str, Any]]:
    finals: dict[str, dict[str, Any]] = {}
    for item in endpoint.items():
        if item["sent_ts"] or item["error_ts"]:
            finals.setdefault(item["id"], item)
    return finals


def all_messages(stack: LocalStack, *, history: bool = False) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, "include_history": history, **({"cursor": cursor} if cursor else {})}
        page = requests.get(stack.url + "/messages", headers=stack.headers, params=params, timeout=CALL_TIMEOUT).json()
        found.update({m["id"]: m for m in page["messages"]})
        cursor = page["cursor"]
        if not cursor:
            return found


def not_converged(stack: LocalStack, endpoint: ReportEndpoint, done: int) -> str:
    """What to look at when the soak does not converge: the messages without a final report, what the
    client received about them, and the stack's warnings and errors."""
    stored = all_messages(stack, history=True)
    finals = final_reports(endpoint)
    missing = {i: m for i, m in stored.items() if i not in finals}
    seen = {
        i: [(r.headers.get("x-test-answer"), item) for r in endpoint.received for item in r.items if item["id"] == i]
        for i in list(missing)[:5]
    }
    problems = [line.strip()[:300] for line in stack.output if '"level":"ERROR"' in line or '"level":"WARNING"' in line]
    return (
        f"soak did not converge within {LIMIT_SECONDS:.0f} s: {done}/{N} final reports; "
        f"statuses {Counter(m['status'] for m in stored.values())}; {len(missing)} without a final report, "
        f"e.g. {list(missing.values())[:3]}; what the client got about them: {seen}; "
        f"last warnings/errors of the stack: {problems[-10:]}"
    )


@pytest.mark.soak
@pytest.mark.timeout(int(LIMIT_SECONDS) + 180)
def test_soak_every_message_sent_once_or_failed_and_reported_once(smtp_sink_factory: SinkFactory) -> None:
    sinks = {name: smtp_sink_factory("plain") for name in ("steady", "flaky", "limited", "hourly")}
    flaky = sinks["flaky"]
    flaky.add_fault(EveryNth("RCPT", reply="451 4.7.1 greylisted, try again later", every=9))
    flaky.add_fault(EveryNth("EOM", reply="451 4.3.0 queue full, try later", every=13))
    flaky.add_fault(EveryNth("MAIL", reply="421 4.3.2 closing connection", every=31))
    for sink in sinks.values():
        sink.fail("RCPT", "550 5.1.1 no such user", match="bounce", times=None)
    names = list(sinks)
    ids = [f"soak-{n:05d}" for n in range(N)]
    bounces = {i for n, i in enumerate(ids) if n % BOUNCE_EVERY == BOUNCE_EVERY - 1}

    environment = {
        "GMP_BACKOFF_BASE": "1",
        "GMP_BACKOFF_CAP": "4",
        "GMP_MAX_ATTEMPTS": "10",
        "GMP_LEASE_SECONDS": "30",
        "GMP_ENQUEUE_GRACE": "60",
        "GMP_REPORT_BATCH_SIZE": "500",
        "GMP_LOG_LEVEL": "WARNING",  # warnings and errors are kept for the diagnosis of a failure
    }
    with report_endpoint() as endpoint:
        endpoint.statuses = [503, 503, 503]  # the client is down when the first reports go out
        environment["GMP_CLIENT_SYNC_URL"] = endpoint.url
        with local_stack(environment, senders=2) as stack:
            for account in accounts(sinks):
                assert stack.call("POST", "/account", json=account).status_code == 200
            started = time.monotonic()
            for start in range(0, N, BATCH):
                batch: list[dict[str, Any]] = [
                    {
                        "id": i,
                        "account_id": account_for(n),
                        "from": "soak@example.com",
                        "to": [f"bounce-{n}@example.com" if i in bounces else f"rcpt-{n}@example.com"],
                        "subject": f"soak {n}",
                        "body": f"message {n} of {N}",
                        "headers": {"X-Soak-Id": i},
                        "priority": n % 4,
                    }
                    for n, i in enumerate(ids[start : start + BATCH], start=start)
                ]
                answer = requests.post(
                    stack.url + "/commands/add-messages",
                    headers=stack.headers,
                    json={"messages": batch},
                    timeout=CALL_TIMEOUT,
                ).json()
                assert answer["queued"] == len(batch) and answer["rejected"] == [], answer
            progress(f"{N} messages queued in {time.monotonic() - started:.1f} s over {len(names)} accounts")

            deadline = started + LIMIT_SECONDS
            last_print = 0.0
            while True:
                done = len(final_reports(endpoint))
                now = time.monotonic()
                if now - last_print >= 5 or done == N:
                    smtp = sum(len(s.messages) for s in sinks.values())
                    progress(f"t={now - started:.0f}s smtp transactions={smtp} final reports={done}/{N}")
                    last_print = now
                if done == N:
                    break
                if now > deadline:
                    pytest.fail(not_converged(stack, endpoint, done))
                time.sleep(1)
            elapsed = time.monotonic() - started
            stored = all_messages(stack)

    statuses = Counter(m["status"] for m in stored.values())
    transactions = Counter(str(m.message["X-Soak-Id"]) for s in sinks.values() for m in s.messages)
    finals = final_reports(endpoint)
    final_counts = Counter(item["id"] for item in endpoint.items() if item["sent_ts"] or item["error_ts"])
    deferred = [item for item in endpoint.items() if item["deferred_ts"]]
    deferred_reports = len(deferred)
    empty = sum(1 for i in endpoint.items() if not (i["sent_ts"] or i["error_ts"] or i["deferred_ts"]))
    deferred_why = Counter(str(item.get("deferred_reason", "?")).split(":")[0][:30] for item in deferred)
    errors = {i: m.get("error") for i, m in stored.items() if m["status"] == "error"}
    progress(
        f"done in {elapsed:.0f} s ({N / elapsed:.0f} msg/s): {dict(statuses)}; "
        f"{sum(transactions.values())} SMTP transactions over {sum(s.connections for s in sinks.values())} "
        f"connections; {len(finals)} final + {deferred_reports} deferred reports {dict(deferred_why)} + {empty} "
        "empty ones; "
        f"errors by reason: {dict(Counter(re.sub(r'<[^>]*>', '<...>', e or '')[:60] for e in errors.values()))}; "
        f"flaky server refusals: {[f.hits for f in flaky._faults]}"
    )

    assert len(stored) == N and statuses["sent"] + statuses["error"] == N, statuses
    twice = {i: c for i, c in transactions.items() if c > 1}
    assert not twice, f"{len(twice)} messages had more than one SMTP transaction: {list(twice.items())[:5]}"
    for message_id, message in stored.items():
        if message["status"] == "sent":
            assert transactions[message_id] == 1, message_id
        else:
            assert transactions[message_id] == 0 and message.get("error"), message
        assert final_counts[message_id] == 1, f"{message_id}: {final_counts[message_id]} final reports"
        report = finals[message_id]
        assert bool(report["sent_ts"]) == (message["status"] == "sent"), (message, report)
    assert set(transactions) <= set(ids)
    assert set(errors) >= bounces and all("550" in (errors[i] or "") for i in bounces)
    assert set(errors) == bounces, f"unexpected errors: { {i: e for i, e in errors.items() if i not in bounces} }"
    assert deferred_reports > 0  # the flaky server and the rate limit did defer messages
    assert empty == 0  # every report says what happened: sent, error or deferred
    assert deferred_why["rate limit"] > 0  # the per-minute limit did hold messages back to the next window
