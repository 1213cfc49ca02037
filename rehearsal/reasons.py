"""Why a granted (action x resource) that the rehearsal never saw used stays in the stack.

Each entry: (function glob, action glob, resource glob over the template's spelling of the resource, e.g.
``<StorageMessagesTable*.Arn>/index/*``), and the reason. The first matching entry wins. A grant unused in
the rehearsal and matched by no entry fails it: remove the grant from the stack, or say here which path of
the code (or which AWS service acting with the role) needs it.
"""

from __future__ import annotations

from rehearsal.policy import action_matches, resource_matches

_RUNTIME = "used by the Lambda service with the function's role, never by the code"
_SCENARIO = (
    "a path the one-message scenario does not take (deferrals and retries, rate-limit counters, tenants, "
    "suspensions, campaigns, cleanup); covered by tests/integration"
)

REASONS: list[tuple[str, str, str, str]] = [
    ("*", "logs:CreateLogStream", "*", f"the function's log stream: {_RUNTIME}"),
    ("*", "logs:PutLogEvents", "*", f"the function's log events: {_RUNTIME}"),
    ("*", "logs:CreateLogGroup", "*", f"AWS managed policy of VPC functions: {_RUNTIME}"),
    ("*", "ec2:*", "*", f"AWSLambdaVPCAccessExecutionRole: the function's ENIs in the VPC, {_RUNTIME}"),
    (
        "*",
        "xray:Put*",
        "*",
        "X-Ray (tracing ACTIVE): segments go through the Lambda service's X-Ray daemon, "
        "which the rehearsal has not (AWS_XRAY_SDK_ENABLED=false)",
    ),
    ("sender", "sqs:ReceiveMessage", "*", f"the SQS event source mapping: {_RUNTIME}"),
    (
        "sender",
        "sqs:ChangeMessageVisibility",
        "*",
        f"the SQS event source mapping (a record left to its retry); {_RUNTIME}",
    ),
    ("sender", "sqs:DeleteMessage", "*", f"the SQS event source mapping (records done): {_RUNTIME}"),
    ("ses_events", "sqs:*", "*", f"the SES events queue's event source mapping: {_RUNTIME}"),
    (
        "stream_reporter",
        "sqs:*",
        "*StreamFailures*",
        f"the stream event source mapping's on-failure destination (a batch given up on): {_RUNTIME}",
    ),
    (
        "reporter",
        "sqs:*",
        "*StreamFailures*",
        "deleting a stream batch's description once read again: the scenario's stream batches all succeed "
        "(tests/integration/test_stream_repair.py)",
    ),
    (
        "reporter",
        "dynamodb:*",
        "*/stream/*",
        "reading a stream batch given up on again: the scenario's stream batches all succeed "
        "(tests/integration/test_stream_repair.py)",
    ),
    (
        "reporter",
        "dynamodb:ListStreams",
        "*",
        "part of CDK's grantStreamRead (no resource-level permission); the reporter reads a named stream only",
    ),
    (
        "jobs",
        "sqs:*",
        "*",
        "the jobs queue's event source mapping: the scenario's bulk calls finish within their API call, so no "
        f"job continues on the queue (tests/integration/test_jobs.py); {_RUNTIME}",
    ),
    (
        "jobs",
        "s3:*",
        "*/contents/*",
        "the in-place copy of a large content a suspension holds or an activation releases: " + _SCENARIO,
    ),
    (
        "stream_reporter",
        "dynamodb:ListStreams",
        "*",
        f"the DynamoDB Stream event source mapping (finding the table's stream): {_RUNTIME}",
    ),
    (
        "*",
        "sqs:GetQueueUrl",
        "*",
        "part of CDK's grantSendMessages / event-source grant; the code has the URLs "
        "from its environment. Harmless (names only)",
    ),
    ("sender", "sqs:GetQueueAttributes", "*", f"the SQS event source mapping: {_RUNTIME}"),
    (
        "reporter",
        "sqs:GetQueueAttributes",
        "*",
        "part of CDK's grantSendMessages; the reporter reads no queue attribute",
    ),
    ("api", "sqs:GetQueueAttributes", "*", "GET /status reads both queues' depth"),
    (
        "sender",
        "s3:PutObject*",
        "*/contents/downloads/*",
        "a tenant's large_file_config with action rewrite uploads oversized attachments for a download "
        "link; the scenario's tenant has none (tests/integration/test_large_files.py)",
    ),
    (
        "sender",
        "s3:PutObject",
        "*/contents/raw/*",
        "the raw MIME of a sandbox account's messages (or keep_raw_seconds), for GET /messages/{id}/raw; the "
        "scenario's account is no sandbox",
    ),
    (
        "api",
        "secretsmanager:GetSecretValue",
        "*Correlation*",
        "the correlation key verifies one-click unsubscribe links (POST /unsubscribe/{token}); the scenario "
        "follows none (tests/integration/test_unsubscribe.py)",
    ),
    (
        "*",
        "sqs:SendMessage",
        "*",
        "re-enqueue of deferred and swept messages, and the queue of the other priority: " + _SCENARIO,
    ),
    (
        "*",
        "dynamodb:GetRecords",
        "*",
        "part of CDK's grantReadData, on a table's or an index's ARN: a stream's records are under "
        "<table>/stream/<label>, which that ARN does not match, so it grants nothing",
    ),
    (
        "*",
        "dynamodb:GetShardIterator",
        "*",
        "part of CDK's grantReadData, on a table's or an index's ARN: a stream's shards are under "
        "<table>/stream/<label>, which that ARN does not match, so it grants nothing",
    ),
    (
        "*",
        "dynamodb:Query",
        "*/index/*",
        "the messages table's other indexes (pending_reports, due): " + _SCENARIO,
    ),
    ("*", "dynamodb:Scan", "*/index/*", "part of CDK's table grant; no code scans an index"),
    (
        "*",
        "dynamodb:*",
        "*/index/*",
        "CDK's table grant repeats every action on the index ARNs, where only Query and Scan apply",
    ),
    ("*", "dynamodb:ConditionCheckItem", "*", "part of CDK's table grant; the code uses no transactions"),
    (
        "*",
        "dynamodb:DescribeTable",
        "*",
        "part of CDK's table grant; only GET /status (api) describes the messages table",
    ),
    ("*", "dynamodb:Scan", "*", "cleanup-messages and the sweep fallback scan the messages table: " + _SCENARIO),
    ("*", "dynamodb:*", "*", _SCENARIO),
    (
        "api",
        "s3:GetObject",
        "*",
        "GET /messages with contents and the copy of a suspended message's content: " + _SCENARIO,
    ),
    ("*", "s3:DeleteObject", "*", "an ended message's large content is deleted: " + _SCENARIO),
    ("sender", "s3:GetObject", "*", "a large message's content: " + _SCENARIO),
    (
        "*",
        "s3:PutObjectTagging",
        "*",
        "a suspended or far-deferred message's content is tagged not to expire: " + _SCENARIO,
    ),
    (
        "*",
        "secretsmanager:DescribeSecret",
        "*",
        "part of CDK's grantRead; Powertools' get_secret calls GetSecretValue only",
    ),
    (
        "reporter",
        "secretsmanager:GetSecretValue",
        "*",
        "the client-sync credentials of the outbox's posts (read at most every 5 min): the stream reporter "
        "delivered the scenario's reports, the outbox stayed empty",
    ),
    ("*reporter", "kms:Decrypt", "*", "tenants' report credentials, encrypted at rest: " + _SCENARIO),
    (
        "bouncer",
        "kms:Decrypt",
        "*",
        "the IMAP passwords of the bounce and PEC mailboxes; the scenario configures none "
        "(tests/integration, against a real Dovecot)",
    ),
    ("sender", "kms:Decrypt", "*", "SMTP account passwords (decrypted once per container)"),
    (
        "api",
        "lambda:InvokeFunction",
        "*:*",
        "CDK's grantInvoke also covers the reporter's versions and aliases; run-now invokes $LATEST",
    ),
]


def reason_for(function: str, action: str, resource_label: str) -> str | None:
    for function_glob, action_glob, resource_glob, reason in REASONS:
        if (
            resource_matches(function_glob, function)
            and action_matches(action_glob, action)
            and resource_matches(resource_glob, resource_label)
        ):
            return reason
    return None
