"""Record every AWS call made in this process: who made it, the IAM action, the resource ARN(s), the outcome.

Handlers are added to botocore's built-in handler list, so every botocore session created afterwards (the
functions create theirs at cold start) carries them. The caller is identified by the access key that signs
the request: each function runs under its own role's credentials, so a call is attributed to the function
even when it is made from a thread the handler started.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import botocore.handlers

# Operations authorized by an IAM action of another name.
ACTION_OF: dict[tuple[str, str], str] = {
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeAsync"): "lambda:InvokeFunction",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "CopyObject"): "s3:PutObject",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
_UUID = re.compile(rb"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Call:
    principal: str  # the function's name, or "rehearsal" for the rehearsal's own set-up and checks
    origin: str  # "code", or who else uses the role (e.g. "event source mapping")
    service: str
    operation: str
    action: str
    resources: tuple[str, ...]
    error: str | None  # the error code AWS (moto) answered, if any
    extra: tuple[tuple[str, str], ...] = ()  # further (action, resource) the call needs (CopyObject's source)

    @property
    def permissions(self) -> tuple[tuple[str, str], ...]:
        """Every (IAM action, resource ARN) the call needs."""
        return tuple((self.action, resource) for resource in self.resources) + self.extra


def extra_permissions(prefix: str, operation: str, params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """What some S3 calls need beyond their own action: the copy's source, the tags set with an object."""
    if prefix != "s3" or "Bucket" not in params:
        return ()
    extra: list[tuple[str, str]] = []
    target = f"arn:aws:s3:::{params['Bucket']}/{params.get('Key', '')}"
    if operation == "CopyObject":
        source = params.get("CopySource")
        if isinstance(source, dict):
            source = f"{source.get('Bucket')}/{source.get('Key')}"
        extra.append(("s3:GetObject", f"arn:aws:s3:::{str(source).lstrip('/').split('?', 1)[0]}"))
    if operation in ("PutObject", "CopyObject") and params.get("Tagging"):
        extra.append(("s3:PutObjectTagging", target))
    return tuple(extra)


def iam_action(prefix: str, operation: str) -> str:
    return ACTION_OF.get((prefix, operation), f"{prefix}:{operation}")


def _kms_arn(key: str, region: str, account: str) -> str:
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{region}:{account}:{key}"
    return f"arn:aws:kms:{region}:{account}:key/{key}"


def _queue_arn(url: str) -> str:
    # https://sqs.<region>.amazonaws.com/<account>/<name>
    host, account, name = url.split("/")[2:5]
    region = host.split(".")[1] if host.startswith("sqs.") else host.split(".")[0]
    return f"arn:aws:sqs:{region}:{account}:{name}"


def _table_arn(name: str, region: str, account: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{name}"


def _dynamodb_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    # DynamoDB Streams signs as dynamodb: a stream's ARN, or a shard iterator, which starts with that ARN.
    if "StreamArn" in params:
        return (str(params["StreamArn"]),)
    if "ShardIterator" in params:
        return (str(params["ShardIterator"]).split("|", 1)[0],)
    if "TableName" in params:
        table = _table_arn(params["TableName"], region, account)
        return (f"{table}/index/{params['IndexName']}",) if params.get("IndexName") else (table,)
    if "RequestItems" in params:  # BatchGetItem, BatchWriteItem: one entry per table
        return tuple(_table_arn(name, region, account) for name in params["RequestItems"])
    if "TransactItems" in params:  # each item is {"<Operation>": {"TableName": ..., ...}}
        return tuple(
            _table_arn(next(iter(item.values()))["TableName"], region, account) for item in params["TransactItems"]
        )
    return ("*",)


def _sqs_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    if "QueueUrl" in params:
        return (_queue_arn(params["QueueUrl"]),)
    if "QueueName" in params:  # GetQueueUrl, CreateQueue
        return (f"arn:aws:sqs:{region}:{params.get('QueueOwnerAWSAccountId') or account}:{params['QueueName']}",)
    return ("*",)


def _s3_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    if "Bucket" not in params:
        return ("*",)
    key = params.get("Key")
    return (f"arn:aws:s3:::{params['Bucket']}/{key}" if key else f"arn:aws:s3:::{params['Bucket']}",)


def _kms_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    # Decrypt names no key: the key is the one the answer names, or the one the ciphertext was made with.
    if params.get("KeyId"):
        return (_kms_arn(str(params["KeyId"]), region, account),)
    if parsed.get("KeyId"):
        return (_kms_arn(str(parsed["KeyId"]), region, account),)
    blob = params.get("CiphertextBlob")
    if isinstance(blob, str):
        blob = base64.b64decode(blob)
    if isinstance(blob, bytes) and _UUID.match(blob):  # moto's ciphertext starts with the key id
        return (_kms_arn(blob[:36].decode(), region, account),)
    return ("*",)


def _secret_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    secret = params.get("SecretId")
    if secret is None:
        return ("*",)
    if str(secret).startswith("arn:"):
        return (str(secret),)
    # A secret named by its name: its ARN (with the random suffix) is in the answer.
    return (str(parsed.get("ARN") or f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}"),)


def _lambda_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    name = params.get("FunctionName")
    if name is None:
        return ("*",)
    arn = name if str(name).startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{name}"
    return (f"{arn}:{params['Qualifier']}",) if params.get("Qualifier") else (arn,)


def _logs_resources(params: dict[str, Any], parsed: dict[str, Any], region: str, account: str) -> tuple[str, ...]:
    if "logGroupName" not in params:
        return ("*",)
    return (f"arn:aws:logs:{region}:{account}:log-group:{params['logGroupName']}",)


# How each service names the resource of a call in its parameters (or, for some, in its answer).
_RESOURCES_BY_SERVICE: dict[str, Callable[[dict[str, Any], dict[str, Any], str, str], tuple[str, ...]]] = {
    "dynamodb": _dynamodb_resources,
    "sqs": _sqs_resources,
    "s3": _s3_resources,
    "kms": _kms_resources,
    "secretsmanager": _secret_resources,
    "lambda": _lambda_resources,
    "logs": _logs_resources,
}


def resources_of(
    prefix: str, operation: str, params: dict[str, Any], parsed: dict[str, Any], region: str, account: str
) -> tuple[str, ...]:
    """The ARN(s) a call acts on, as IAM sees them; ``*`` for calls that take no resource."""
    extract = _RESOURCES_BY_SERVICE.get(prefix)
    return extract(params, parsed, region, account) if extract else ("*",)


class Recorder:
    def __init__(self, *, region: str, account: str) -> None:
        self.region = region
        self.account = account
        self.calls: list[Call] = []
        self._identities: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._handlers = [
            ("before-parameter-build", self._before_parameter_build),
            ("before-call", self._before_call),
            ("after-call", self._after_call),
        ]

    def identify(self, access_key: str, principal: str, origin: str = "code") -> None:
        self._identities[access_key] = (principal, origin)

    @contextmanager
    def installed(self) -> Iterator[Recorder]:
        botocore.handlers.BUILTIN_HANDLERS.extend(self._handlers)
        try:
            yield self
        finally:
            for handler in self._handlers:
                botocore.handlers.BUILTIN_HANDLERS.remove(handler)

    def of(self, principal: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.principal == principal]

    # -- botocore event handlers

    def _before_parameter_build(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["rehearsal.params"] = dict(params)

    def _before_call(self, context: dict[str, Any], request_signer: Any = None, **_: Any) -> None:
        credentials = getattr(request_signer, "_credentials", None)
        if credentials is not None:
            context["rehearsal.key"] = credentials.get_frozen_credentials().access_key

    def _after_call(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        prefix = model.service_model.signing_name or model.service_model.endpoint_prefix
        operation = model.name
        params = context.get("rehearsal.params", {})
        principal, origin = self._identities.get(context.get("rehearsal.key", ""), ("rehearsal", "set-up"))
        error = None
        status = getattr(http_response, "status_code", 200)
        if status >= 300:
            details = parsed.get("Error", {})
            error = str(details.get("Code") or status)
            if error.isdigit():  # moto answers some denials in a shape the client does not parse (code "403")
                body = bytes(getattr(http_response, "content", b"") or b"")[:2000].decode("utf-8", "replace")
                if "AccessDenied" in body + str(details.get("Message", "")):
                    error = f"AccessDenied (HTTP {status})"
        call = Call(
            principal=principal,
            origin=origin,
            service=prefix,
            operation=operation,
            action=iam_action(prefix, operation),
            resources=resources_of(prefix, operation, params, parsed, self.region, self.account),
            error=error,
            extra=extra_permissions(prefix, operation, params),
        )
        with self._lock:
            self.calls.append(call)
