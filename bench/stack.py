"""The local stack (`python -m mailproxy_local.runner`, what `make run` starts) over HTTP.

* Ingestion: `POST /commands/add-messages` in batches of 100 with no sender running (`--senders 0`), so
  the moto server serves the API alone.
* End to end: N messages posted in batches of 100, one request after the other, delivered by the stack's
  sender pollers to an aiosmtpd sink in this process; the clock runs from the first POST to the last
  message received by the sink.
"""

from __future__ import annotations

import random
import time
from typing import Any

import requests

from bench.common import account, message, note, rate
from tests.e2e.stack import LocalStack, local_stack
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


def end_to_end(messages: int, senders: int) -> dict[str, Any]:
    rng = random.Random(8)
    payloads = [message(f"e2e-{n:06d}", BODY_BYTES, rng) for n in range(messages)]
    with (
        SmtpSink("plain") as sink,
        local_stack(_environment(), senders=senders) as stack,
        requests.Session() as session,
    ):
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
    return {
        "messages": messages,
        "senders": senders,
        "batch": BATCH,
        "wall_seconds": wall,
        "msg_per_s": rate(received, wall),
        "post_seconds": post_seconds,
        "received": received,
        "statuses": statuses,
        "errors": errors,
        "smtp_connections": connections,
    }
