"""Storage: the two DynamoDB tables of docs/design.md and the bucket for large message contents."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mailproxy.dal.contents import CONTENTS_PREFIX, EXPIRE_TAG
from stacks.settings import Settings, acknowledge

TTL_ATTRIBUTE = "expires_at"

_S = dynamodb.AttributeType.STRING
_N = dynamodb.AttributeType.NUMBER


def _table(scope: Construct, construct_id: str, stream: dynamodb.StreamViewType | None = None) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name="pk", type=_S),
        sort_key=dynamodb.Attribute(name="sk", type=_S),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=TTL_ATTRIBUTE,
        removal_policy=RemovalPolicy.RETAIN,
        stream=stream,
    )


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)

        # The stream feeds the stream reporter (stacks/stream_reporter.py): reports within seconds of an outcome.
        self.messages_table = _table(self, "MessagesTable", stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES)
        self.messages_table.add_global_secondary_index(
            index_name="pending_reports",
            partition_key=dynamodb.Attribute(name="rpt_pk", type=_S),
            sort_key=dynamodb.Attribute(name="rpt_sk", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.messages_table.add_global_secondary_index(
            index_name="due",
            partition_key=dynamodb.Attribute(name="due_pk", type=_S),
            sort_key=dynamodb.Attribute(name="due_ts", type=_N),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=["tenant_id", "id", "account_id", "priority"],
        )

        self.config_table = _table(self, "ConfigTable")

        self.body_bucket = s3.Bucket(
            self,
            "BodyBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                # Only contents tagged for expiry: a suspended or far-deferred message's is tagged "no"
                # until it is released (mailproxy/dal/contents.py).
                s3.LifecycleRule(
                    id="expire-contents",
                    prefix=CONTENTS_PREFIX,
                    tag_filters={EXPIRE_TAG: "yes"},
                    expiration=Duration.days(settings.body_retention_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    prefix=CONTENTS_PREFIX,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        acknowledge(
            self.body_bucket,
            "AwsSolutions-S1",
            "The bucket holds only message contents written and read by this stack's own functions "
            "(IAM-scoped to contents/*); every access is already traced per message id in the function "
            "logs. A server-access-log bucket would add a second bucket with no consumer.",
        )
