"""Alarms (DLQ depth, sender errors, oldest message age, report failures, the stream reporter's lag and errors,
API 5xx) to SNS; a dashboard."""

from __future__ import annotations

from typing import Any

from stacks.monitoring import STREAM_FAILURES_ALARM_SECONDS, STREAM_ITERATOR_AGE_ALARM_SECONDS
from stacks.stream_reporter import HANDLER as STREAM_HANDLER
from tests.infrastructure.conftest import SENDER_HANDLER, Synthesis
from tests.infrastructure.test_stream_reporter import stream_failures_queue


def _alarms(synth: Synthesis) -> list[dict[str, Any]]:
    return [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()]


def _alarms_on(synth: Synthesis, namespace: str, metric: str) -> list[dict[str, Any]]:
    return [a for a in _alarms(synth) if a.get("Namespace") == namespace and a.get("MetricName") == metric]


def _dimension_refs(alarm: dict[str, Any]) -> set[str]:
    """Logical ids the alarm's dimensions point at (Ref or Fn::GetAtt)."""
    refs: set[str] = set()
    for dimension in alarm.get("Dimensions", []):
        value = dimension["Value"]
        if isinstance(value, dict):
            refs.add(value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0])
    return refs


def test_each_dead_letter_queue_has_a_depth_alarm_but_the_jobs_one_which_the_worker_drains(synth: Synthesis) -> None:
    # A continuation in the jobs DLQ ends its job failed at once; the JobsFailed alarm watches that instead.
    dlqs = synth.dead_letter_queues() - {synth.jobs_dlq()}
    assert len(dlqs) == 3  # urgent, bulk, SES events
    alarms = _alarms_on(synth, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    covered: set[str] = set()
    for alarm in alarms:
        covered |= _dimension_refs(alarm)
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert dlqs <= covered


def test_each_work_queue_has_an_oldest_message_age_alarm(synth: Synthesis) -> None:
    work = synth.work_queues()
    alarms = [
        a
        for a in _alarms_on(synth, "AWS/SQS", "ApproximateAgeOfOldestMessage")
        if stream_failures_queue(synth) not in _dimension_refs(a)
    ]
    assert set().union(*(_dimension_refs(a) for a in alarms)) == work
    assert all(a["Threshold"] == synth.context["oldest_message_alarm_seconds"] for a in alarms)


def test_a_stream_failure_waiting_unread_raises_an_alarm(synth: Synthesis) -> None:
    [alarm] = [
        a
        for a in _alarms_on(synth, "AWS/SQS", "ApproximateAgeOfOldestMessage")
        if stream_failures_queue(synth) in _dimension_refs(a)
    ]
    assert alarm["Threshold"] == STREAM_FAILURES_ALARM_SECONDS


def test_sender_errors_raise_an_alarm(synth: Synthesis) -> None:
    sender_id, _ = synth.function(SENDER_HANDLER)
    alarms = [a for a in _alarms_on(synth, "AWS/Lambda", "Errors") if sender_id in _dimension_refs(a)]
    assert len(alarms) == 1


def test_stream_reporter_lag_and_errors_raise_alarms(synth: Synthesis) -> None:
    function_id, _ = synth.function(STREAM_HANDLER)
    (lag,) = [a for a in _alarms_on(synth, "AWS/Lambda", "IteratorAge") if function_id in _dimension_refs(a)]
    assert lag["Statistic"] == "Maximum"
    assert lag["Threshold"] == STREAM_ITERATOR_AGE_ALARM_SECONDS * 1000  # IteratorAge is in milliseconds
    errors = [a for a in _alarms_on(synth, "AWS/Lambda", "Errors") if function_id in _dimension_refs(a)]
    assert len(errors) == 1 and errors[0]["Threshold"] == 1


def test_report_failures_emf_metric_raises_an_alarm(synth: Synthesis) -> None:
    (alarm,) = _alarms_on(synth, "GenroMailProxy", "ReportFailures")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "genro-mail-proxy"}]
    assert alarm["Statistic"] == "Sum"


def test_an_accounts_complaint_rate_over_the_setting_raises_an_alarm(synth: Synthesis) -> None:
    (alarm,) = _alarms_on(synth, "GenroMailProxy", "HighestComplaintRate")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "genro-mail-proxy"}]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == synth.context["complaint_rate_alarm_percent"]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_api_5xx_raise_an_alarm(synth: Synthesis) -> None:
    (alarm,) = _alarms_on(synth, "AWS/ApiGateway", "5XXError")
    assert {d["Name"] for d in alarm["Dimensions"]} >= {"ApiName", "Stage"}


def test_every_alarm_notifies_the_sns_topic(synth: Synthesis) -> None:
    (topic_id,) = [
        k for k, t in synth.resources("AWS::SNS::Topic").items() if "alarms" in t["Properties"]["DisplayName"]
    ]
    alarms = _alarms(synth)
    assert len(alarms) == 13
    for alarm in alarms:
        assert {"Ref": topic_id} in alarm["AlarmActions"]
        assert alarm["TreatMissingData"] == "notBreaching"


def test_alarm_email_from_context_subscribes_to_the_topic(synth: Synthesis) -> None:
    synth.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": synth.context["alarm_email"]}
    )


def test_dashboard_exists(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
