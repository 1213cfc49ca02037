"""The SES events path in the template (stacks/ses_events.py): a topic only SES of this account publishes to,
its raw-delivery subscription to the SES events queue, the function that queue triggers with partial batch
responses, outside the VPC, with a role that reads and updates message status items and writes only the
suppression list and the counters; the topic's ARN as an output."""

from __future__ import annotations

from stacks.ses_events import CONFIG_WRITE_PARTITIONS
from stacks.ses_events import HANDLER as SES_EVENTS_HANDLER
from tests.infrastructure.conftest import Synthesis, actions_of, statements_with


def _topic_id(synth: Synthesis) -> str:
    (topic_id,) = [k for k, t in synth.resources("AWS::SNS::Topic").items() if "SES" in t["Properties"]["DisplayName"]]
    return topic_id


def test_only_ses_of_this_account_may_publish_to_the_topic_and_only_over_tls(synth: Synthesis) -> None:
    topic_id = _topic_id(synth)
    [policy] = [
        p["Properties"]
        for p in synth.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in p["Properties"]["Topics"]
    ]
    statements = policy["PolicyDocument"]["Statement"]
    [publish] = [s for s in statements if s.get("Principal") == {"Service": "ses.amazonaws.com"}]
    assert publish["Action"] == "sns:Publish" and publish["Effect"] == "Allow"
    assert publish["Condition"] == {"StringEquals": {"AWS:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in str(s["Condition"]) for s in statements)


def test_the_topic_delivers_raw_to_a_queue_with_a_dead_letter_queue_that_the_function_consumes(
    synth: Synthesis,
) -> None:
    topic_id = _topic_id(synth)
    [subscription] = [
        s["Properties"]
        for s in synth.resources("AWS::SNS::Subscription").values()
        if s["Properties"]["TopicArn"] == {"Ref": topic_id}
    ]
    assert subscription["Protocol"] == "sqs" and subscription["RawMessageDelivery"] is True
    queue_id = subscription["Endpoint"]["Fn::GetAtt"][0]
    queue = synth.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == synth.context["max_receive_count"]
    function_id, function = synth.function(SES_EVENTS_HANDLER)
    assert "VpcConfig" not in function["Properties"]
    [mapping] = [
        m["Properties"]
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_role_updates_message_status_and_writes_only_suppressions_and_counters(synth: Synthesis) -> None:
    statements = synth.role_statements(SES_EVENTS_HANDLER)
    dynamodb = statements_with(statements, "dynamodb:")
    config_writes = [s for s in dynamodb if "Condition" in s]
    assert config_writes and all(
        s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == CONFIG_WRITE_PARTITIONS
        for s in config_writes
    )
    assert actions_of(dynamodb) == {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"}
    assert not statements_with(statements, "kms:") and not statements_with(statements, "s3:")
    assert actions_of(statements_with(statements, "sqs:")) <= {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }


def test_the_topic_arn_is_an_output(synth: Synthesis) -> None:
    outputs = synth.template_json["Outputs"]
    assert outputs["SesEventsTopicArn"]["Value"] == {"Ref": _topic_id(synth)}
