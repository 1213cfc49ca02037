"""Sender: the SQS-triggered SMTP function, in the private subnets behind NAT (outside any VPC if nat=none)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from mailproxy.dal.contents import DOWNLOADS_PREFIX, RAW_PREFIX
from stacks.network import Network
from stacks.queues import Queues
from stacks.secrets import Secrets
from stacks.settings import FunctionCommon, Settings, acknowledge, arn_of
from stacks.storage import CONTENTS_PREFIX, Storage

HANDLER = "functions.sender.handler.handler"
VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"


class Sender(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        common: FunctionCommon,
        network: Network | None,
        storage: Storage,
        queues: Queues,
        secrets: Secrets,
    ) -> None:
        super().__init__(scope, construct_id)

        # Outside a VPC the function needs no ENI permissions and has no fixed public IP (docs/deploy.md).
        placement: dict[str, Any] = {}
        if network is not None:
            placement = {
                "vpc": network.vpc,
                "vpc_subnets": network.sender_subnets,
                "security_groups": [network.sender_security_group],
            }
        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy SMTP sender (SQS-triggered)",
            memory_mb=settings.sender_memory_mb,
            timeout_seconds=settings.sender_timeout_seconds,
            environment={
                "GMP_BODY_BUCKET": storage.body_bucket.bucket_name,
                "GMP_KMS_KEY_ID": secrets.smtp_password_key.key_arn,
                "GMP_ATTACHMENT_BUCKETS": ",".join(settings.attachment_buckets),
                "GMP_LEASE_SECONDS": str(settings.claim_lease_seconds),
                "GMP_CORRELATION_SECRET_ARN": secrets.correlation.secret_arn,  # signs X-Genro-Mail-ID
            },
            reserved_concurrent_executions=settings.sender_reserved_concurrency,
            managed_policies=[VPC_ACCESS_POLICY] if network is not None else [],
            **placement,
        )
        fn = self.function
        assert fn.role is not None
        if network is not None:
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{VPC_ACCESS_POLICY}]",
                "The AWS-managed policy Lambda needs to attach the function to the VPC (ENI create/describe/"
                "delete, which support no resource-level scoping); logs are granted on the function's own "
                "log group only.",
            )

        storage.messages_table.grant_read_write_data(fn)
        storage.config_table.grant_read_write_data(fn)  # accounts + rate-limit counters
        for queue in queues.work_queues:
            queue.grant_send_messages(fn)  # re-enqueue with a delay
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="BodyContentsRead",
                # DeleteObject: an ended message's large content is deleted at once (docs/design.md).
                actions=["s3:GetObject", "s3:DeleteObject"],
                resources=[storage.body_bucket.arn_for_objects(f"{CONTENTS_PREFIX}*")],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="LargeAttachmentDownloadsWrite",
                # A tenant's large-file `rewrite`: the attachment uploaded (tagged for the lifecycle rule)
                # and linked by a presigned GET, which the GetObject above covers.
                actions=["s3:PutObject", "s3:PutObjectTagging"],
                resources=[storage.body_bucket.arn_for_objects(f"{DOWNLOADS_PREFIX}*")],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="RawMessagesWrite",
                # The MIME as built, of sandbox accounts (and keep_raw_seconds), read by GET /messages/{id}/raw
                # through the API's contents/* read; tagged for the lifecycle rule like the contents.
                actions=["s3:PutObject", "s3:PutObjectTagging"],
                resources=[storage.body_bucket.arn_for_objects(f"{RAW_PREFIX}*")],
            )
        )
        secrets.smtp_password_key.grant(fn, "kms:Decrypt")
        secrets.correlation.grant_read(fn)
        if settings.attachment_buckets:
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    sid="AttachmentBucketsRead",
                    actions=["s3:GetObject"],
                    resources=[f"arn:aws:s3:::{bucket}/*" for bucket in settings.attachment_buckets],
                )
            )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.messages_table)}/index/*]",
            "The read/write table grant also covers the messages table's GSIs (docs/design.md); the "
            "wildcard is limited to this one table's indexes.",
        )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.body_bucket)}/{CONTENTS_PREFIX}*]",
            "Reads large contents stored per message under contents/<tenant>/<id>.json: the prefix only.",
        )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.body_bucket)}/{DOWNLOADS_PREFIX}*]",
            "Writes large attachments offloaded per message under contents/downloads/<tenant>/<id>/: the prefix only.",
        )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.body_bucket)}/{RAW_PREFIX}*]",
            "Writes the raw MIME of sandbox messages under contents/raw/<tenant>/<id>.eml: the prefix only.",
        )

        window = settings.sender_batching_window_seconds
        # The event sources grant the consume actions, ChangeMessageVisibility included: a record that arrived
        # before its message was stored is retried within seconds (mailproxy/logic/orphans.py).
        for queue in queues.work_queues:
            fn.add_event_source(
                event_sources.SqsEventSource(
                    queue,
                    batch_size=settings.sender_batch_size,
                    max_batching_window=Duration.seconds(window) if window else None,
                    report_batch_item_failures=True,
                    # Per queue: bounds the SMTP connections a burst opens (docs/deploy.md).
                    max_concurrency=settings.sender_max_concurrency,
                )
            )
