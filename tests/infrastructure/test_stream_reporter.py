"""The stream reporter in the template: the messages table's stream, the event source mapping and a role
that can do what posting reports needs, no more (stacks/stream_reporter.py)."""

from __future__ import annotations

import json
from typing import Any

from mailproxy.logic.stream_reports import STREAM_FILTER, STREAM_RETRY_ATTEMPTS
from stacks.stream_reporter import HANDLER as STREAM_HANDLER
from tests.infrastructure.conftest import REPORTER_HANDLER, Synthesis, actions_of, statements_with
from tests.infrastructure.test_iam import DYNAMODB_WRITE, _resource_ids, _tables


def test_the_messages_table_streams_new_and_old_images_and_the_config_table_does_not(synth: Synthesis) -> None:
    messages, config = _tables(synth)
    tables = synth.resources("AWS::DynamoDB::Table")
    assert tables[messages]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert "StreamSpecification" not in tables[config]["Properties"]


def _mapping(synth: Synthesis) -> dict[str, Any]:
    function_id, _ = synth.function(STREAM_HANDLER)
    (mapping,) = [
        m["Properties"]
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    return mapping


def stream_failures_queue(synth: Synthesis) -> str:
    """The logical id of the queue the stream reporter's mapping describes the batches it gave up on to."""
    destination = _mapping(synth)["DestinationConfig"]["OnFailure"]["Destination"]
    queue_id: str = destination["Fn::GetAtt"][0]
    return queue_id


def test_the_event_source_bisects_reports_partial_failures_retries_boundedly_and_filters_outcomes(
    synth: Synthesis,
) -> None:
    messages, _ = _tables(synth)
    mapping = _mapping(synth)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [messages, "StreamArn"]}
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BatchSize"] == 100 and mapping["MaximumBatchingWindowInSeconds"] <= 2
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 < mapping["MaximumRetryAttempts"] == STREAM_RETRY_ATTEMPTS
    [pattern] = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert pattern == STREAM_FILTER  # the local poller applies the same (mailproxy_local/stream_poller.py)
    assert pattern["dynamodb"]["Keys"] == {"sk": {"S": ["STATUS"]}}


def test_the_stream_reporter_writes_only_the_outbox_keys_and_the_sync_state(synth: Synthesis) -> None:
    messages, config = _tables(synth)
    statements = synth.role_statements(STREAM_HANDLER)
    on_messages = [s for s in statements if messages in _resource_ids(s)]
    writes = [s for s in on_messages if set(actions_of([s])) & DYNAMODB_WRITE]
    assert actions_of(writes) == {"dynamodb:UpdateItem"}  # the outbox write of an undelivered report
    # nothing else on the table: the images come in the event; the stream itself is read by the mapping
    reads = actions_of(on_messages) - {"dynamodb:UpdateItem"}
    assert reads == {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
    config_writes = [s for s in statements if config in _resource_ids(s) and set(actions_of([s])) & DYNAMODB_WRITE]
    assert actions_of(config_writes) == {"dynamodb:UpdateItem"}
    assert all(
        s["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["SYNC"]}} for s in config_writes
    )


def test_the_stream_reporter_reads_the_client_sync_secret_decrypts_and_touches_no_queue_bucket_or_function(
    synth: Synthesis,
) -> None:
    _, function = synth.function(STREAM_HANDLER)
    variables = function["Properties"]["Environment"]["Variables"]
    statements = synth.role_statements(STREAM_HANDLER)
    secrets = statements_with(statements, "secretsmanager:")
    assert set().union(*(_resource_ids(s) for s in secrets)) == {variables["GMP_CLIENT_SYNC_SECRET_ARN"]["Ref"]}
    assert actions_of(statements_with(statements, "kms:")) == {"kms:Decrypt"}
    assert variables["GMP_CLIENT_SYNC_URL"] == synth.context["client_sync_url"]
    for prefix in ("s3:", "lambda:"):
        assert not statements_with(statements, prefix)
    # its only queue: the on-failure destination, which the event source mapping sends to with its role
    sqs = statements_with(statements, "sqs:")
    assert set().union(*(_resource_ids(s) for s in sqs)) == {stream_failures_queue(synth)}
    assert "sqs:ReceiveMessage" not in actions_of(sqs)
    star = [s for s in statements if s["Resource"] == "*"]
    # dynamodb:ListStreams has no resource-level permission; the event source mapping grants it
    assert actions_of(star) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}


def test_a_batch_given_up_on_is_described_on_a_queue_the_reporter_reads_with_the_stream(synth: Synthesis) -> None:
    queue = stream_failures_queue(synth)
    assert synth.resources("AWS::SQS::Queue")[queue]["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    _, reporter = synth.function(REPORTER_HANDLER)
    variables = reporter["Properties"]["Environment"]["Variables"]
    assert variables["GMP_STREAM_FAILURES_QUEUE_URL"] == {"Ref": queue}
    statements = synth.role_statements(REPORTER_HANDLER)
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= actions_of(
        [s for s in statements_with(statements, "sqs:") if queue in _resource_ids(s)]
    )
    messages, _ = _tables(synth)
    stream_reads = [s for s in statements if messages in _resource_ids(s) and "StreamArn" in json.dumps(s)]
    assert {"dynamodb:GetShardIterator", "dynamodb:GetRecords"} <= actions_of(stream_reads)
