"""Least privilege: each function's role can touch only what that function uses."""

from __future__ import annotations

from typing import Any

from stacks.bouncer import HANDLER as BOUNCER_HANDLER
from stacks.jobs import HANDLER as JOBS_HANDLER
from stacks.ses_events import HANDLER as SES_EVENTS_HANDLER
from stacks.stream_reporter import HANDLER as STREAM_HANDLER
from tests.infrastructure.conftest import (
    API_HANDLER,
    REPORTER_HANDLER,
    SENDER_HANDLER,
    Synthesis,
    actions_of,
    statements_with,
)

DYNAMODB_WRITE = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
DYNAMODB_READ = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}


def _ids(synth: Synthesis, resource_type: str) -> set[str]:
    return set(synth.resources(resource_type))


def _resource_ids(statement: dict[str, Any]) -> set[str]:
    """Logical ids a statement's Resource refers to (Ref / GetAtt, also inside Fn::Join)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Ref" in node:
                found.add(node["Ref"])
            if "Fn::GetAtt" in node:
                found.add(node["Fn::GetAtt"][0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(statement["Resource"])
    return found


def _tables(synth: Synthesis) -> tuple[str, str]:
    tables = synth.resources("AWS::DynamoDB::Table")
    (messages,) = [k for k, t in tables.items() if t["Properties"].get("GlobalSecondaryIndexes")]
    (config,) = [k for k in tables if k != messages]
    return messages, config


def _actions_on(statements: list[dict[str, Any]], logical_id: str) -> set[str]:
    return actions_of([s for s in statements if logical_id in _resource_ids(s)])


def test_no_statement_allows_a_wildcard_action(synth: Synthesis) -> None:
    for handler in (API_HANDLER, SENDER_HANDLER, REPORTER_HANDLER, STREAM_HANDLER):
        for action in actions_of(synth.role_statements(handler)):
            assert "*" not in action, f"{handler}: {action}"


def test_only_xray_is_granted_on_every_resource(synth: Synthesis) -> None:
    for handler in (API_HANDLER, SENDER_HANDLER, REPORTER_HANDLER):
        star = [s for s in synth.role_statements(handler) if s["Resource"] == "*"]
        # the reporter reads the messages table's stream again (stream batches given up on): ListStreams has
        # no resource-level permission
        stream = {"dynamodb:ListStreams"} if handler == REPORTER_HANDLER else set()
        assert actions_of(star) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"} | stream


def test_each_function_writes_only_its_own_log_group(synth: Synthesis) -> None:
    for handler in (API_HANDLER, SENDER_HANDLER, REPORTER_HANDLER, STREAM_HANDLER):
        _, function = synth.function(handler)
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        logs = statements_with(synth.role_statements(handler), "logs:")
        assert actions_of(logs) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        assert all(_resource_ids(s) == {group} for s in logs)


def test_only_the_sender_has_a_managed_policy_and_it_is_vpc_access(synth: Synthesis) -> None:
    assert synth.role_managed_policies(API_HANDLER) == []
    assert synth.role_managed_policies(REPORTER_HANDLER) == []
    (policy,) = synth.role_managed_policies(SENDER_HANDLER)
    assert "service-role/AWSLambdaVPCAccessExecutionRole" in str(policy)


def test_api_reads_and_writes_both_tables_and_sends_to_both_queues(synth: Synthesis) -> None:
    statements = synth.role_statements(API_HANDLER)
    for table in _tables(synth):
        assert _actions_on(statements, table) >= DYNAMODB_READ | DYNAMODB_WRITE
    for queue in synth.work_queues():
        assert {"sqs:SendMessage", "sqs:GetQueueAttributes"} <= _actions_on(statements, queue)
        assert "sqs:ReceiveMessage" not in _actions_on(statements, queue)


def test_api_encrypts_with_the_kms_key_and_cannot_decrypt(synth: Synthesis) -> None:
    kms = statements_with(synth.role_statements(API_HANDLER), "kms:")
    assert actions_of(kms) == {"kms:Encrypt"}
    assert all(_resource_ids(s) <= _ids(synth, "AWS::KMS::Key") for s in kms)


def test_api_reads_and_writes_only_the_contents_prefix_of_the_bucket(synth: Synthesis) -> None:
    s3 = statements_with(synth.role_statements(API_HANDLER), "s3:")
    # tagging: a suspended message's content is held past the lifecycle rule, then released
    assert actions_of(s3) == {"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"}
    for statement in s3:
        assert "/contents/*" in str(statement["Resource"])


def test_api_reads_only_the_api_token_and_correlation_secrets(synth: Synthesis) -> None:
    _, api = synth.function(API_HANDLER)
    variables = api["Properties"]["Environment"]["Variables"]
    named = {variables["GMP_API_TOKEN_SECRET_ARN"]["Ref"], variables["GMP_CORRELATION_SECRET_ARN"]["Ref"]}
    secrets = statements_with(synth.role_statements(API_HANDLER), "secretsmanager:")
    assert actions_of(secrets) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert set().union(*(_resource_ids(s) for s in secrets)) == named


def test_api_can_invoke_the_reporter_only(synth: Synthesis) -> None:
    reporter_id, _ = synth.function(REPORTER_HANDLER)
    invoke = statements_with(synth.role_statements(API_HANDLER), "lambda:")
    assert actions_of(invoke) == {"lambda:InvokeFunction"}
    assert set().union(*(_resource_ids(s) for s in invoke)) == {reporter_id}
    for handler in (SENDER_HANDLER, REPORTER_HANDLER):
        assert not statements_with(synth.role_statements(handler), "lambda:")


def test_sender_decrypts_and_has_no_kms_encrypt(synth: Synthesis) -> None:
    kms = statements_with(synth.role_statements(SENDER_HANDLER), "kms:")
    assert actions_of(kms) == {"kms:Decrypt"}


def test_sender_reads_the_bucket_and_deletes_only_contents_of_ended_messages(synth: Synthesis) -> None:
    s3 = statements_with(synth.role_statements(SENDER_HANDLER), "s3:")
    assert actions_of(s3) == {"s3:GetObject", "s3:DeleteObject", "s3:PutObject", "s3:PutObjectTagging"}
    for statement in s3:
        writes = {"s3:PutObject", "s3:PutObjectTagging"} & set(actions_of([statement]))
        # Writes only large attachments offloaded for download (a tenant's large-file `rewrite`) and the raw
        # MIME of sandbox messages.
        resource = str(statement["Resource"])
        if writes:
            assert "/contents/downloads/*" in resource or "/contents/raw/*" in resource
        else:
            assert "/contents/*" in resource


def test_sender_consumes_and_re_enqueues_on_both_queues(synth: Synthesis) -> None:
    statements = synth.role_statements(SENDER_HANDLER)
    for queue in synth.work_queues():
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage"} <= (
            _actions_on(statements, queue)
        )
    for table in _tables(synth):
        assert _actions_on(statements, table) >= DYNAMODB_READ | DYNAMODB_WRITE


def test_sender_and_reporter_read_no_api_token(synth: Synthesis) -> None:
    _, api = synth.function(API_HANDLER)
    token_secret = api["Properties"]["Environment"]["Variables"]["GMP_API_TOKEN_SECRET_ARN"]["Ref"]
    for handler in (SENDER_HANDLER, REPORTER_HANDLER):
        assert not _actions_on(synth.role_statements(handler), token_secret)
    _, sender = synth.function(SENDER_HANDLER)
    correlation = sender["Properties"]["Environment"]["Variables"]["GMP_CORRELATION_SECRET_ARN"]["Ref"]
    secrets = statements_with(synth.role_statements(SENDER_HANDLER), "secretsmanager:")
    assert set().union(*(_resource_ids(s) for s in secrets)) == {correlation}  # signs X-Genro-Mail-ID only


def test_reporter_has_no_s3_and_only_decrypts_tenant_secrets(synth: Synthesis) -> None:
    statements = synth.role_statements(REPORTER_HANDLER)
    assert not statements_with(statements, "s3:")
    kms = statements_with(statements, "kms:")
    assert actions_of(kms) == {"kms:Decrypt"}  # a tenant's report credentials are stored encrypted
    assert all(_resource_ids(s) <= _ids(synth, "AWS::KMS::Key") for s in kms)


def test_reporter_writes_messages_but_in_config_only_the_sync_state(synth: Synthesis) -> None:
    messages, config = _tables(synth)
    statements = synth.role_statements(REPORTER_HANDLER)
    assert _actions_on(statements, messages) >= DYNAMODB_READ | DYNAMODB_WRITE
    assert _actions_on(statements, config) >= DYNAMODB_READ
    writes = [s for s in statements if config in _resource_ids(s) and set(actions_of([s])) & DYNAMODB_WRITE]
    assert actions_of(writes) == {"dynamodb:UpdateItem"}
    assert all(s["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["SYNC"]}} for s in writes)


def test_reporter_sends_to_both_queues_and_consumes_neither(synth: Synthesis) -> None:
    statements = synth.role_statements(REPORTER_HANDLER)
    for queue in synth.work_queues():
        actions = _actions_on(statements, queue)
        assert "sqs:SendMessage" in actions
        assert "sqs:ReceiveMessage" not in actions and "sqs:DeleteMessage" not in actions


def test_reporter_reads_only_the_client_sync_secret(synth: Synthesis) -> None:
    _, reporter = synth.function(REPORTER_HANDLER)
    sync_secret = reporter["Properties"]["Environment"]["Variables"]["GMP_CLIENT_SYNC_SECRET_ARN"]["Ref"]
    secrets = statements_with(synth.role_statements(REPORTER_HANDLER), "secretsmanager:")
    assert actions_of(secrets) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert set().union(*(_resource_ids(s) for s in secrets)) == {sync_secret}


def test_no_function_touches_the_dead_letter_queues_but_the_jobs_worker_its_own(synth: Synthesis) -> None:
    dlqs = synth.dead_letter_queues()
    assert len(dlqs) == 4
    handlers = (API_HANDLER, SENDER_HANDLER, REPORTER_HANDLER, STREAM_HANDLER, JOBS_HANDLER, BOUNCER_HANDLER)
    for handler in (*handlers, SES_EVENTS_HANDLER):
        for dlq in dlqs - ({synth.jobs_dlq()} if handler == JOBS_HANDLER else set()):
            assert not _actions_on(synth.role_statements(handler), dlq)
    # The jobs worker consumes its DLQ (a continuation there ends its job failed), and sends nothing to it.
    assert "sqs:SendMessage" not in _actions_on(synth.role_statements(JOBS_HANDLER), synth.jobs_dlq())
