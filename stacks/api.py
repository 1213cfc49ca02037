"""API: the FastAPI/Mangum function behind an API Gateway REST API (proxy integration, throttled)."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.queues import Queues
from stacks.secrets import Secrets
from stacks.settings import FunctionCommon, Settings, acknowledge, arn_of
from stacks.storage import CONTENTS_PREFIX, Storage

HANDLER = "functions.api.handler.handler"


class Api(Construct):
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
        reporter: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)

        self.function = common.create(
            self,
            "Function",
            handler=HANDLER,
            description="genro-mail-proxy REST API (FastAPI behind Mangum)",
            memory_mb=settings.api_memory_mb,
            timeout_seconds=settings.api_timeout_seconds,
            environment={
                "GMP_BODY_BUCKET": storage.body_bucket.bucket_name,
                "GMP_KMS_KEY_ID": secrets.smtp_password_key.key_arn,
                "GMP_API_TOKEN_SECRET_ARN": secrets.api_token.secret_arn,
                "GMP_CORRELATION_SECRET_ARN": secrets.correlation.secret_arn,  # verifies unsubscribe links
                "GMP_REPORTER_FUNCTION_NAME": reporter.function_name,
            },
        )
        fn = self.function

        # Least privilege: exactly what the routes use.
        storage.messages_table.grant_read_write_data(fn)
        storage.config_table.grant_read_write_data(fn)
        for queue in queues.work_queues:
            queue.grant_send_messages(fn)  # SendMessage + GetQueueAttributes (GET /status) + GetQueueUrl
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="BodyContentsReadWrite",
                # Tagging and the copy in place: a suspended message's content is held past the lifecycle rule.
                actions=["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"],
                resources=[storage.body_bucket.arn_for_objects(f"{CONTENTS_PREFIX}*")],
            )
        )
        secrets.smtp_password_key.grant(fn, "kms:Encrypt")
        secrets.api_token.grant_read(fn)
        secrets.correlation.grant_read(fn)
        reporter.grant_invoke(fn)  # POST /commands/run-now
        assert fn.role is not None
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.messages_table)}/index/*]",
            "CDK's table grant adds the table's indexes; the wildcard covers only this table's indexes.",
        )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(storage.body_bucket)}/{CONTENTS_PREFIX}*]",
            "Large contents are stored per message under contents/<tenant>/<id>.json: the prefix only.",
        )
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(reporter)}:*]",
            "lambda:InvokeFunction on the reporter function and its versions/aliases, nothing else.",
        )

        self.rest_api = apigw.LambdaRestApi(
            self,
            "RestApi",
            handler=fn,
            proxy=True,
            description="genro-mail-proxy REST API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=settings.api_access_logs and settings.api_account_logging_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,  # other APIs of the region may log through it
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                throttling_rate_limit=settings.api_throttle_rate_limit,
                throttling_burst_limit=settings.api_throttle_burst_limit,
                tracing_enabled=True,
                **self._access_logs(settings),
            ),
        )
        # The stack's ApiUrl output is the documented one; drop the construct's duplicate.
        self.rest_api.node.try_remove_child("Endpoint")
        if not settings.api_access_logs:
            acknowledge(
                self.rest_api,
                "AwsSolutions-APIG1",
                "Access logs turned off by the api_access_logs setting; the API function logs every request "
                "(structured JSON with the message id).",
            )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG6",
            "Execution logging would write request and response details (tokens, message bodies) to "
            "CloudWatch; the stage has JSON access logs and the API function logs and traces (X-Ray) errors.",
        )
        role = self.rest_api.node.try_find_child("CloudWatchRole")
        if role is not None:
            acknowledge(
                role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "The AWS-managed policy API Gateway documents for the region's logging role: it only "
                "creates and writes log groups and streams.",
            )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG2",
            "Proxy integration: the FastAPI app validates every request body and answers 422 naming "
            "the field, which API Gateway models would duplicate.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "The API is authenticated by a 48-character token and throttled at the stage; attach a "
            "WAF web ACL if your organisation requires one.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG4",
            "Clients of the original service authenticate with the X-API-Token header, checked in "
            "constant time by the app (docs/api.md, Authentication); an API Gateway authorizer would break them.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-COG4",
            "Machine-to-machine API authenticated by X-API-Token (docs/api.md); there are no Cognito users.",
        )

    def _access_logs(self, settings: Settings) -> dict[str, Any]:
        if not settings.api_access_logs:
            return {}
        self.access_log_group = logs.LogGroup(self, "AccessLogs", retention=settings.log_retention)
        return {
            "access_log_destination": apigw.LogGroupLogDestination(self.access_log_group),
            # No header, body or query string: a token or a message's content never reaches these logs.
            "access_log_format": apigw.AccessLogFormat.json_with_standard_fields(
                caller=False,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=False,
            ),
        }

    @property
    def url(self) -> str:
        return self.rest_api.url
