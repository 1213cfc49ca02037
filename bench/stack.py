"""The local stack (`python -m mailproxy_local.runner`, what `make run` starts) over HTTP.

* Ingestion: `POST /commands/add-messages` in batches of 100 with no sender running (`--senders 0`), so
  the moto server serves the API alone.
* End to end: N messages posted in batches of 100, one request after the other, delivered by the stack's
  sender pollers to an aiosmtpd sink in this process; the clock runs from the first POST to the last
  message received by the sink. Raw smtplib then sends the same messages, serialized beforehand, over one
  connection to the same sink: the ratio of the two rates is the issue's figure.
* Report latency: the stack reports to a real HTTP server in this process, which notes when each message's
  report arrives (answered 200); the latency of a message runs from the sink's receipt of it (its outcome)
  to that arrival. Whatever carries reports on disk carries them here: the stream poller when the runner
  has one, else the reporter's timer (GMP_REPORT_INTERVAL, 60 s as the AWS schedule).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.common import RAW_RUNS, account, message, note, rate, raw_smtplib, serialized_mails
from tests.e2e.stack import LocalStack, local_stack
from tests.http_servers import QuietHandler, serving
from tests.smtp_servers import SmtpSink

BATCH = 100
BODY_BYTES = 1024


def _post_all(stack: LocalStack, session: requests.Session, payloads: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(payloads), BATCH):
        answer = session.post(
            stack.url + "/commands/add-messages",
            json={"messages": payloads[start : start + BATCH]},
            headers=stack.headers,
            timeout=120,
        )
        body = answer.json()
        if answer.status_code != 200 or body.get("rejected"):
            raise RuntimeError(f"ingestion failed: {answer.status_code} {str(body)[:300]}")
    return time.perf_counter() - started


def _environment() -> dict[str, str]:
    # reporter at its default interval and no report endpoint: it sweeps, finds nothing due, and waits
    return {"GMP_REPORT_INTERVAL": "60", "GMP_LOG_LEVEL": "WARNING"}


def ingestion(messages: int) -> dict[str, Any]:
    rng = random.Random(7)
    payloads = [message(f"http-{n:06d}", BODY_BYTES, rng) for n in range(messages)]
    with SmtpSink("plain") as sink, local_stack(_environment(), senders=0) as stack, requests.Session() as session:
        answer = session.post(stack.url + "/account", json=account(sink.port), headers=stack.headers, timeout=30)
        answer.raise_for_status()
        note(f"  local stack, no sender: posting {messages} messages in batches of {BATCH}")
        seconds = _post_all(stack, session, payloads)
    return {"messages": messages, "batch": BATCH, "seconds": seconds, "msg_per_s": rate(messages, seconds)}


def _wait_for_sink(sink: SmtpSink, expected: int, *, stall: float, limit: float) -> float:
    """Wait until the sink holds `expected` messages, or nothing arrived for `stall` seconds; returns the
    perf_counter time of the last arrival."""
    last_count, last_change = len(sink.messages), time.perf_counter()
    deadline = time.perf_counter() + limit
    while last_count < expected and time.perf_counter() < deadline:
        time.sleep(0.02)
        count = len(sink.messages)
        if count != last_count:
            last_count, last_change = count, time.perf_counter()
        elif time.perf_counter() - last_change > stall:
            break
    return last_change


def _statuses(stack: LocalStack, session: requests.Session) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = session.get(stack.url + "/messages", params=params, headers=stack.headers, timeout=60).json()
        for item in page.get("messages", []):
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        cursor = page.get("cursor")
        if not cursor:
            return counts


def _errors(stack: LocalStack, session: requests.Session) -> dict[str, int]:
    reasons: dict[str, int] = {}
    params: dict[str, Any] = {"limit": 500, "status": "error"}
    page = session.get(stack.url + "/messages", params=params, headers=stack.headers, timeout=60).json()
    for item in page.get("messages", []):
        reason = str(item.get("error"))[:120]
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def end_to_end(messages: int, senders: int = 2) -> dict[str, Any]:
    """N messages through the stack, then raw smtplib with the same messages to the same sink."""
    rng = random.Random(8)
    payloads = [message(f"e2e-{n:06d}", BODY_BYTES, rng) for n in range(messages)]
    mails = serialized_mails(payloads)
    with SmtpSink("plain") as sink:
        with local_stack(_environment(), senders=senders) as stack, requests.Session() as session:
            answer = session.post(stack.url + "/account", json=account(sink.port), headers=stack.headers, timeout=30)
            answer.raise_for_status()
            note(f"  local stack, {senders} senders: {messages} messages from the API call to the SMTP sink")
            started = time.perf_counter()
            post_seconds = _post_all(stack, session, payloads)
            last = _wait_for_sink(sink, messages, stall=15.0, limit=max(300.0, messages / 2))
            received = len(sink.messages)
            wall = last - started
            statuses = _statuses(stack, session)
            errors = _errors(stack, session) if statuses.get("error") else {}
            connections = sink.connections
        note(f"  raw smtplib: the same {messages} messages over one connection to the same sink, {RAW_RUNS} times")
        raw_runs = []
        for _ in range(RAW_RUNS):
            sink.reset()
            raw_runs.append(raw_smtplib(sink.host, sink.port, mails))
    ours, raw = rate(received, wall), rate(messages, statistics.median(raw_runs))
    return {
        "messages": messages,
        "senders": senders,
        "batch": BATCH,
        "wall_seconds": wall,
        "msg_per_s": ours,
        "post_seconds": post_seconds,
        "received": received,
        "statuses": statuses,
        "errors": errors,
        "smtp_connections": connections,
        "raw_msg_per_s": raw,
        "raw_runs_msg_per_s": [rate(messages, r) for r in raw_runs],
        "ratio": ours / raw if raw else 0.0,
    }


def scaling(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The rate at the largest N relative to the smallest ("no slowdown as it fills": within 20 %)."""
    if len(runs) < 2:
        return None
    smallest, largest = min(runs, key=lambda r: r["messages"]), max(runs, key=lambda r: r["messages"])
    relative = largest["msg_per_s"] / smallest["msg_per_s"] if smallest["msg_per_s"] else 0.0
    return {"from": smallest["messages"], "to": largest["messages"], "relative_rate": relative}


# -- report latency ------------------------------------------------------------------------------------
REPORT_PATH = "/email/mailproxy/mp_endpoint/proxy_sync"


@dataclass
class ReportClock:
    """The client's report endpoint: answers 200 and notes when each message's first report arrived
    (time.monotonic(), the clock of the SMTP sink's receipts)."""

    url: str = ""
    arrivals: dict[str, float] = field(default_factory=dict)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, raw: bytes) -> None:
        arrived = time.monotonic()
        with self.lock:
            self.posts += 1
            for item in json.loads(raw).get("delivery_report", []):
                self.arrivals.setdefault(str(item.get("id")), arrived)


@contextmanager
def report_clock() -> Iterator[ReportClock]:
    clock = ReportClock()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            clock.note(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as base:
        clock.url = base + REPORT_PATH
        yield clock


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report_latency(messages: int, senders: int = 2, batch: int = 10) -> dict[str, Any]:
    """Outcome (SMTP receipt) to the client's 2xx receipt of the report, per message, over `messages`
    posted `batch` at a time (a steady flow rather than one burst)."""
    rng = random.Random(9)
    payloads = [message(f"lat-{n:06d}", BODY_BYTES, rng) for n in range(messages)]
    ids_by_subject = {p["subject"]: p["id"] for p in payloads}
    with SmtpSink("plain") as sink, report_clock() as clock:
        environment = {**_environment(), "GMP_CLIENT_SYNC_URL": clock.url}
        with local_stack(environment, senders=senders) as stack, requests.Session() as session:
            answer = session.post(stack.url + "/account", json=account(sink.port), headers=stack.headers, timeout=30)
            answer.raise_for_status()
            note(f"  local stack, {senders} senders: {messages} messages, outcome to the client's report receipt")
            for start in range(0, messages, batch):
                chunk = {"messages": payloads[start : start + batch]}
                session.post(stack.url + "/commands/add-messages", json=chunk, headers=stack.headers, timeout=60)
            _wait_for_sink(sink, messages, stall=15.0, limit=max(120.0, messages / 2))
            # the schedule's interval plus a margin: reports that only the timer carries still arrive
            deadline = time.monotonic() + float(_environment()["GMP_REPORT_INTERVAL"]) + 15
            while len(clock.arrivals) < messages and time.monotonic() < deadline:
                time.sleep(0.05)
            waited_until = time.monotonic()
        outcomes = {ids_by_subject.get(str(m.message["Subject"])): m.received_at for m in sink.messages}
    # a report that never came counts with the time waited for it: a lower bound, so the figures stay honest
    latencies = [clock.arrivals.get(str(i), waited_until) - t for i, t in outcomes.items()]
    return {
        "messages": messages,
        "senders": senders,
        "batch": batch,
        "delivered": len(outcomes),
        "reported": len(set(clock.arrivals) & set(ids_by_subject.values())),
        "report_posts": clock.posts,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": _percentile(latencies, 0.95) if latencies else None,
        "max_s": max(latencies) if latencies else None,
    }
