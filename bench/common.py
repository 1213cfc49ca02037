"""What every benchmark needs: a clean AWS environment, moto in process, quiet handlers, test payloads."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import random
import smtplib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3

from mailproxy.config import Settings
from mailproxy.dal.schema import LocalResources, create_resources
from mailproxy.services import Services
from tests.conftest import make_settings

REGION = "us-east-1"
RAW_RUNS = 3  # raw smtplib is short: the median of three runs is less at the mercy of a busy machine
_WORDS = [
    *("invoice", "order", "shipment", "account", "payment", "reminder", "meeting", "report", "update"),
    *("delivery", "customer", "service", "please", "find", "attached", "details", "below", "thank", "you"),
    *("regards", "team", "schedule", "confirm", "review", "request"),
]


class CountingSink(io.TextIOBase):
    """A write-only text stream that throws text away and counts the bytes (for log volume)."""

    def __init__(self) -> None:
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.bytes += len(text.encode("utf-8", "replace"))
        return len(text)


@contextlib.contextmanager
def quiet_handlers() -> Iterator[CountingSink]:
    """Structured logs and EMF metrics the handlers print go to a counting sink (their cost stays)."""
    from mailproxy.observability import logger

    sink = CountingSink()
    handler = logger.registered_handler
    stream_handler = handler if isinstance(handler, logging.StreamHandler) else None
    original = stream_handler.setStream(sink) if stream_handler is not None else None
    try:
        with contextlib.redirect_stdout(sink):
            yield sink
    finally:
        if stream_handler is not None and original is not None:
            stream_handler.setStream(original)


@contextlib.contextmanager
def clean_environment(**extra: str) -> Iterator[None]:
    """No GMP_/AWS_ variables from outside; fake credentials; restored on exit."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("GMP_", "AWS_")):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        **extra,
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def moto_in_process() -> Iterator[LocalResources]:
    """moto in this process (botocore's real request path, no HTTP) with the tables, queues and bucket."""
    from moto import mock_aws

    with clean_environment(), mock_aws():
        yield create_resources(boto3.session.Session())


def settings_for(resources: LocalResources, **overrides: Any) -> Settings:
    return make_settings(resources, **overrides)


def export_settings(settings: Settings) -> None:
    """Put the settings in the environment, as a Lambda function's configuration, and drop cached copies."""
    from mailproxy.config import settings as cached_settings

    for name, value in settings.model_dump(exclude_none=True).items():
        plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        os.environ[f"GMP_{name.upper()}"] = str(plain).lower() if isinstance(plain, bool) else str(plain)
    cached_settings.cache_clear()


@contextlib.contextmanager
def handlers_using(services: Services) -> Iterator[None]:
    """The three Lambda handler modules, as deployed, but creating these services (e.g. on a hooked boto3
    session) instead of their own; their settings come from the environment, as in Lambda."""
    from mailproxy import runtime
    from mailproxy.config import settings as cached_settings

    class _These:
        @staticmethod
        def create(settings: Settings, session: Any = None) -> Services:
            return services

    saved = vars(runtime)["Services"]
    export_settings(services.settings)
    vars(runtime)["Services"] = _These
    runtime.services.cache_clear()
    try:
        yield
    finally:
        vars(runtime)["Services"] = saved
        runtime.services.cache_clear()
        cached_settings.cache_clear()


def rest_event(method: str, path: str, body: Any = None, token: str = "") -> dict[str, Any]:
    """An API Gateway REST (proxy) event, as the api function receives it."""
    headers = {"Host": "bench.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json"}
    if token:
        headers["X-API-Token"] = token
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "bench-request",
            "accountId": "123456789012",
            "identity": {"sourceIp": "192.0.2.10", "userAgent": "bench"},
            "apiId": "bench",
            "protocol": "HTTP/1.1",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def filler_text(size: int, rng: random.Random) -> str:
    """Readable-looking text of about `size` bytes (compresses like real mail bodies, ~3:1)."""
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        if rng.random() < 0.15:
            word = f"{word}-{rng.randint(1000, 99999)}"
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def message(message_id: str, body_bytes: int, rng: random.Random, attachment_bytes: int = 0) -> dict[str, Any]:
    """An add-messages payload; `attachment_bytes` of random (incompressible) content, like a PDF."""
    payload: dict[str, Any] = {
        "id": message_id,
        "account_id": "bench",
        "from": "sender@example.com",
        "to": ["rcpt@example.com"],
        "subject": f"Benchmark {message_id}",
        "body": filler_text(body_bytes, rng),
    }
    if attachment_bytes:
        payload["attachments"] = [
            {
                "filename": "report.pdf",
                "content": base64.b64encode(rng.randbytes(attachment_bytes)).decode(),
                "mime_type": "application/pdf",
            }
        ]
    return payload


def account(sink_port: int) -> dict[str, Any]:
    return {"id": "bench", "host": "127.0.0.1", "port": sink_port, "use_tls": False, "timeout": 10}


@dataclass
class Timer:
    seconds: float = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def note(text: str) -> None:
    """Progress on stderr, so that stdout carries only the table."""
    print(text, file=sys.stderr, flush=True)


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def serialized_mails(payloads: list[dict[str, Any]]) -> list[tuple[str, list[str], bytes]]:
    """The add-messages payloads as raw smtplib sends them: envelope and RFC 5322 bytes, built beforehand."""
    from mailproxy.logic.mime import OutgoingMail, build_message

    mails = []
    for payload in payloads:
        mail = OutgoingMail(
            from_addr=payload["from"], to=payload["to"], subject=payload["subject"], body=payload["body"]
        )
        built, envelope = build_message(mail, message_id=f"<{payload['id']}@example.com>")
        mails.append((envelope.sender, list(envelope.recipients), built.as_bytes()))
    return mails


def raw_smtplib(host: str, port: int, mails: list[tuple[str, list[str], bytes]]) -> float:
    """Seconds raw smtplib takes to send `mails` over one connection: the yardstick of the SMTP figures."""
    started = time.perf_counter()
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo()
        for sender, recipients, data in mails:
            client.sendmail(sender, recipients, data)
    return time.perf_counter() - started
