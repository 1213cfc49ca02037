"""Jobs worker: continues bulk tenant operations (suspend, activate, cleanup, tenant deletion) from the jobs
queue (mailproxy/logic/jobs.py). Least privilege: on the messages table the Query of the tenants' listing items,
the status items' batch read, the updates of a suspension and the deletes of removed messages; on the config table the
items of jobs, suspensions and, for a tenant's deletion, its tenant, API-key and metric items; the contents
bucket's retagging and in-place copy of a held or released content; sending to the work queues (activation)
and to the jobs queue (its own continuation)."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from mailproxy.dal.contents import CONTENTS_PREFIX
from mailproxy.dal.counters import METRICS_PK
from mailproxy.dal.keys import TENANT_INDEX_PREFIX
from mailproxy.dal.tenants import API_KEY_PK, TENANT_PK
from stacks.queues import Queues
from stacks.settings import FunctionCommon, Settings, acknowledge, arn_of
from stacks.storage import Storage

HANDLER = "functions.jobs.handler.handler"
# The config partitions the worker writes: job items, suspensions, and a deleted tenant's own items.
CONFIG_PARTITIONS = ["JOB#*", "SUSPEND#*", TENANT_PK, API_KEY_PK, METRICS_PK]


class Jobs(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        common: FunctionCommon,
        storage: Storage,
        queues: Queues,
    ) -> None:
        super().__init__(scope, construct_id)

        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy jobs worker: bulk tenant operations, page by page with checkpoints",
            memory_mb=settings.jobs_memory_mb,
            timeout_seconds=settings.jobs_timeout_seconds,
            environment={
                "GMP_BODY_BUCKET": storage.body_bucket.bucket_name,
                "GMP_JOBS_DLQ_ARN": queues.jobs_dlq.queue_arn,
            },
        )
        fn = self.function
        # One job page at a time per invocation: a continuation carries one job. A continuation that reached the
        # DLQ comes back through its own mapping, which ends its job as failed (functions/jobs/handler.py).
        for queue in (queues.jobs_queue, queues.jobs_dlq):
            fn.add_event_source(sources.SqsEventSource(queue, batch_size=1, report_batch_item_failures=True))

        messages = storage.messages_table
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="TenantIndexRead",
                actions=["dynamodb:Query"],
                resources=[messages.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{TENANT_INDEX_PREFIX}*"]}},
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="MessageItems",
                # DeleteItem: removed messages and the listing items a walk finds empty.
                actions=["dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                resources=[messages.table_arn],
            )
        )
        config = storage.config_table
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="ConfigItems",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[config.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": CONFIG_PARTITIONS}},
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="HeldContents",
                # Tagging and the copy in place: a suspended message's content is held past the lifecycle rule.
                actions=["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"],
                resources=[storage.body_bucket.arn_for_objects(f"{CONTENTS_PREFIX}*")],
            )
        )
        for queue in [*queues.work_queues, queues.jobs_queue]:
            fn.add_to_role_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn]))
        assert fn.role is not None
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.body_bucket)}/{CONTENTS_PREFIX}*]",
            "Large contents are stored per message under contents/<tenant>/<id>.json: the prefix only.",
        )
