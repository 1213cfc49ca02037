"""Stream reporter: delivery reports within seconds, from the messages table's DynamoDB Stream
(mailproxy/logic/stream_reports.py). Its grants are the reporter's for posting, no more: the outbox write
on the messages table, reads of tenants and sync state and writes of the sync state in the config table,
the client-sync secret, KMS decrypt for tenants' credentials."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from mailproxy.dal.sync_state import SYNC_PK
from mailproxy.logic.stream_reports import (
    STREAM_BATCH_SIZE,
    STREAM_BATCHING_WINDOW_SECONDS,
    STREAM_FILTER,
    STREAM_RETRY_ATTEMPTS,
)
from stacks.queues import Queues
from stacks.secrets import Secrets
from stacks.settings import FunctionCommon, Settings
from stacks.storage import Storage

HANDLER = "functions.stream_reporter.handler.handler"


class StreamReporter(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        common: FunctionCommon,
        storage: Storage,
        queues: Queues,
        secrets: Secrets,
    ) -> None:
        super().__init__(scope, construct_id)

        environment = {
            "GMP_CLIENT_SYNC_SECRET_ARN": secrets.client_sync.secret_arn,
            "GMP_KMS_KEY_ID": secrets.smtp_password_key.key_arn,  # decrypts tenants' report credentials
        }
        if settings.client_sync_url:  # unset: every report goes to the outbox until it is set
            environment["GMP_CLIENT_SYNC_URL"] = settings.client_sync_url

        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy stream reporter: delivery reports within seconds of an outcome",
            memory_mb=settings.reporter_memory_mb,
            timeout_seconds=settings.reporter_timeout_seconds,
            environment=environment,
        )
        fn = self.function
        fn.add_event_source(
            sources.DynamoEventSource(
                storage.messages_table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=STREAM_BATCH_SIZE,
                max_batching_window=Duration.seconds(STREAM_BATCHING_WINDOW_SECONDS),
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                retry_attempts=STREAM_RETRY_ATTEMPTS,
                filters=[lambda_.FilterCriteria.filter(STREAM_FILTER)],
                # A batch still failing after its retries is described there, and read again by the reporter.
                on_failure=sources.SqsDlq(queues.stream_failures),
            )
        )

        # Its one write on a message: into the report outbox, when a report could not be delivered.
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[storage.messages_table.table_arn])
        )
        storage.config_table.grant_read_data(fn)  # tenants' report targets, the sync states
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"],
                resources=[storage.config_table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [SYNC_PK]}},
            )
        )
        secrets.client_sync.grant_read(fn)
        secrets.smtp_password_key.grant(fn, "kms:Decrypt")
