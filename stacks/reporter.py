"""Reporter: on a schedule, re-enqueues due deferred messages and POSTs delivery reports to the client."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.queues import Queues
from stacks.secrets import Secrets
from stacks.settings import FunctionCommon, Settings, acknowledge, arn_of
from stacks.storage import Storage

HANDLER = "functions.reporter.handler.handler"
# One run at a time: two overlapping runs would post the same outbox twice (a slow client, a run-now
# during a scheduled run); the next schedule picks up what a run left.
REPORTER_CONCURRENCY = 1


class Reporter(Construct):
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
            "GMP_STREAM_FAILURES_QUEUE_URL": queues.stream_failures.queue_url,
        }
        if settings.client_sync_url:  # unset = reports are kept until it is set (docs/deploy.md, "Settings")
            environment["GMP_CLIENT_SYNC_URL"] = settings.client_sync_url

        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy reporter: due deferred messages and delivery reports",
            memory_mb=settings.reporter_memory_mb,
            timeout_seconds=settings.reporter_timeout_seconds,
            environment=environment,
            reserved_concurrent_executions=REPORTER_CONCURRENCY,
        )
        fn = self.function

        storage.messages_table.grant_read_write_data(fn)
        storage.config_table.grant_read_data(fn)
        # Its one write in the config table: each tenant's sync state (pk SYNC, mailproxy/dal/sync_state.py).
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"],
                resources=[storage.config_table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["SYNC"]}},
            )
        )
        for queue in queues.work_queues:
            queue.grant_send_messages(fn)
        # The stream batches Lambda gave up on: their descriptions, and the records read again from the stream.
        queues.stream_failures.grant_consume_messages(fn)
        storage.messages_table.grant_stream_read(fn)
        secrets.client_sync.grant_read(fn)
        secrets.smtp_password_key.grant(fn, "kms:Decrypt")
        assert fn.role is not None
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.messages_table)}/index/*]",
            "The reporter queries the pending_reports and due indexes of docs/design.md; the wildcard covers "
            "only this table's indexes.",
        )

        self.schedule = events.Rule(
            self,
            "Schedule",
            description="genro-mail-proxy: run the reporter",
            schedule=events.Schedule.expression(settings.report_schedule),
            targets=[targets.LambdaFunction(fn)],
        )
