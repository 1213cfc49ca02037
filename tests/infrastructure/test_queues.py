"""Queues: urgent and bulk, each with a DLQ; the sender consumes both with partial batch failures. The jobs
queue and its DLQ are tests/infrastructure/test_jobs.py's."""

from __future__ import annotations

from typing import Any

from stacks.jobs import HANDLER as JOBS_HANDLER
from tests.infrastructure.conftest import SENDER_HANDLER, Synthesis
from tests.infrastructure.test_stream_reporter import stream_failures_queue


def _work_queues(synth: Synthesis) -> dict[str, dict[str, Any]]:
    queues = synth.resources("AWS::SQS::Queue")
    return {k: queues[k] for k in synth.work_queues()}


def test_two_work_queues_a_jobs_queue_and_a_ses_events_queue_each_have_their_own_dead_letter_queue(
    synth: Synthesis,
) -> None:
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 9  # and the stream reporter's on-failure destination
    sources = {k for k, q in queues.items() if "RedrivePolicy" in q["Properties"]}
    assert len(sources) == 4
    assert len(_work_queues(synth)) == 2 and set(_work_queues(synth)) < sources  # the others: jobs, SES events
    dlq_ids = {queues[k]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for k in sources}
    assert len(dlq_ids) == 4  # one DLQ each, not shared
    assert dlq_ids == set(queues) - sources - {stream_failures_queue(synth)}


def test_every_work_queue_redrives_after_max_receive_count(synth: Synthesis) -> None:
    for queue in _work_queues(synth).values():
        assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == synth.context["max_receive_count"]


def test_every_queue_is_encrypted_and_refuses_plain_http(synth: Synthesis) -> None:
    for queue in synth.resources("AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policies = synth.resources("AWS::SQS::QueuePolicy").values()
    secured = {
        ref["Ref"]
        for policy in policies
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny" and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for ref in policy["Properties"]["Queues"]
    }
    assert secured == set(synth.resources("AWS::SQS::Queue"))


def test_visibility_timeout_is_at_least_six_times_the_sender_timeout(synth: Synthesis) -> None:
    _, sender = synth.function(SENDER_HANDLER)
    timeout = sender["Properties"]["Timeout"]
    assert timeout == synth.context["sender_timeout_seconds"]
    for queue in _work_queues(synth).values():
        assert queue["Properties"]["VisibilityTimeout"] >= 6 * timeout


def test_dead_letter_queues_keep_messages_longer_than_their_sources(synth: Synthesis) -> None:
    queues = synth.resources("AWS::SQS::Queue")
    for queue in _work_queues(synth).values():
        dlq = queues[queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
        assert dlq["Properties"]["MessageRetentionPeriod"] > queue["Properties"]["MessageRetentionPeriod"]


def test_sender_consumes_both_queues_in_batches_reporting_item_failures(synth: Synthesis) -> None:
    mappings = synth.event_source_mappings(SENDER_HANDLER)
    assert len(mappings) == 2
    sources = set()
    for props in mappings:
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] == 10
        assert props["MaximumBatchingWindowInSeconds"] >= 1
        # sender_max_concurrency (the tests' 6): a burst opens at most that many SMTP sessions per queue
        assert props["ScalingConfig"] == {"MaximumConcurrency": synth.context["sender_max_concurrency"]}
        sources.add(props["EventSourceArn"]["Fn::GetAtt"][0])
    jobs_queues = {m["EventSourceArn"]["Fn::GetAtt"][0] for m in synth.event_source_mappings(JOBS_HANDLER)}
    assert len(sources) == 2 and not jobs_queues & sources
