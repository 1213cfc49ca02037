"""Shared machinery of the reliability suite: a virtual clock for the code under test, a "world" that
drives the real handlers (API ingestion, the sender through the SQS poller, the reporter) against moto,
real SMTP sinks and a real report endpoint, the end-of-scenario invariants, and fault injection at the
botocore level."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers
import botocore.retries.standard
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from functions.reporter import handler as reporter_handler
from functions.sender import handler as sender_handler
from functions.stream_reporter import handler as stream_reporter_handler
from mailproxy.logic.delivery import BatchDelivery
from mailproxy.logic.ingest import add_messages
from mailproxy.logic.reports import Reporter
from mailproxy.logic.stream_reports import StreamReporter
from mailproxy.models import AddMessagesRequest
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import SqsPoller
from mailproxy_local.stream_poller import StreamPoller
from tests.report_server import ReportEndpoint
from tests.smtp_servers import SmtpSink
from tests.streams import reporting_to, stream_poller

FINAL = ("sent", "error")


# --------------------------------------------------------------------------------------------- time


class VirtualClock:
    """The sender's and the reporter's clock: real time plus an offset the test moves forward.

    Installed through the `clock` keyword the domain classes already take (BatchDelivery, Reporter), so
    the real handlers run unchanged; only "now" moves. SQS delays and visibility stay in real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def install_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    clock = VirtualClock()
    for cls in (BatchDelivery, Reporter, StreamReporter):
        defaults = cls.__init__.__kwdefaults__
        assert defaults is not None and "clock" in defaults, f"{cls.__name__} no longer takes a clock"
        monkeypatch.setitem(defaults, "clock", clock)
    return clock


# --------------------------------------------------------------------------------------------- world


@dataclass
class World:
    """One deployment's worth of moving parts, driven step by step by the test."""

    services: Services
    clock: VirtualClock
    endpoint: ReportEndpoint
    sinks: list[SmtpSink] = field(default_factory=list)
    report_runs: list[dict[str, Any]] = field(default_factory=list)
    _poller: SqsPoller | None = None
    _stream: StreamPoller | None = None
    _stream_handler: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None

    @property
    def poller(self) -> SqsPoller:
        if self._poller is None:
            urls = [self.services.queues.urgent_url, self.services.queues.bulk_url]
            self._poller = SqsPoller(self.services.sqs, urls, sender_handler.handler)
        return self._poller

    # -- the three functions

    def submit(self, *messages: dict[str, Any]) -> None:
        answer = add_messages(
            self.services, AddMessagesRequest(messages=list(messages)), now_ms=int(time.time() * 1000)
        )
        assert answer.rejected == [], answer.rejected

    def drain(self, rounds: int = 100) -> int:
        """Run the sender (as the SQS event source mapping would) until no record is visible."""
        handled = 0
        for _ in range(rounds):
            count = self.poller.poll_once()
            if not count:
                break
            handled += count
        return handled

    @property
    def stream(self) -> StreamPoller:
        if self._stream is None:
            self._stream = stream_poller(
                self.services,
                lambda event, context: (self._stream_handler or stream_reporter_handler.handler)(event, context),
            )
        return self._stream

    def stream_to_outbox(self) -> None:
        """The stream's outcomes so far go to the outbox, as when no client can be reached: where the scheduled
        reporter's cases start. Through the world's own stream position, so that no record is read twice."""
        self._stream_handler = reporting_to(self.services, None)
        try:
            self.stream.drain()
        finally:
            self._stream_handler = None

    def report(self) -> dict[str, Any]:
        """The outcomes on the table's stream through the real stream reporter (as its event source mapping
        would), then one scheduled reporter run (sweep + the outbox) through the real handler."""
        self.stream.drain()
        answer: dict[str, Any] = reporter_handler.handler({"source": "test"}, LocalLambdaContext("gmp-reporter"))
        self.report_runs.append(answer)
        return answer

    # -- reading state

    def status(self, message_id: str) -> dict[str, Any]:
        item = self.services.messages.get("default", message_id)
        assert item is not None, f"{message_id} is not stored"
        return item

    def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        return {i: self.status(i)["status"] for i in ids}

    def settle(self, ids: list[str], *, step: float = 120.0, rounds: int = 40) -> int:
        """Drain, report, let time pass (virtually), until every message has ended and been reported.
        Returns the number of rounds it took; fails if it does not converge."""
        for round_number in range(1, rounds + 1):
            self.drain()
            self.report()
            states = self.statuses(ids)
            if all(s in FINAL for s in states.values()) and not self.services.outbox.pending(1):
                return round_number
            self.clock.advance(step)
        raise AssertionError(f"not settled after {rounds} rounds: {Counter(self.statuses(ids).values())}")

    # -- SMTP transactions, by the Message-ID the proxy gave each message

    def transactions(self) -> Counter[str]:
        return Counter(str(m.message["Message-ID"]) for sink in self.sinks for m in sink.messages)

    def final_reports(self) -> Counter[str]:
        return Counter(i["id"] for i in self.endpoint.items() if i["sent_ts"] or i["error_ts"])


def assert_each_once(world: World, ids: list[str], *, errors: Iterable[str] = ()) -> None:
    """The guarantees every scenario ends with:
    every message is `sent` (exactly one SMTP transaction carrying its Message-ID) or `error` with a reason
    (and no transaction), no stray transaction reached a server, every outcome was reported exactly once
    as final (acknowledged by the client), and nothing is left in the report outbox."""
    expected_errors = set(errors)
    transactions = world.transactions()
    finals = world.final_reports()
    reported = {i["id"]: i for i in world.endpoint.items() if i["sent_ts"] or i["error_ts"]}
    headers = set()
    for message_id in ids:
        item = world.status(message_id)
        header = item["message_id_header"]
        headers.add(header)
        if message_id in expected_errors:
            assert item["status"] == "error", f"{message_id}: {item['status']}, expected error"
        if item["status"] == "sent":
            assert transactions[header] == 1, f"{message_id}: {transactions[header]} SMTP transactions"
            assert reported[message_id]["sent_ts"] == item["sent_ts"]
        else:
            assert item["status"] == "error", f"{message_id} did not end: {item['status']}"
            assert item.get("error"), f"{message_id}: error without a reason"
            assert transactions[header] == 0, f"{message_id}: error, yet {transactions[header]} transactions"
            assert reported[message_id]["error"] == item["error"]
        assert finals[message_id] == 1, f"{message_id}: {finals[message_id]} final reports"
    strays = set(transactions) - headers
    assert not strays, f"transactions for unknown messages: {strays}"
    assert world.services.outbox.pending(10) == []


# --------------------------------------------------------------------------------------------- faults


class _Body:
    """A raw body for botocore's AWSResponse."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._data


def error_response(
    request: AWSPreparedRequest, status: int, code: str, message: str, *, sqs: bool = False
) -> AWSResponse:
    """An AWS JSON-protocol error answer, as DynamoDB or SQS send it."""
    namespace = "com.amazonaws.sqs" if sqs else "com.amazonaws.dynamodb.v20120810"
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "fault-injected"}
    if sqs:
        headers["x-amzn-query-error"] = f"{code};Sender"
    body = json.dumps({"__type": f"{namespace}#{code}", "message": message}).encode()
    return AWSResponse(request.url, status, headers, _Body(body))  # type: ignore[arg-type]


def json_response(request: AWSPreparedRequest, payload: dict[str, Any]) -> AWSResponse:
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "fault-injected"}
    return AWSResponse(request.url, 200, headers, _Body(json.dumps(payload).encode()))  # type: ignore[arg-type]


Responder = Callable[[AWSPreparedRequest], AWSResponse | None]


@dataclass
class Fault:
    """Answer `times` requests of one operation (optionally only those whose JSON body satisfies
    `when`) with `respond(request)` instead of sending them."""

    event: str  # e.g. "dynamodb.UpdateItem"
    respond: Responder
    times: int | None = 1  # None: until removed
    when: Callable[[dict[str, Any]], bool] | None = None
    hits: int = 0


class BotocoreFaults:
    """Fault injection in botocore's `before-send` step: every client created while installed gets the
    hook (like moto's own stubber), so the code under test keeps its own clients and its own retry
    configuration. A response returned here replaces the HTTP exchange and then goes through botocore's
    parsing and its retry handler like any real answer; an exception raised here is a network failure.

    The retry handler's backoff sleeps are divided by `speedup`, so that exhausting six attempts takes
    milliseconds; the retry decisions (which errors, how many attempts, the retry quota) are botocore's."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, speedup: float = 100.0) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.attempts: Counter[str] = Counter()  # every attempt that reached the wire (or a fault)
        self.retry_delays: list[float] = []
        monkeypatch.setattr(
            botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, ("before-send", self)]
        )
        original = botocore.retries.standard.ExponentialBackoff.delay_amount

        def faster(backoff: Any, context: Any) -> float:
            delay = float(original(backoff, context))
            self.retry_delays.append(delay)
            return delay / speedup

        monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", faster)

    def add(
        self,
        event: str,
        respond: Responder,
        *,
        times: int | None = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Fault:
        fault = Fault(event, respond, times, when)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __call__(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.removeprefix("before-send.")
        self.attempts[operation] += 1
        with self._lock:
            fault = next((f for f in self._faults if self._applies(f, operation, request)), None)
            if fault is not None:
                fault.hits += 1
        return None if fault is None else fault.respond(request)

    @staticmethod
    def _applies(fault: Fault, operation: str, request: AWSPreparedRequest) -> bool:
        if fault.event != operation or (fault.times is not None and fault.hits >= fault.times):
            return False
        if fault.when is None:
            return True
        raw = request.body if isinstance(request.body, str | bytes | bytearray) else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return False
        return bool(fault.when(body))


def throttled(code: str = "ProvisionedThroughputExceededException") -> Responder:
    return lambda request: error_response(request, 400, code, "Rate of requests exceeds the allowed throughput.")


def sqs_error(code: str = "RequestThrottled", status: int = 400) -> Responder:
    return lambda request: error_response(request, status, code, "injected SQS failure", sqs=True)
