"""The bouncer in the template: a schedule every minute, outside the VPC, a role that reads the config and
writes only the bouncer's partitions, updates message status items, and decrypts (stacks/bouncer.py)."""

from __future__ import annotations

from stacks.bouncer import CONFIG_WRITE_PARTITIONS
from stacks.bouncer import HANDLER as BOUNCER_HANDLER
from tests.infrastructure.conftest import Synthesis, actions_of, statements_with


def test_the_bouncer_runs_every_minute_outside_the_vpc_one_at_a_time(synth: Synthesis) -> None:
    function_id, function = synth.function(BOUNCER_HANDLER)
    assert "VpcConfig" not in function["Properties"]
    assert function["Properties"]["ReservedConcurrentExecutions"] == 1
    rules = [
        rule["Properties"]
        for rule in synth.resources("AWS::Events::Rule").values()
        if any(t["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]} for t in rule["Properties"]["Targets"])
    ]
    assert [rule["ScheduleExpression"] for rule in rules] == ["rate(1 minute)"]


def test_the_bouncer_role_writes_only_its_config_partitions_and_message_status(synth: Synthesis) -> None:
    statements = synth.role_statements(BOUNCER_HANDLER)
    writes = [s for s in statements_with(statements, "dynamodb:") if actions_of([s]) & {"dynamodb:PutItem"}]
    assert writes and all(
        s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == CONFIG_WRITE_PARTITIONS for s in writes
    )
    dynamodb = actions_of(statements_with(statements, "dynamodb:"))
    assert "dynamodb:DeleteTable" not in dynamodb and "dynamodb:Scan" in dynamodb  # read grant: accounts, tenants
    assert actions_of(statements_with(statements, "kms:")) == {"kms:Decrypt"}
    assert not statements_with(statements, "sqs:") and not statements_with(statements, "s3:")
