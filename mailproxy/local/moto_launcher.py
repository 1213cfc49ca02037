"""Runs one moto server for the local stack (`python -m mailproxy.local.moto_launcher -p PORT`).

moto's SQS reads its clock through a datetime-based `unix_time()` for every message it considers on
each receive, which made it the local stack's bottleneck (measured: ingestion 94 -> 266 msg/s with the
plain clock below). Called without arguments, as SQS calls them, both functions equal time.time()."""

from __future__ import annotations

import sys
import time

import moto.sqs.models as sqs_models
from moto.server import main as serve


def _now_millis() -> float:
    return time.time() * 1000.0


def main() -> None:
    sqs_models.unix_time = time.time  # type: ignore[assignment]
    sqs_models.unix_time_millis = _now_millis  # type: ignore[assignment]
    serve(sys.argv[1:])


if __name__ == "__main__":
    main()
