"""SMTP pipeline, in-process ingestion and reporting, moto in process.

* Ingestion: `POST /commands/add-messages` (batches of 100) through the ASGI app (FastAPI TestClient).
* Pipeline: the sender handler, driven by the local SQS poller with Lambda-shaped events (batches of 10,
  one account), delivers the ingested messages to a plain aiosmtpd sink in this process. The messages are
  ingested 100 at a time between sending rounds, with the clock stopped, because moto's ReceiveMessage
  slows down with the depth of the queue (~0.8 s per call at 2,000 messages) - an artefact of the
  stand-in, not of SQS.
* Raw: `smtplib` sends the same messages, already serialized, over one connection to the same sink
  (median of three runs).
* Reporting: the reporter handler posts the outcomes to a local HTTP endpoint (batches of 100).

Every AWS call is timed with botocore hooks (no capacity accounting here: it would slow the calls), the
SMTP transaction and the MIME build are timed by wrapping them, so the handler's time splits into parts.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from bench.common import (
    RAW_RUNS,
    account,
    handlers_using,
    message,
    moto_in_process,
    note,
    quiet_handlers,
    rate,
    raw_smtplib,
    serialized_mails,
    settings_for,
)
from bench.counting import AwsCounter
from bench.lifecycle import operation_name, stream_poller, stream_reporter_handler
from functions.api.app import ApiContext, create_app
from mailproxy.logic import delivery, smtp
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import SqsPoller
from tests.conftest import API_TOKEN
from tests.report_server import report_endpoint
from tests.smtp_servers import SmtpSink

INGEST_BATCH = 100
BODY_BYTES = 1024


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        return timed


@contextlib.contextmanager
def _timing_smtp_and_mime(smtp_watch: _Stopwatch, mime_watch: _Stopwatch) -> Iterator[None]:
    """Times SmtpPool.send and the MIME build as the sender calls them (restored on exit)."""
    original_send, original_build = smtp.SmtpPool.send, delivery.build_message
    smtp.SmtpPool.send = smtp_watch.wrap(original_send)  # type: ignore[method-assign]
    delivery.build_message = mime_watch.wrap(original_build)
    try:
        yield
    finally:
        smtp.SmtpPool.send = original_send  # type: ignore[method-assign]
        delivery.build_message = original_build


class _TimedHandler:
    """Wraps a handler to time the function alone (what Lambda bills), apart from the poller around it."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self.durations: list[float] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result: dict[str, Any] = self._handler(event, context)
            return result
        finally:
            self.durations.append(time.perf_counter() - started)


def _ingest(client: TestClient, payloads: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(payloads), INGEST_BATCH):
        answer = client.post(
            "/commands/add-messages",
            json={"messages": payloads[start : start + INGEST_BATCH]},
            headers={"X-API-Token": API_TOKEN},
        )
        body = answer.json()
        if answer.status_code != 200 or body.get("rejected"):
            raise RuntimeError(f"ingestion failed: {answer.status_code} {str(body)[:300]}")
    return time.perf_counter() - started


def _drain(poller: SqsPoller, expected: int) -> int:
    handled = idle = 0
    while handled < expected and idle < 3:
        count = poller.poll_once()
        handled += count
        idle = 0 if count else idle + 1
    return handled


def run(messages: int) -> dict[str, Any]:
    """Ingest `messages`, deliver them with the sender handler, report them, then raw smtplib."""
    from functions.reporter import handler as reporter
    from functions.sender import handler as sender

    rng = random.Random(6)
    payloads = [message(f"pipe-{n:06d}", BODY_BYTES, rng) for n in range(messages)]
    mails = serialized_mails(payloads)
    counter = AwsCounter(capacity=False, namer=operation_name)
    smtp_watch, mime_watch = _Stopwatch(), _Stopwatch()
    with (
        moto_in_process() as resources,
        SmtpSink("plain") as sink,
        report_endpoint() as client_endpoint,
        quiet_handlers() as logs,
    ):
        settings = settings_for(resources, client_sync_url=client_endpoint.url)
        services = Services.create(settings, counter.session("function"))
        app = create_app(
            ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=lambda: None)
        )
        api = TestClient(app, raise_server_exceptions=False)
        if api.post("/account", json=account(sink.port), headers={"X-API-Token": API_TOKEN}).status_code != 200:
            raise RuntimeError("could not create the account")
        with handlers_using(services), _timing_smtp_and_mime(smtp_watch, mime_watch):
            timed_sender = _TimedHandler(sender.handler)
            esm_sqs = counter.session("esm").client("sqs")
            poller = SqsPoller(esm_sqs, [services.queues.urgent_url, services.queues.bulk_url], timed_sender)
            note(f"  pipeline: {messages} messages, ingested 100 at a time, then delivered in batches of 10")
            ingest_seconds = send_seconds = 0.0
            log_bytes_send = 0
            for start in range(0, messages, INGEST_BATCH):
                chunk = payloads[start : start + INGEST_BATCH]
                counter.phase = "ingest"
                ingest_seconds += _ingest(api, chunk)
                counter.phase = "send"
                before_logs = logs.bytes
                started = time.perf_counter()
                handled = _drain(poller, len(chunk))
                send_seconds += time.perf_counter() - started
                log_bytes_send += logs.bytes - before_logs
                if handled != len(chunk):
                    raise RuntimeError(f"the sender handled {handled} of {len(chunk)} records")
            counter.phase = "report"
            timed_reporter = _TimedHandler(reporter.handler)
            stream_handler = stream_reporter_handler()
            timed_stream = _TimedHandler(stream_handler) if stream_handler is not None else None
            stream = stream_poller(counter, services, timed_stream)
            report_started = time.perf_counter()
            if stream is not None:  # the outcomes' reports from the table's stream, as in AWS
                stream.drain()
            for _ in range(messages // 100 + 5):
                answer = timed_reporter({"source": "bench"}, LocalLambdaContext("gmp-reporter", timeout_seconds=900))
                if answer.get("stopped") == "done" and not answer.get("failures"):
                    break
            report_seconds = time.perf_counter() - report_started
            counter.phase = "done"
        delivered, connections, batches = len(sink.messages), sink.connections, poller.batches
        reported = len({item["id"] for item in client_endpoint.items()})
        if delivered != messages or reported != messages:
            raise RuntimeError(f"the sender delivered {delivered} and the reporter reported {reported} of {messages}")
        note(f"  raw smtplib: the same {messages} messages over one connection, {RAW_RUNS} times")
        raw_runs = []
        for _ in range(RAW_RUNS):
            sink.reset()
            raw_runs.append(raw_smtplib(sink.host, sink.port, mails))
            if len(sink.messages) != messages:
                raise RuntimeError(f"raw smtplib delivered {len(sink.messages)} of {messages}")
        raw_seconds = statistics.median(raw_runs)

    handler_seconds = sum(timed_sender.durations)
    report_handler_seconds = sum(timed_reporter.durations) + (sum(timed_stream.durations) if timed_stream else 0.0)
    sender_aws = counter.total(phase="send", actor="function")
    esm = counter.total(phase="send", actor="esm")
    ours, ours_wall, raw = rate(messages, handler_seconds), rate(messages, send_seconds), rate(messages, raw_seconds)
    per_message_ms = {
        "aws_calls": sender_aws.seconds / messages * 1000,
        "smtp": smtp_watch.seconds / messages * 1000,
        "mime": mime_watch.seconds / messages * 1000,
    }
    per_message_ms["other"] = handler_seconds / messages * 1000 - sum(per_message_ms.values())
    by_operation = {
        f"{service}.{operation}": {"calls": stats.calls, "ms_per_call": stats.seconds / stats.calls * 1000}
        for (phase, actor, service, operation), stats in counter.stats.items()
        if phase == "send" and actor == "function" and stats.calls
    }
    return {
        "messages": messages,
        "body_bytes": BODY_BYTES,
        "ingest": {
            "seconds": ingest_seconds,
            "msg_per_s": rate(messages, ingest_seconds),
            "batch": INGEST_BATCH,
            "ms_per_request": ingest_seconds / (messages / INGEST_BATCH) * 1000,
        },
        "ours": {
            "msg_per_s": ours,
            "handler_seconds": handler_seconds,
            "wall_msg_per_s": ours_wall,
            "wall_seconds": send_seconds,
            "esm_seconds": esm.seconds,
            "batches": batches,
            "records_per_batch": messages / batches if batches else 0.0,
            "handler_ms_per_batch_median": statistics.median(timed_sender.durations) * 1000,
            "handler_ms_per_batch_mean": handler_seconds / batches * 1000 if batches else 0.0,
            "handler_ms_per_message": per_message_ms,
            "moto_ms_per_call": by_operation,
            "log_bytes_per_message": log_bytes_send / messages,
        },
        "raw": {"seconds": raw_seconds, "msg_per_s": raw, "runs_msg_per_s": [rate(messages, r) for r in raw_runs]},
        "ratio": ours / raw if raw else 0.0,
        "ratio_wall": ours_wall / raw if raw else 0.0,
        "smtp_connections": connections,
        "connections_per_batch": connections / batches if batches else 0.0,
        "report": {
            "seconds": report_seconds,
            "handler_seconds": report_handler_seconds,
            "runs": len(timed_reporter.durations),
            "stream_batches": len(timed_stream.durations) if timed_stream else 0,
            "msg_per_s": rate(messages, report_handler_seconds),
            "ms_per_100_reports": report_handler_seconds / messages * 100 * 1000,
        },
    }
