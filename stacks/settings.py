"""Deployment settings: read from the CDK context (`cdk.json`, `cdk ... -c key=value`), checked once.

Every field has a default, so an empty context deploys the documented architecture. Values given with
`-c` arrive as strings; pydantic coerces them ("2" -> 2, "false" -> False) and rejects nonsense with a
message that names the context key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aws_cdk import Acknowledgment, CfnElement, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct, Node
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailproxy.config import (
    DUE_SHARDS,
    MAX_SHARDS,
    REPORT_SHARDS,
    TENANT_INDEX_SHARDS,
    claim_lease_for,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

NAG_PLUGIN = "AwsSolutions"  # the cdk-nag pack's plugin name: acknowledgement ids are "<plugin>::<rule>"

# Runtime of the three functions; stacks.build_layer.PYTHON_VERSION builds the layer for the same Python.
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_11

_RETENTION_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

# EventBridge: "rate(1 minute)" singular, "rate(5 minutes)" plural; or a six-field cron(...).
_SCHEDULE = re.compile(r"^(rate\((1 (minute|hour|day)|[1-9]\d* (minutes|hours|days))\)|cron\(\S+( \S+){5}\))$")


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge a cdk-nag finding on `construct` and its children, with the reason on record."""
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{NAG_PLUGIN}::{rule_id}", reason=reason))


def logical_id(element: CfnElement) -> str:
    """The CloudFormation logical id of `element`, as cdk-nag spells it in finding ids (<Id.Arn>)."""
    stack = Stack.of(element)
    return str(stack.resolve(stack.get_logical_id(element)))


def arn_of(construct: IConstruct) -> str:
    """cdk-nag's spelling of the ARN of an L2 construct's resource: `<LogicalId.Arn>`."""
    default_child = construct.node.default_child
    assert isinstance(default_child, CfnElement)
    return f"<{logical_id(default_child)}.Arn>"


class SettingsError(ValueError):
    """A context value is invalid; the message names the context key."""


class Settings(BaseModel):
    """The context keys this app reads (all optional)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # network
    nat: Literal["gateway", "instance", "none"] = Field(
        default="gateway",
        description="the sender's egress: NAT gateway(s), NAT instance(s) (t4g.nano), or none (no VPC, no fixed IP)",
    )
    nat_gateways: int = Field(default=1, ge=1, le=2, description="NAT gateways or instances (one per AZ at most)")
    # functions (arm64: the layer's binary wheels all exist for aarch64, and Graviton costs 20 % less)
    architecture: Literal["x86_64", "arm64"] = "arm64"
    api_memory_mb: int = Field(default=512, ge=128, le=10240)
    sender_memory_mb: int = Field(default=512, ge=128, le=10240)
    reporter_memory_mb: int = Field(default=256, ge=128, le=10240)
    api_timeout_seconds: int = Field(default=29, ge=3, le=29, description="API Gateway integration cap: 29 s")
    sender_timeout_seconds: int = Field(default=60, ge=10, le=900)
    reporter_timeout_seconds: int = Field(default=60, ge=10, le=900)
    sender_reserved_concurrency: int | None = Field(default=None, ge=1)
    sender_batch_size: int = Field(default=10, ge=1, le=10)
    sender_batching_window_seconds: int = Field(default=1, ge=0, le=300)
    sender_max_concurrency: int = Field(
        default=10,
        ge=2,
        le=1000,
        description="most concurrent sender invocations each work queue's event source starts (AWS: 2..1000)",
    )
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    log_retention_days: int = 30
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_delivery_activity: bool = False
    # reporter
    report_schedule: str = "rate(1 minute)"
    client_sync_url: str | None = None
    attachment_buckets: list[str] = Field(
        default_factory=list, description="S3 buckets the sender may read attachments from (s3:// references)"
    )
    # api
    public_url: str | None = Field(
        default=None, description="the API's URL on a custom domain, for hosted unsubscribe links; default its own"
    )
    api_throttle_rate_limit: float = Field(default=50, gt=0)
    api_throttle_burst_limit: int = Field(default=100, ge=1)
    api_access_logs: bool = Field(default=True, description="JSON access logs of the REST API stage")
    api_account_logging_role: bool = Field(
        default=True,
        description="create the region's API Gateway CloudWatch role (AWS::ApiGateway::Account) that access "
        "logs need; false when the account already has one managed elsewhere",
    )
    # jobs: bulk tenant operations (mailproxy/logic/jobs.py)
    jobs_memory_mb: int = Field(default=256, ge=128, le=10240)
    jobs_timeout_seconds: int = Field(default=300, ge=60, le=900, description="one jobs-worker run")
    job_inline_budget_seconds: float = Field(
        default=5,
        gt=0,
        le=20,
        description="seconds a bulk operation runs inside its API call before answering 202 (below the API's 29 s)",
    )
    # index shards (mailproxy/dal/keys.py): readers query shards 0..count-1, so a count may only grow
    due_shards: int = Field(default=DUE_SHARDS, ge=DUE_SHARDS, le=MAX_SHARDS)
    report_shards: int = Field(default=REPORT_SHARDS, ge=REPORT_SHARDS, le=MAX_SHARDS)
    tenant_index_shards: int = Field(default=TENANT_INDEX_SHARDS, ge=TENANT_INDEX_SHARDS, le=MAX_SHARDS)
    # storage
    body_retention_days: int = Field(default=30, ge=1, description="S3 lifecycle: large contents expire")
    # monitoring
    alarm_email: str | None = None
    oldest_message_alarm_seconds: int = Field(default=900, ge=60)
    # SES reviews an account at 0.1 % complaints and may pause it at 0.5 %: warn at the first.
    complaint_rate_alarm_percent: float = Field(default=0.1, gt=0, le=100)
    # packaging (tests point this at a tiny directory; default build/layer-<architecture>)
    layer_dir: str | None = None

    @field_validator(
        "client_sync_url", "alarm_email", "layer_dir", "sender_reserved_concurrency", "public_url", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", "none", "null") else value

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in _RETENTION_DAYS:
            raise ValueError(f"must be one of {sorted(_RETENTION_DAYS)}")
        return value

    @field_validator("report_schedule")
    @classmethod
    def _schedule_expression(cls, value: str) -> str:
        if not _SCHEDULE.match(value):
            raise ValueError("must be an EventBridge rate(...) or cron(...) expression")
        return value

    @field_validator("client_sync_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s):// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^\s/]+(/\S*)?$", value):
            raise ValueError("must be an https:// URL (RFC 8058 one-click links are https)")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError("must be an e-mail address")
        return value

    @model_validator(mode="after")
    def _inline_job_fits_the_api(self) -> Settings:
        if self.job_inline_budget_seconds > self.api_timeout_seconds - 5:
            raise ValueError("job_inline_budget_seconds must leave the API 5 s of api_timeout_seconds")
        return self

    @model_validator(mode="after")
    def _burst_covers_rate(self) -> Settings:
        if self.api_throttle_burst_limit < self.api_throttle_rate_limit:
            raise ValueError("api_throttle_burst_limit must be >= api_throttle_rate_limit")
        return self

    # --- derived values -------------------------------------------------------------------------

    @property
    def lambda_architecture(self) -> lambda_.Architecture:
        return lambda_.Architecture.ARM_64 if self.architecture == "arm64" else lambda_.Architecture.X86_64

    @property
    def in_vpc(self) -> bool:
        """The sender runs in a VPC (behind NAT, with fixed public IPs) unless `nat` is none."""
        return self.nat != "none"

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION_DAYS[self.log_retention_days]

    @property
    def claim_lease_seconds(self) -> int:
        """A claim outlives the longest sender invocation that can hold it: no live send is re-claimed."""
        return claim_lease_for(self.sender_timeout_seconds)

    @property
    def shard_environment(self) -> dict[str, str]:
        """Every function reads and writes the sharded indexes with the same counts."""
        return {
            "GMP_DUE_SHARDS": str(self.due_shards),
            "GMP_REPORT_SHARDS": str(self.report_shards),
            "GMP_TENANT_INDEX_SHARDS": str(self.tenant_index_shards),
        }

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        """AWS guidance for SQS-triggered functions: 6 x the function timeout + the batching window."""
        return 6 * self.sender_timeout_seconds + self.sender_batching_window_seconds

    def resolved_layer_dir(self) -> Path:
        if self.layer_dir:
            path = Path(self.layer_dir)
            return path if path.is_absolute() else PROJECT_ROOT / path
        return PROJECT_ROOT / "build" / f"layer-{self.architecture}"

    @classmethod
    def from_context(cls, node: Node) -> Settings:
        values = {name: node.try_get_context(name) for name in cls.model_fields}
        return cls.parse({k: v for k, v in values.items() if v is not None})

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Settings:
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"context '{'.'.join(str(p) for p in err['loc']) or '*'}': {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"bad CDK context: {problems}") from None


@dataclass(frozen=True)
class FunctionCommon:
    """What the three functions share: one code asset, one dependency layer, the base environment."""

    settings: Settings
    code: lambda_.Code
    layer: lambda_.ILayerVersion
    environment: dict[str, str] = field(default_factory=dict)

    def create(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        memory_mb: int,
        timeout_seconds: int,
        environment: dict[str, str],
        managed_policies: Sequence[str] = (),
        **extra: Any,
    ) -> lambda_.Function:
        """A function with its own log group and its own role, which may write to that log group only."""
        log_group = logs.LogGroup(scope, f"{construct_id}Logs", retention=self.settings.log_retention)
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(name) for name in managed_policies],
        )
        log_group.grant_write(role)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing (tracing ACTIVE) needs xray:PutTraceSegments and xray:PutTelemetryRecords, and "
            "the stream reporter's DynamoDB stream event source (CDK's grant) dynamodb:ListStreams: none of "
            "them supports resource-level permissions, so they cannot be scoped.",
        )
        function = lambda_.Function(
            scope,
            construct_id,
            description=description,
            runtime=LAMBDA_RUNTIME,
            architecture=self.settings.lambda_architecture,
            code=self.code,
            handler=handler,
            layers=[self.layer],
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            environment={**self.environment, **environment},
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            role=role,
            **extra,
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            f"Runtime pinned to {LAMBDA_RUNTIME.name}: the dependency layer is built for that Python "
            "(stacks/build_layer.py) and the application is tested on it; upgrade both together.",
        )
        return function
