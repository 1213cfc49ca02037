"""The jobs worker in the template (stacks/jobs.py): its queue with a dead-letter queue, the function it
triggers, least-privilege grants, and the settings every function reads (shard counts, the jobs queue)."""

from __future__ import annotations

from typing import Any

from stacks.jobs import CONFIG_PARTITIONS
from stacks.jobs import HANDLER as JOBS_HANDLER
from tests.infrastructure.conftest import API_HANDLER, Synthesis, actions_of, statements_with
from tests.infrastructure.test_iam import DYNAMODB_WRITE, _resource_ids, _tables


def _mappings(synth: Synthesis) -> dict[str, dict[str, Any]]:
    """The jobs worker's event source mappings by the logical id of their queue."""
    return {m["EventSourceArn"]["Fn::GetAtt"][0]: m for m in synth.event_source_mappings(JOBS_HANDLER)}


def _jobs_queue(synth: Synthesis) -> tuple[str, dict[str, Any]]:
    queues = synth.resources("AWS::SQS::Queue")
    ((queue_id, mapping),) = [(q, m) for q, m in _mappings(synth).items() if "RedrivePolicy" in queues[q]["Properties"]]
    return queue_id, mapping


def test_the_jobs_dlq_triggers_the_worker_too_which_ends_the_job_failed(synth: Synthesis) -> None:
    dlq = synth.jobs_dlq()
    assert set(_mappings(synth)) == {_jobs_queue(synth)[0], dlq}
    mapping = _mappings(synth)[dlq]
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = synth.resources("AWS::SQS::Queue")[dlq]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * synth.context["jobs_timeout_seconds"]
    _, function = synth.function(JOBS_HANDLER)
    assert function["Properties"]["Environment"]["Variables"]["GMP_JOBS_DLQ_ARN"] == {"Fn::GetAtt": [dlq, "Arn"]}
    (alarm,) = [
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "JobsFailed"
    ]
    assert alarm["Threshold"] == 1 and alarm["Statistic"] == "Sum"


def test_the_jobs_queue_triggers_the_worker_one_job_at_a_time_with_partial_failures(synth: Synthesis) -> None:
    queue_id, mapping = _jobs_queue(synth)
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = synth.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == synth.context["max_receive_count"]
    _, function = synth.function(JOBS_HANDLER)
    assert function["Properties"]["Timeout"] == synth.context["jobs_timeout_seconds"]
    assert queue["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"]


def test_the_worker_writes_only_what_the_bulk_operations_change(synth: Synthesis) -> None:
    messages, config = _tables(synth)
    statements = synth.role_statements(JOBS_HANDLER)
    on_messages = [s for s in statements if messages in _resource_ids(s)]
    assert actions_of(on_messages) == {
        "dynamodb:Query",  # the tenants' listing items only
        "dynamodb:BatchGetItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    (index_read,) = [s for s in on_messages if actions_of([s]) == {"dynamodb:Query"}]
    assert index_read["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LIST#*"]}}
    assert not any("/index/" in str(s["Resource"]) for s in on_messages)
    on_config = [s for s in statements if config in _resource_ids(s)]
    assert on_config and all(
        s["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": CONFIG_PARTITIONS}} for s in on_config
    )
    assert "JOB#*" in CONFIG_PARTITIONS and "ACCOUNT#*" not in CONFIG_PARTITIONS
    assert not any("dynamodb:BatchWriteItem" in actions_of([s]) for s in statements)
    assert set(actions_of(on_config)) & DYNAMODB_WRITE


def test_the_worker_sends_to_the_work_queues_and_its_own_queue_and_retags_contents_only(synth: Synthesis) -> None:
    queue_id, _ = _jobs_queue(synth)
    statements = synth.role_statements(JOBS_HANDLER)
    sends = {next(iter(_resource_ids(s))) for s in statements_with(statements, "sqs:SendMessage")}
    assert sends == synth.work_queues() | {queue_id}  # urgent, bulk (activation) and its own continuations
    s3 = statements_with(statements, "s3:")
    assert actions_of(s3) == {"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"}
    assert all("contents/*" in str(s["Resource"]) for s in s3)
    assert not statements_with(statements, "kms:") and not statements_with(statements, "secretsmanager:")


def test_every_function_reads_the_shard_counts_and_the_api_may_hand_jobs_to_the_queue(synth: Synthesis) -> None:
    queue_id, _ = _jobs_queue(synth)
    for function in synth.resources("AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["GMP_DUE_SHARDS"] == str(synth.context["due_shards"])
        assert variables["GMP_REPORT_SHARDS"] == str(synth.context["report_shards"])
        assert variables["GMP_TENANT_INDEX_SHARDS"] == str(synth.context["tenant_index_shards"])
        assert variables["GMP_JOBS_QUEUE_URL"] == {"Ref": queue_id}
    _, api = synth.function(API_HANDLER)
    assert api["Properties"]["Environment"]["Variables"]["GMP_JOB_INLINE_BUDGET"] == str(
        float(synth.context["job_inline_budget_seconds"])
    )
    api_sends = {next(iter(_resource_ids(s))) for s in statements_with(synth.role_statements(API_HANDLER), "sqs:Send")}
    assert queue_id in api_sends
