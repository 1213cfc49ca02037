"""The messages table's DynamoDB Stream in tests: drained through the stream reporter's handler by the local
poller, as Lambda's event source mapping does (mailproxy_local/stream_poller.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import boto3

from functions.stream_reporter.handler import report_batch
from mailproxy.logic.reports import ReportTarget
from mailproxy.logic.stream_reports import StreamReporter
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy_local.stream_poller import Handler, StreamPoller


def streams_client(services: Services) -> object:
    """DynamoDB Streams where the services' DynamoDB is: moto in process serves it at its AWS address only,
    a moto server (the reliability suite's) at its own URL."""
    endpoint = services.dynamodb.meta.endpoint_url
    region = services.dynamodb.meta.region_name
    if endpoint.endswith(".amazonaws.com"):
        endpoint = f"https://streams.dynamodb.{region}.amazonaws.com"
    return boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=region)


def stream_arn(services: Services) -> str:
    table = services.dynamodb.describe_table(TableName=services.settings.messages_table)["Table"]
    return str(table["LatestStreamArn"])


def reporting_to(
    services: Services, target: ReportTarget | Callable[[str], ReportTarget | None] | None, **options: object
) -> Handler:
    """The stream reporter's handler around `services`, posting to `target` (one for every tenant, or a
    function of the tenant); `options` go to StreamReporter (clock, policy)."""
    target_for = target if callable(target) else (lambda tenant_id: target)
    reporter = StreamReporter(services, target_for, logger=logger, metrics=metrics, **options)  # type: ignore[arg-type]
    return partial(report_batch, reporter=reporter)


def stream_poller(services: Services, handler: Handler) -> StreamPoller:
    """A poller from the stream's start: it reads every record written since the table was created."""
    return StreamPoller(streams_client(services), stream_arn(services), handler, starting_position="TRIM_HORIZON")


def drain_to_outbox(services: Services) -> None:
    """Everything the stream holds goes to the outbox, as when no client can be reached: where the tests of
    the scheduled reporter start from. Reading the stream again is harmless: an outcome already in the
    outbox keeps its place and an acknowledged one does not come back (ReportOutbox.put)."""
    stream_poller(services, reporting_to(services, None)).drain()
