"""SES events: an SNS topic that a SES configuration set publishes Bounce, Complaint and Delivery events to
(docs/bounces.md, "SES"), the SES events queue subscribed to it, and the function that records them
(functions/ses_events). Outside the VPC: it talks to AWS services only."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from mailproxy.dal.counters import METRICS_PK
from stacks.queues import SES_EVENTS_TIMEOUT_SECONDS, Queues
from stacks.secrets import Secrets
from stacks.settings import FunctionCommon
from stacks.storage import Storage

HANDLER = "functions.ses_events.handler.handler"
SES_EVENTS_MEMORY_MB = 256
# The config partitions it writes: the suppression list and the bounce counters.
CONFIG_WRITE_PARTITIONS = ["SUPPRESS#*", METRICS_PK]


class SesEvents(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        common: FunctionCommon,
        storage: Storage,
        queues: Queues,
        secrets: Secrets,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Topic", display_name="genro-mail-proxy SES events", enforce_ssl=True)
        # Only SES, on behalf of this account, publishes to it (the confused-deputy condition AWS documents).
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("ses.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"AWS:SourceAccount": Stack.of(self).account}},
            )
        )
        # Raw delivery: the queue's message body is the SES event itself, not an SNS envelope around it.
        self.topic.add_subscription(subscriptions.SqsSubscription(queues.ses_events_queue, raw_message_delivery=True))

        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy SES events: bounces and complaints from a SES configuration set",
            memory_mb=SES_EVENTS_MEMORY_MB,
            timeout_seconds=SES_EVENTS_TIMEOUT_SECONDS,
            environment={"GMP_CORRELATION_SECRET_ARN": secrets.correlation.secret_arn},  # verifies X-Genro-Mail-ID
        )
        fn = self.function
        fn.add_event_source(
            sources.SqsEventSource(queues.ses_events_queue, batch_size=10, report_batch_item_failures=True)
        )
        secrets.correlation.grant_read(fn)
        # The messages: read a status item, record a notice on it (MessageStore.record_bounce).
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"], resources=[storage.messages_table.table_arn]
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[storage.config_table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": CONFIG_WRITE_PARTITIONS}},
            )
        )
