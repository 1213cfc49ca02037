"""Runs one moto server for the local stack (`python -m mailproxy_local.moto_launcher [--serialize] -p PORT`).

Two adjustments make moto behave like the services it stands in for, under the local stack's load:
- moto's SQS reads its clock through a datetime-based `unix_time()` for every message it considers on each
  receive, which made it the local stack's bottleneck (measured: ingestion 94 -> 266 msg/s with the plain
  clock below). Called without arguments, as SQS calls them, both functions equal time.time().
- `--serialize` (the DynamoDB server) handles one request at a time. moto evaluates a condition and applies
  the update in separate steps, so two threads could interleave them; DynamoDB makes each conditional
  write atomic, and the proxy's exactly-once claims and report outbox rely on that."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import moto.sqs.models as sqs_models
from moto.server import DomainDispatcherApplication
from moto.server import main as serve


def _now_millis() -> float:
    return time.time() * 1000.0


def _serialize_requests() -> None:
    lock = threading.Lock()
    dispatch = DomainDispatcherApplication.__call__

    def one_at_a_time(self: DomainDispatcherApplication, environ: Any, start_response: Any) -> Any:
        with lock:
            return list(dispatch(self, environ, start_response))

    DomainDispatcherApplication.__call__ = one_at_a_time  # type: ignore[method-assign]


def main() -> None:
    argv = sys.argv[1:]
    if "--serialize" in argv:
        argv.remove("--serialize")
        _serialize_requests()
    sqs_models.unix_time = time.time  # type: ignore[assignment]
    sqs_models.unix_time_millis = _now_millis  # type: ignore[assignment]
    serve(argv)


if __name__ == "__main__":
    main()
