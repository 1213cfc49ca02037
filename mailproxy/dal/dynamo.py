"""The few ways the stores talk to DynamoDB: a conditional write whose failed condition is an answer, not a
fault; every page of a Query or Scan through boto3's paginators; batch reads and writes that retry what
DynamoDB leaves unprocessed, a bounded number of times with backoff."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from mailproxy.dal.items import from_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

BATCH_GET_KEYS = 100  # DynamoDB's limits per BatchGetItem / BatchWriteItem request
BATCH_WRITE_REQUESTS = 25
UNPROCESSED_RETRIES = 8


class Unprocessed(RuntimeError):
    """DynamoDB kept returning part of a batch as unprocessed (throttled): the caller may retry later."""


def _condition_failed(exc: ClientError) -> bool:
    """The write's condition did not hold: a domain answer (already claimed, moved on), not a fault."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Written:
    """The answer of a conditional write: `held` when its condition held and it was applied; `attributes`
    the returned image (`ReturnValues` when held, `ReturnValuesOnConditionCheckFailure` when not)."""

    held: bool
    attributes: dict[str, Any] = field(default_factory=dict)


def write_if(write: Callable[..., Any], **request: Any) -> Written:
    """Run one conditional PutItem / UpdateItem / DeleteItem (`write` is the client's method)."""
    try:
        answer = write(**request)
    except ClientError as exc:
        if _condition_failed(exc):
            old = exc.response.get("Item") or {}
            return Written(False, from_item(old) if old else {})  # type: ignore[arg-type]
        raise
    attributes = answer.get("Attributes")
    return Written(True, from_item(attributes) if attributes else {})


def pages(db: DynamoDBClient, operation: Literal["query", "scan"], **request: Any) -> Iterator[dict[str, Any]]:
    """Every page of a Query or Scan, as DynamoDB returns them (raw attribute maps)."""
    yield from db.get_paginator(operation).paginate(**request)  # type: ignore[misc]


def all_items(db: DynamoDBClient, operation: Literal["query", "scan"], **request: Any) -> Iterator[dict[str, Any]]:
    """Every item of a Query or Scan, as plain dicts."""
    for page in pages(db, operation, **request):
        yield from (from_item(raw) for raw in page["Items"])


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.05 * 2**attempt))


def batch_get(
    db: DynamoDBClient,
    table: str,
    keys: list[dict[str, Any]],
    *,
    consistent: bool = False,
    projection: str | None = None,
) -> list[dict[str, Any]]:
    """The items of `keys` (raw key maps) that exist, as plain dicts, in no particular order."""
    found: list[dict[str, Any]] = []
    unique = list({tuple(sorted((k, v["S"]) for k, v in key.items())): key for key in keys}.values())
    for start in range(0, len(unique), BATCH_GET_KEYS):
        request: dict[str, Any] = {"Keys": unique[start : start + BATCH_GET_KEYS], "ConsistentRead": consistent}
        if projection:
            request["ProjectionExpression"] = projection
        pending: dict[str, Any] = {table: request}
        for attempt in range(UNPROCESSED_RETRIES):
            answer = db.batch_get_item(RequestItems=pending)
            found.extend(from_item(raw) for raw in answer["Responses"].get(table, []))
            pending = dict(answer.get("UnprocessedKeys") or {})
            if not pending:
                break
            _backoff(attempt)
        else:
            raise Unprocessed("DynamoDB kept items unprocessed (throttled); try again")
    return found


def batch_write(db: DynamoDBClient, table: str, requests: list[dict[str, Any]]) -> None:
    """PutRequest / DeleteRequest entries, in batches of 25."""
    for start in range(0, len(requests), BATCH_WRITE_REQUESTS):
        pending: dict[str, Any] = {table: requests[start : start + BATCH_WRITE_REQUESTS]}
        for attempt in range(UNPROCESSED_RETRIES):
            pending = dict(db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {})
            if not pending:
                break
            _backoff(attempt)
        else:
            raise Unprocessed("DynamoDB kept items unprocessed (throttled); try again")
