"""Counting AWS calls with botocore event hooks, and the DynamoDB capacity units each one implies.

Register a counter on a boto3 Session *before* clients are made from it (clients copy the session's event
emitter when they are created): `counter.attach(session)`; then `Services.create(settings, session)`.

Capacity units follow the on-demand billing rules as AWS documents them:
* writes: 1 WRU per started KB of the item; PutItem/UpdateItem count the larger of the item's size before
  and after the write, DeleteItem the size before; a write whose condition fails still costs the size of
  the existing item (at least 1 WRU); BatchWriteItem counts each item as its own write.
* global secondary indexes: an index entry is written when the write makes the item appear in the index
  (1 put), leave it (1 delete), change an index key (delete + put = 2), or change a projected attribute
  (1 put); each is rounded up to the KB on the size of the projected entry (table keys + index keys +
  projected attributes). Sizes are measured on the stored item before and after each write, read from
  the backend with a separate client that is not counted.
* reads: GetItem and each BatchGetItem key cost 1 RRU per started 4 KB of the whole item (a projection
  does not reduce it; a missing item still costs the minimum), 0.5 of that when eventually consistent;
  Query/Scan cost the summed size of the items returned, rounded up to 4 KB once, at least one unit, and
  half when eventually consistent (always, on an index).
* item size: attribute names + values (string UTF-8 bytes, binary bytes, number ~1 byte per 2 significant
  digits + 1, 1 byte for booleans and nulls, 3 bytes + 1 per element for lists and maps).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3

_WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
_READ_OPS = {"GetItem", "BatchGetItem", "Query", "Scan"}
_SQS_PAYLOAD_OPS = {"SendMessage", "SendMessageBatch"}
SQS_CHUNK = 64 * 1024


def _body_size(body: Any) -> int:
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    if hasattr(body, "getbuffer"):
        return int(body.getbuffer().nbytes)
    if hasattr(body, "seek") and hasattr(body, "tell"):
        position = body.tell()
        size = int(body.seek(0, 2))
        body.seek(position)
        return size
    return 0


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").split("e")[0].split("E")[0]
    significant = digits.strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    """Size in bytes of one attribute value in DynamoDB JSON ({"S": ...}, {"N": ...}, ...)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return _number_size(str(raw))
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(str(raw).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in raw)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in raw.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


@dataclass
class _Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass
class _Table:
    keys: tuple[str, ...]
    indexes: list[_Index]

    def key_of(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys}

    def entry(self, index: _Index, item: dict[str, Any] | None) -> dict[str, Any] | None:
        """The item's entry in an index, or None when it is not in it (sparse index)."""
        if not item or not all(k in item for k in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        names = set(self.keys) | set(index.keys) | set(index.include)
        return {k: v for k, v in item.items() if k in names}


@dataclass
class OpStats:
    calls: int = 0
    seconds: float = 0.0
    billed_requests: int = 0  # SQS: 64 KB chunks; others: calls
    items_written: int = 0  # DynamoDB items written (a batch counts each)
    items_read: int = 0
    wru_table: int = 0
    wru_index: int = 0
    index_writes: int = 0
    rru: float = 0.0
    bytes_sent: int = 0  # S3 PUT bodies, SQS payloads
    request_bytes: int = 0  # HTTP request bodies (what a NAT gateway would process, with the answers)
    response_bytes: int = 0
    errors: int = 0
    empty_receives: int = 0  # SQS ReceiveMessage calls that returned nothing
    max_status_wru: int = 0  # the largest table WRU of one write to a status item (sk = STATUS)
    index_detail: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "index_detail"}
        data["index_detail"] = dict(self.index_detail)
        return data


class AwsCounter:
    """Counts every AWS call of the clients made from the sessions it is attached to, by phase and actor.

    `phase` is set by the caller (e.g. "ingest", "send", "report"); `actor` is given per session (e.g.
    "function", or "esm" for the local poller standing in for Lambda's event source mapping).
    With `capacity=False` only calls and time are recorded (cheap enough to leave on while timing).
    """

    def __init__(self, *, capacity: bool = True, namer: Any = None) -> None:
        self.capacity = capacity
        self._namer = namer or (lambda operation, params: operation)
        self.phase = "setup"
        self.stats: dict[tuple[str, str, str, str], OpStats] = defaultdict(OpStats)
        self._reader: Any = None
        self._tables: dict[str, _Table] = {}

    # -- wiring ----------------------------------------------------------------------------------------
    def attach(self, session: boto3.session.Session, actor: str = "function") -> boto3.session.Session:
        events = session.events
        events.register("before-parameter-build", self._before(actor))
        events.register("before-call", self._request_size)
        events.register("after-call", self._after(actor))
        return session

    def session(self, actor: str = "function") -> boto3.session.Session:
        return self.attach(boto3.session.Session(), actor)

    def _db(self) -> Any:
        if self._reader is None:
            self._reader = boto3.session.Session().client("dynamodb")  # not attached: its reads are not counted
        return self._reader

    def _table(self, name: str) -> _Table:
        if name not in self._tables:
            description = self._db().describe_table(TableName=name)["Table"]
            keys = tuple(k["AttributeName"] for k in description["KeySchema"])
            indexes = [
                _Index(
                    name=gsi["IndexName"],
                    keys=tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                    projection=gsi["Projection"]["ProjectionType"],
                    include=tuple(gsi["Projection"].get("NonKeyAttributes", [])),
                )
                for gsi in description.get("GlobalSecondaryIndexes", [])
            ]
            self._tables[name] = _Table(keys, indexes)
        return self._tables[name]

    def _fetch(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._db().get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return item

    # -- hooks -----------------------------------------------------------------------------------------
    def _before(self, actor: str) -> Any:
        def hook(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            context["bench_started"] = time.perf_counter()
            context["bench_params"] = params
            if self.capacity and model.service_model.service_name == "dynamodb" and model.name in _WRITE_OPS:
                context["bench_before"] = [(t, k, self._fetch(t, k)) for t, k in self._write_keys(model.name, params)]

        return hook

    @staticmethod
    def _request_size(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_request_bytes"] = _body_size(params.get("body", b""))

    def _after(self, actor: str) -> Any:
        def hook(http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            elapsed = time.perf_counter() - context.get("bench_started", time.perf_counter())
            service, operation = model.service_model.service_name, model.name
            params = context.get("bench_params", {})
            stats = self.stats[(self.phase, actor, service, self._namer(operation, params))]
            stats.calls += 1
            stats.seconds += elapsed
            failed = "Error" in parsed
            stats.errors += int(failed)
            stats.request_bytes += context.get("bench_request_bytes", 0)
            content = getattr(http_response, "content", b"") if not parsed.get("Body") else b""
            stats.response_bytes += len(content or b"") + int(parsed.get("ContentLength") or 0)
            if operation == "ReceiveMessage" and not parsed.get("Messages"):
                stats.empty_receives += 1
            stats.billed_requests += self._billed(service, operation, params, stats)
            if self.capacity and service == "dynamodb":
                if operation in _WRITE_OPS:
                    self._count_writes(stats, context.get("bench_before", []), failed, parsed)
                elif operation in _READ_OPS and not failed:
                    self._count_reads(stats, operation, params, parsed)

        return hook

    # -- SQS and S3 ------------------------------------------------------------------------------------
    @staticmethod
    def _billed(service: str, operation: str, params: dict[str, Any], stats: OpStats) -> int:
        if service == "sqs" and operation in _SQS_PAYLOAD_OPS:
            bodies = [params.get("MessageBody", "")] + [e.get("MessageBody", "") for e in params.get("Entries", [])]
            size = sum(len(b.encode()) for b in bodies)
            stats.bytes_sent += size
            return max(1, math.ceil(size / SQS_CHUNK))
        if service == "s3" and operation == "PutObject":
            stats.bytes_sent += _body_size(params.get("Body", b""))
        return 1

    # -- DynamoDB writes -------------------------------------------------------------------------------
    def _write_keys(self, operation: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if operation == "BatchWriteItem":
            keys = []
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        keys.append((table, self._table(table).key_of(request["PutRequest"]["Item"])))
                    else:
                        keys.append((table, request["DeleteRequest"]["Key"]))
            return keys
        table = params["TableName"]
        key = params["Key"] if "Key" in params else self._table(table).key_of(params["Item"])
        return [(table, key)]

    def _count_writes(
        self, stats: OpStats, before: list[tuple[str, dict[str, Any], Any]], failed: bool, parsed: dict[str, Any]
    ) -> None:
        unprocessed = [
            (table, request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get("Key", {}))
            for table, requests in (parsed.get("UnprocessedItems") or {}).items()
            for request in requests
        ]
        for table_name, key, old in before:
            if any(t == table_name and all(item.get(k) == v for k, v in key.items()) for t, item in unprocessed):
                continue  # not written by this call; the retry is another call
            new = old if failed else self._fetch(table_name, key)
            table = self._table(table_name)
            units = write_units(max(item_size(old), item_size(new)))
            stats.items_written += 1
            stats.wru_table += units
            if key.get("sk", {}).get("S") == "STATUS":
                stats.max_status_wru = max(stats.max_status_wru, units)
            if failed:
                continue
            for index in table.indexes:
                was, now = table.entry(index, old), table.entry(index, new)
                if was is None and now is None:
                    continue
                if was is not None and now is not None:
                    if all(was.get(k) == now.get(k) for k in index.keys):
                        if was == now:
                            continue
                        written, units = 1, write_units(item_size(now))
                    else:
                        written, units = 2, write_units(item_size(was)) + write_units(item_size(now))
                else:
                    written, units = 1, write_units(item_size(was or now))
                stats.index_writes += written
                stats.wru_index += units
                stats.index_detail[index.name] += units

    # -- DynamoDB reads --------------------------------------------------------------------------------
    def _count_reads(self, stats: OpStats, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        if operation == "GetItem":
            item = parsed.get("Item")
            if "ProjectionExpression" in params:
                item = self._fetch(params["TableName"], params["Key"])
            stats.items_read += int(item is not None)
            stats.rru += read_units(item_size(item), bool(params.get("ConsistentRead")))
        elif operation == "BatchGetItem":
            for table, request in params.get("RequestItems", {}).items():
                consistent = bool(request.get("ConsistentRead"))
                for key in request.get("Keys", []):
                    item = self._fetch(table, key)
                    stats.items_read += int(item is not None)
                    stats.rru += read_units(item_size(item), consistent)
        else:  # Query, Scan
            items = parsed.get("Items", [])
            stats.items_read += len(items)
            consistent = bool(params.get("ConsistentRead")) and "IndexName" not in params
            stats.rru += read_units(sum(item_size(i) for i in items), consistent)

    # -- summaries -------------------------------------------------------------------------------------
    def total(self, *, phase: str | None = None, actor: str | None = None, service: str | None = None) -> OpStats:
        total = OpStats()
        for (p, a, s, _), stats in self.stats.items():
            if (phase and p != phase) or (actor and a != actor) or (service and s != service):
                continue
            for name, value in stats.__dict__.items():
                if name == "index_detail":
                    for index, units in value.items():
                        total.index_detail[index] += units
                elif name == "max_status_wru":
                    total.max_status_wru = max(total.max_status_wru, value)
                else:
                    setattr(total, name, getattr(total, name) + value)
        return total

    def calls(self, operation: str, *, phase: str | None = None, actor: str | None = None) -> int:
        """Calls of an operation (a named variant "UpdateItem(claim)" counts as "UpdateItem")."""
        return sum(
            s.calls
            for (p, a, _, o), s in self.stats.items()
            if o.split("(")[0] == operation and (phase is None or p == phase) and (actor is None or a == actor)
        )

    def table(self, phases: list[str] | None = None) -> list[dict[str, Any]]:
        """One row per (phase, actor, service, operation), for the JSON results."""
        rows = []
        for (phase, actor, service, operation), stats in sorted(self.stats.items()):
            if phases is None or phase in phases:
                rows.append(
                    {"phase": phase, "actor": actor, "service": service, "operation": operation, **stats.as_dict()}
                )
        return rows


def decimal_free(value: Any) -> Any:
    """JSON-friendly copy (Decimals to numbers)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: decimal_free(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decimal_free(v) for v in value]
    return value
