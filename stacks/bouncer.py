"""Bouncer: every minute, reads the bounce and PEC mailboxes over IMAPS (functions/bouncer). Outside the VPC:
it needs no fixed egress address, only the mail servers' IMAPS ports."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.secrets import Secrets
from stacks.settings import FunctionCommon, Settings
from stacks.storage import Storage

HANDLER = "functions.bouncer.handler.handler"
BOUNCER_MEMORY_MB = 256
BOUNCER_TIMEOUT_SECONDS = 55  # within the minute of the schedule
# One run at a time: two overlapping runs would read the same new mail (harmless, but twice the work).
BOUNCER_CONCURRENCY = 1
# Config items it reads: the bounce config, the accounts and tenants (PEC inboxes); it writes mailbox state,
# the PEC acceptance waits, the suppression list and the bounce counters.
CONFIG_WRITE_PARTITIONS = ["MAILBOX", "PECWAIT#*", "SUPPRESS#*", "METRICS"]


class Bouncer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        common: FunctionCommon,
        storage: Storage,
        secrets: Secrets,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy bouncer: bounce and PEC mailboxes",
            memory_mb=BOUNCER_MEMORY_MB,
            timeout_seconds=BOUNCER_TIMEOUT_SECONDS,
            environment={
                "GMP_KMS_KEY_ID": secrets.smtp_password_key.key_arn,  # decrypts the IMAP passwords
                "GMP_CORRELATION_SECRET_ARN": secrets.correlation.secret_arn,  # verifies X-Genro-Mail-ID
            },
            reserved_concurrent_executions=BOUNCER_CONCURRENCY,
        )
        fn = self.function
        secrets.correlation.grant_read(fn)
        storage.config_table.grant_read_data(fn)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                resources=[storage.config_table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": CONFIG_WRITE_PARTITIONS}},
            )
        )
        # The messages: read a status item, record a notice on it (MessageStore.record_bounce).
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[storage.messages_table.table_arn],
            )
        )
        secrets.smtp_password_key.grant(fn, "kms:Decrypt")

        self.schedule = events.Rule(
            self,
            "Schedule",
            description="genro-mail-proxy: poll the bounce and PEC mailboxes",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[targets.LambdaFunction(fn)],
        )
