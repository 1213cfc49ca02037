"""IaC scanners' findings (checkov) that this stack acknowledges, each with its reason, as CloudFormation
metadata (``Metadata: {checkov: {skip: [{id, comment}]}}``) on the resources of the type concerned.

`make rehearse` runs checkov on the synthesized template and prints the failed count; a finding worth
fixing is fixed in the stack (the reporter's reserved concurrency of 1), the rest are listed here.
"""

from __future__ import annotations

from aws_cdk import CfnResource, Stack

CHECKOV_SKIPS: dict[str, list[tuple[str, str]]] = {
    "AWS::Lambda::Function": [
        (
            "CKV_AWS_115",
            "The reporter and the bouncer are limited to one instance; the API is throttled at its stage; the "
            "sender's cap is the sender_reserved_concurrency setting (docs/deploy.md), off by default so that "
            "the account's other functions keep their share; the stream reporter runs one batch per stream "
            "shard at a time; the jobs worker one invocation per running job (a job has one continuation).",
        ),
        (
            "CKV_AWS_116",
            "No asynchronous invocation carries data: the sender's and the jobs worker's records have their "
            "queues' dead-letter queues, the API is synchronous, the stream reporter's failed records are "
            "retried by its event source mapping (an undeliverable report waits in the outbox), a failed "
            "reporter or bouncer run is redone by the next schedule.",
        ),
        (
            "CKV_AWS_117",
            "Only the sender, which talks SMTP to the Internet, is in the VPC (fixed NAT IPs; none with nat=none); "
            "the other functions call AWS APIs, the client's HTTPS endpoint and IMAPS mailboxes, which a VPC "
            "would not protect.",
        ),
        (
            "CKV_AWS_173",
            "The environment holds names, ARNs and URLs only; secrets are in Secrets Manager "
            "and SMTP passwords are KMS-encrypted in the table.",
        ),
    ],
    "AWS::EC2::Instance": [  # nat=instance only (docs/deploy.md)
        (
            "CKV_AWS_79",
            "The NAT instance (nat=instance) runs no application and holds no credential worth stealing "
            "from its metadata service; CDK's NAT instance provider offers no launch template for IMDSv2.",
        ),
        (
            "CKV_AWS_135",
            "t4g.nano is EBS-optimized by default; the check reads only an explicit EbsOptimized property.",
        ),
    ],
    "AWS::DynamoDB::Table": [
        (
            "CKV_AWS_119",
            "Encrypted at rest with the AWS-owned key; SMTP passwords and tenants' credentials "
            "are encrypted again with the stack's own KMS key before they are stored.",
        ),
    ],
    "AWS::SecretsManager::Secret": [
        (
            "CKV_AWS_149",
            "Encrypted with the aws/secretsmanager key; a customer key would add a key policy "
            "to maintain for a token that is shared with the client application anyway.",
        ),
    ],
    "AWS::Logs::LogGroup": [
        (
            "CKV_AWS_158",
            "Encrypted by CloudWatch Logs; the logs never carry passwords, tokens or message "
            "bodies (docs/reliability.md), so a customer key would only add cost.",
        ),
    ],
    "AWS::S3::Bucket": [
        (
            "CKV_AWS_18",
            "See the AwsSolutions-S1 acknowledgement: every access is by this stack's functions "
            "and logged per message id.",
        ),
        (
            "CKV_AWS_21",
            "Contents are written once and expire by lifecycle; versioning would keep deleted message contents.",
        ),
    ],
    "AWS::SQS::Queue": [
        ("CKV_AWS_27", "Encrypted: SqsManagedSseEnabled (SQS-managed SSE), which this check does not recognise."),
    ],
    "AWS::SNS::Topic": [
        (
            "CKV_AWS_26",
            "Alarm notifications carry no message data; a KMS key would need a key policy for CloudWatch alarms.",
        ),
    ],
    "AWS::ApiGateway::Method": [
        (
            "CKV_AWS_59",
            "Every route but /health is authenticated by the X-API-Token header in the app "
            "(constant-time compare), as the original service's clients expect (AwsSolutions-APIG4).",
        ),
    ],
    "AWS::ApiGateway::Stage": [
        (
            "CKV_AWS_120",
            "Responses are per token and change with every call (status, messages): a cache "
            "would serve stale or another caller's data.",
        ),
    ],
}


def acknowledge_scanner_findings(stack: Stack) -> None:
    for construct in stack.node.find_all():
        if not isinstance(construct, CfnResource):
            continue
        skips = CHECKOV_SKIPS.get(construct.cfn_resource_type)
        if skips:
            construct.add_metadata("checkov", {"skip": [{"id": i, "comment": c} for i, c in skips]})
