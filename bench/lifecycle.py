"""AWS requests and DynamoDB capacity units over the whole life of messages, moto in process.

Each message is posted to the api function (Mangum handler, API Gateway REST events), delivered by the
sender function (driven by the local SQS poller, the stand-in for Lambda's event source mapping, whose
calls are counted apart as actor "esm") to an aiosmtpd sink with AUTH, and reported to a local HTTP
endpoint: by the stream reporter from the table's stream when the tree has one (the local stream poller's
reads count as "esm" too: free in AWS), then by the scheduled reporter for the rest. Every DynamoDB, SQS
and S3 call is counted with botocore hooks; SMTP password decryptions (KMS Decrypt calls in AWS, local
Fernet here) are counted by wrapping the secret box, once per distinct ciphertext as the KMS box caches
them per container.
"""

from __future__ import annotations

import importlib.util
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import boto3

from bench.common import handlers_using, message, moto_in_process, quiet_handlers, rest_event, settings_for
from bench.counting import AwsCounter
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import SqsPoller
from tests.conftest import API_TOKEN
from tests.report_server import report_endpoint
from tests.smtp_servers import SmtpSink

PHASES = ("ingest", "send", "report")


@dataclass(frozen=True)
class Scenario:
    name: str
    messages: int
    body_bytes: int
    attachment_bytes: int = 0
    per_request: int = 100  # messages per add-messages call
    trickle: bool = False  # each message posted, sent and reported on its own


SCENARIOS = {
    "2KB": Scenario("2KB", messages=100, body_bytes=2048),
    # ~200 KB of JSON: a 2 KB body and a ~148 KB attachment (base64: ~197 KB); 25 per request keeps a call
    # under Lambda's 6 MB request payload limit.
    "200KB": Scenario("200KB", messages=50, body_bytes=2048, attachment_bytes=148_000, per_request=25),
    "2KB-alone": Scenario("2KB-alone", messages=10, body_bytes=2048, per_request=1, trickle=True),
}


def operation_name(operation: str, params: dict[str, Any]) -> str:
    """Tells apart the UpdateItem calls of the code (claim, record, mark_reported, quota counters)."""
    if operation != "UpdateItem":
        return operation
    expression = params.get("UpdateExpression", "")
    for marker, name in (
        ("lease_until = :lease", "claim"),
        ("outcomes = if_not_exists", "record"),
        ("rpt_pk = if_not_exists(rpt_pk", "outbox_put"),
        ("reported_ts", "mark_reported"),
        ("ADD sends", "rate_limit"),
        ("due_ts = :until", "postpone"),
    ):
        if marker in expression:
            return f"UpdateItem({name})"
    # an update this list does not know yet: named by the first attribute it sets or adds
    names = params.get("ExpressionAttributeNames", {})
    first = next(iter(expression.replace(",", " ").split()[1:2]), "?")
    return f"UpdateItem({names.get(first, first)})"


class _CountingBox:
    """Counts the KMS Decrypt calls SMTP passwords cost in AWS: one per distinct ciphertext, as KmsSecretBox
    keeps decrypted values for the life of its container (one warm container here)."""

    def __init__(self, box: Any) -> None:
        self._box = box
        self._seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    @property
    def decrypts(self) -> int:
        return len(self._seen)

    def encrypt(self, plaintext: str, context: dict[str, str]) -> str:
        result: str = self._box.encrypt(plaintext, context)
        return result

    def decrypt(self, ciphertext: str, context: dict[str, str]) -> str:
        self._seen.add((ciphertext, tuple(sorted(context.items()))))
        result: str = self._box.decrypt(ciphertext, context)
        return result


def _post(api_handler: Any, body: dict[str, Any], path: str = "/commands/add-messages") -> dict[str, Any]:
    answer = api_handler(rest_event("POST", path, body, token=API_TOKEN), LocalLambdaContext("gmp-api"))
    if answer["statusCode"] != 200:
        raise RuntimeError(f"api answered {answer['statusCode']}: {answer['body'][:300]}")
    parsed: dict[str, Any] = json.loads(answer["body"])
    return parsed


class _Timed:
    """Times a handler (the function alone, as Lambda bills it) and counts its invocations."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self.seconds = 0.0
        self.invocations = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._handler(event, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.invocations += 1


def run_scenario(scenario: Scenario, *, capacity: bool = True) -> dict[str, Any]:
    """One scenario; `capacity=False` records calls and handler durations only (no extra reads)."""
    from functions.api import handler as api
    from functions.reporter import handler as reporter
    from functions.sender import handler as sender

    rng = random.Random(66)
    payloads = [
        message(f"{scenario.name}-{n:05d}", scenario.body_bytes, rng, scenario.attachment_bytes)
        for n in range(scenario.messages)
    ]
    payload_bytes = sum(len(json.dumps(p)) for p in payloads) / len(payloads)
    counter = AwsCounter(capacity=capacity, namer=operation_name)
    timed = {"api": _Timed(api.handler), "sender": _Timed(sender.handler), "reporter": _Timed(reporter.handler)}
    stream_handler = stream_reporter_handler()
    if stream_handler is not None:
        timed["stream_reporter"] = _Timed(stream_handler)
    with (
        moto_in_process() as resources,
        SmtpSink("plain", auth=("bench", "bench-password")) as sink,
        report_endpoint() as client,
        quiet_handlers() as logs,
    ):
        settings = settings_for(resources, client_sync_url=client.url, client_sync_token="bench-sync-token")
        services = Services.create(settings, counter.session("function"))
        box = _CountingBox(services.accounts._secrets())
        services.accounts._secrets = lambda: box
        esm_sqs = counter.session("esm").client("sqs")
        with handlers_using(services):
            counter.phase = "setup"
            account = {"id": "bench", "host": sink.host, "port": sink.port, "user": "bench"}
            _post(api.handler, {**account, "password": "bench-password", "use_tls": False}, "/account")
            poller = SqsPoller(esm_sqs, [services.queues.urgent_url, services.queues.bulk_url], timed["sender"])
            stream = stream_poller(counter, services, timed.get("stream_reporter"))
            log_bytes = {phase: 0 for phase in PHASES}
            groups = [payloads[i : i + scenario.per_request] for i in range(0, len(payloads), scenario.per_request)]
            rounds = groups if scenario.trickle else [payloads]
            for round_payloads in rounds:
                for phase, step in (
                    ("ingest", lambda p=round_payloads: _ingest(timed["api"], p, scenario.per_request)),
                    ("send", lambda p=round_payloads: _send(poller, len(p))),
                    ("report", lambda: _report(timed["reporter"], stream)),
                ):
                    counter.phase = phase
                    before = logs.bytes
                    step()
                    log_bytes[phase] += logs.bytes - before
            counter.phase = "done"
        delivered = len(sink.messages)
        smtp_bytes = sum(len(m.data) for m in sink.messages) / max(1, delivered)
        reported = {item["id"] for item in client.items() if item["sent_ts"]}
        decrypts = box.decrypts
        stored = _stored_bytes(resources.messages_table) if capacity else {}
    if delivered != scenario.messages or len(reported) != scenario.messages:
        raise RuntimeError(f"{scenario.name}: {delivered} delivered, {len(reported)} reported of {scenario.messages}")
    result = summarize(counter, scenario, payload_bytes, decrypts, log_bytes, poller.batches)
    n = scenario.messages
    result["functions"] = {
        name: {
            "invocations_per_message": t.invocations / n,
            "ms_per_invocation": t.seconds / t.invocations * 1000 if t.invocations else 0.0,
            "ms_per_message": t.seconds / n * 1000,
        }
        for name, t in timed.items()
    }
    result["smtp_bytes_per_message"] = smtp_bytes
    sender_calls = counter.total(phase="send", actor="function")
    # the sender runs in the VPC: its AWS calls leave through the NAT gateway (no gateway endpoints);
    # bodies as measured, plus ~1 KB of HTTP/TLS headers and framing per call (an estimate)
    result["sender_aws_bytes_per_message"] = (
        sender_calls.request_bytes + sender_calls.response_bytes + 1024 * sender_calls.calls
    ) / n
    result["dynamodb_stored_bytes_per_message"] = {k: v / n for k, v in stored.items()}
    return result


def _stored_bytes(table: str) -> dict[str, float]:
    """What the messages table holds once every message was sent and reported (before TTL removes it):
    item bytes + 100 bytes of overhead per item and per index entry, as DynamoDB bills storage."""
    from bench.counting import _Index, _Table, item_size

    db = boto3.session.Session().client("dynamodb")
    description = db.describe_table(TableName=table)["Table"]
    model = _Table(
        tuple(k["AttributeName"] for k in description["KeySchema"]),
        [
            _Index(
                g["IndexName"],
                tuple(k["AttributeName"] for k in g["KeySchema"]),
                g["Projection"]["ProjectionType"],
                tuple(g["Projection"].get("NonKeyAttributes", [])),
            )
            for g in description.get("GlobalSecondaryIndexes", [])
        ],
    )
    totals = {"table": 0.0, "indexes": 0.0}
    for page in db.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            totals["table"] += item_size(item) + 100
            for index in model.indexes:
                entry = model.entry(index, item)
                if entry is not None:
                    totals["indexes"] += item_size(entry) + 100
    return totals


def _ingest(api_handler: Any, payloads: list[dict[str, Any]], per_request: int) -> None:
    for start in range(0, len(payloads), per_request):
        answer = _post(api_handler, {"messages": payloads[start : start + per_request]})
        if answer.get("rejected"):
            raise RuntimeError(f"rejected: {answer['rejected'][:3]}")


def _send(poller: SqsPoller, expected: int) -> None:
    handled = 0
    for _ in range(expected + 5):
        if handled >= expected:
            return
        handled += poller.poll_once()
    raise RuntimeError(f"the sender handled {handled} of {expected} records")


def stream_reporter_handler() -> Any:
    """The stream reporter's Lambda handler when this tree has one (reports from the table's stream)."""
    if importlib.util.find_spec("functions.stream_reporter") is None:
        return None
    from functions.stream_reporter import handler

    return handler.handler


def stream_poller(counter: AwsCounter, services: Services, handler: Any) -> Any:
    """The stand-in for the stream's event source mapping (its reads counted as actor "esm": free in AWS)."""
    if handler is None:
        return None
    from mailproxy_local.stream_poller import StreamPoller

    table = services.dynamodb.describe_table(TableName=services.settings.messages_table)["Table"]
    # moto in process answers DynamoDB Streams at its classic AWS address only (tests/streams.py)
    region = services.dynamodb.meta.region_name
    endpoint = f"https://streams.dynamodb.{region}.amazonaws.com"
    streams = counter.session("esm").client("dynamodbstreams", endpoint_url=endpoint)
    return StreamPoller(streams, table["LatestStreamArn"], handler, starting_position="TRIM_HORIZON")


def _report(handler: Any, stream: Any) -> None:
    """The stream's reports first (seconds after the outcomes, in AWS), then the scheduled run for the rest."""
    if stream is not None:
        stream.drain()
    for _ in range(5):
        answer = handler({"source": "bench"}, LocalLambdaContext("gmp-reporter"))
        if answer.get("stopped") == "done" and not answer.get("failures"):
            return
        time.sleep(0.1)


def summarize(
    counter: AwsCounter,
    scenario: Scenario,
    payload_bytes: float,
    decrypts: int,
    log_bytes: dict[str, int],
    sender_batches: int,
) -> dict[str, Any]:
    n = scenario.messages
    per_phase: dict[str, Any] = {}
    for phase in PHASES:
        dynamodb = counter.total(phase=phase, service="dynamodb")
        sqs_function = counter.total(phase=phase, actor="function", service="sqs")
        sqs_esm = counter.total(phase=phase, actor="esm", service="sqs")
        per_phase[phase] = {
            "dynamodb_calls": dynamodb.calls / n,
            "dynamodb_item_writes": dynamodb.items_written / n,
            "dynamodb_index_writes": dynamodb.index_writes / n,
            "wru_table": dynamodb.wru_table / n,
            "wru_index": dynamodb.wru_index / n,
            "rru": dynamodb.rru / n,
            "sqs_requests_function": sqs_function.billed_requests / n,
            "sqs_requests_esm": (sqs_esm.billed_requests - sqs_esm.empty_receives) / n,
            "sqs_empty_receives_esm": sqs_esm.empty_receives,
            "s3_put": counter.calls("PutObject", phase=phase) / n,
            "s3_get": counter.calls("GetObject", phase=phase) / n,
            "log_bytes": log_bytes[phase] / n,
        }
    everything = {phase: counter.total(phase=phase) for phase in PHASES}
    dynamodb_all = [counter.total(phase=p, service="dynamodb") for p in PHASES]
    s3_bytes = sum(counter.total(phase=p, service="s3").bytes_sent for p in PHASES)
    total = {
        key: sum(per_phase[p][key] for p in PHASES) for key in per_phase["ingest"] if key != "sqs_empty_receives_esm"
    }
    total["sqs_requests"] = total["sqs_requests_function"] + total["sqs_requests_esm"]
    total["wru"] = total["wru_table"] + total["wru_index"]
    total["kms_decrypts"] = decrypts / n
    total["s3_bytes_stored"] = s3_bytes / n
    total["max_status_wru"] = max(d.max_status_wru for d in dynamodb_all)
    total["aws_calls"] = sum(everything[p].calls - everything[p].empty_receives for p in PHASES) / n
    index_detail: dict[str, float] = {}
    for d in dynamodb_all:
        for name, units in d.index_detail.items():
            index_detail[name] = index_detail.get(name, 0) + units / n
    total["wru_index_by_index"] = index_detail
    operations = []
    for row in counter.table(list(PHASES)):
        row = {k: v for k, v in row.items() if k not in ("seconds",)}
        for key in ("calls", "billed_requests", "items_written", "items_read", "wru_table", "wru_index", "rru"):
            row[f"{key}_per_message"] = row[key] / n
        operations.append(row)
    return {
        "scenario": scenario.__dict__,
        "payload_bytes": payload_bytes,
        "sender_batches": sender_batches,
        "per_message": total,
        "per_phase": per_phase,
        "operations": operations,
    }


def run(names: list[str] | None = None, scale: float = 1.0) -> dict[str, Any]:
    """Each scenario twice: counting capacity units, then timing the handlers without the extra reads."""
    results = {}
    for name in names or list(SCENARIOS):
        base = SCENARIOS[name]
        scenario = Scenario(**{**base.__dict__, "messages": max(1, int(base.messages * scale))})
        counted = run_scenario(scenario, capacity=True)
        counted["functions"] = run_scenario(scenario, capacity=False)["functions"]
        results[name] = counted
    return results


def count_one_message() -> dict[str, Any]:
    """One 2 KB message through its whole life (the smoke test)."""
    return run_scenario(Scenario("one", messages=1, body_bytes=2048, per_request=1))
