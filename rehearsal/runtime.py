"""Run a function's handler in-process the way Lambda runs it: its own environment, its own credentials, its
own modules (a cold start on the first invocation, warm after), and Lambda-shaped events and context.

Each function gets a `Container`. While one is active, ``os.environ`` is exactly that function's environment
(the runtime's variables, the role's credentials, the template's variables), and the modules of the
project and of Powertools (``functions``, ``mailproxy``, ``aws_lambda_powertools``) are that container's own,
so module-level caches (settings, clients, secrets) never leak from one function into another. Everything
is put back when the container is left.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO

import boto3

PLAYED_REST_API_ID = "rehearsal"  # the REST API's id in the events the rehearsal plays as API Gateway
ISOLATED_PACKAGES = ("functions", "mailproxy", "aws_lambda_powertools", "aws_xray_sdk")


def _isolated(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ISOLATED_PACKAGES)


class RoutedStream(io.TextIOBase):
    """sys.stdout/sys.stderr while the rehearsal runs: each function's output goes to its own log."""

    def __init__(self, fallback: TextIO) -> None:
        self.fallback = fallback
        self.current: str | None = None
        self.logs: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.logs.setdefault(self.current or "rehearsal", []).append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def tail(self, name: str, lines: int = 30) -> str:
        with self._lock:
            text = "".join(self.logs.get(name, []))
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    log_group_name: str = ""
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = "rehearsal"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass
class Container:
    name: str
    handler_path: str
    environment: dict[str, str]
    function_arn: str
    memory: int
    timeout: int
    stream: RoutedStream
    modules: dict[str, ModuleType] = field(default_factory=dict)
    default_session: Any = None
    handler: Callable[..., Any] | None = None
    invocations: int = 0

    @contextmanager
    def active(self) -> Iterator[None]:
        saved_modules = {k: sys.modules.pop(k) for k in list(sys.modules) if _isolated(k)}
        sys.modules.update(self.modules)
        saved_environment = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.environment)
        saved_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, self.default_session
        saved_current, self.stream.current = self.stream.current, self.name
        try:
            yield
        finally:
            self.stream.current = saved_current
            self.default_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, saved_session
            os.environ.clear()
            os.environ.update(saved_environment)
            self.modules = {k: sys.modules.pop(k) for k in list(sys.modules) if _isolated(k)}
            sys.modules.update(saved_modules)

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.environment.get("AWS_LAMBDA_FUNCTION_NAME", self.name),
            memory_limit_in_mb=self.memory,
            invoked_function_arn=self.function_arn,
            timeout_seconds=self.timeout,
            log_group_name=self.environment.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        with self.active():
            if self.handler is None:  # cold start: import the handler module under this environment
                module_name, attribute = self.handler_path.rsplit(".", 1)
                module = importlib.import_module(module_name)
                self.handler = getattr(module, attribute)
            self.invocations += 1
            return self.handler(event, self.context())


def lambda_runtime_environment(
    *, function_name: str, region: str, memory: int, handler: str, log_group: str, credentials: dict[str, str]
) -> dict[str, str]:
    """The variables Lambda's Python runtime sets (those the code could read), with the role's credentials."""
    return {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": "rehearsal",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "_HANDLER": handler,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


# -- events -------------------------------------------------------------------------------------------------


def api_gateway_event(
    method: str,
    path: str,
    *,
    stage: str,
    region: str,
    account: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST API (v1) proxy-integration event, as API Gateway sends it to the {proxy+} resource."""
    domain = f"{PLAYED_REST_API_ID}.execute-api.{region}.amazonaws.com"
    all_headers = {"Host": domain, "Content-Type": "application/json", "User-Agent": "rehearsal", **(headers or {})}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "accountId": account,
            "identity": {"sourceIp": "192.0.2.10", "userAgent": "rehearsal"},
            "apiId": "rehearsal",
            "protocol": "HTTP/1.1",
            "domainName": domain,
            "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def sqs_event(messages: list[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The event an SQS event source mapping hands the function, from ReceiveMessage's answer."""
    records = []
    for message in messages:
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value.get("DataType"),
                    }
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def scheduled_event(*, rule_arn: str, region: str, account: str) -> dict[str, Any]:
    """An EventBridge scheduled event (what a rate(...)/cron(...) rule sends its target)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }
