"""The whole deployment as one stack, composed of the small constructs of this package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from mailproxy.config import METRICS_NAMESPACE, SERVICE_NAME
from stacks.api import Api
from stacks.bouncer import Bouncer
from stacks.build_layer import STAMP_FILE
from stacks.jobs import Jobs
from stacks.monitoring import Monitoring
from stacks.network import Network
from stacks.queues import Queues
from stacks.reporter import Reporter
from stacks.scanners import acknowledge_scanner_findings
from stacks.secrets import Secrets
from stacks.sender import Sender
from stacks.ses_events import SesEvents
from stacks.settings import LAMBDA_RUNTIME, PROJECT_ROOT, FunctionCommon, Settings, SettingsError
from stacks.storage import Storage
from stacks.stream_reporter import StreamReporter

STACK_NAME = "GenroMailProxy"

# The function asset is an allow-list: the two packages the handlers import, minus caches and tests.
# (Glob patterns, gitignore semantics: later patterns win.)
CODE_ASSET_PATTERNS = [
    "*",
    ".*",
    "!functions",
    "!functions/**",
    "!mailproxy",
    "!mailproxy/**",
    "**/__pycache__",
    "**/*.py[cod]",
    "**/tests",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
]


def function_code(root: Path = PROJECT_ROOT) -> lambda_.Code:
    return lambda_.Code.from_asset(str(root), exclude=CODE_ASSET_PATTERNS)


def dependency_layer_code(layer_dir: Path) -> lambda_.Code:
    if not (layer_dir / "python").is_dir():
        raise SettingsError(
            f"Lambda layer directory {layer_dir} has no python/ folder: build it with "
            "`python -m stacks.build_layer` (make synth does), or pass -c layer_dir=<dir>."
        )
    return lambda_.Code.from_asset(str(layer_dir), exclude=[STAMP_FILE])


class MailProxyStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        layer_code = dependency_layer_code(settings.resolved_layer_dir())  # fail first if missing

        network = Network(self, "Network", settings=settings) if settings.in_vpc else None
        storage = Storage(self, "Storage", settings=settings)
        queues = Queues(self, "Queues", settings=settings)
        secrets = Secrets(self, "Secrets")

        layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=layer_code,
            description="genro-mail-proxy runtime dependencies (requirements.txt)",
            compatible_runtimes=[LAMBDA_RUNTIME],
            compatible_architectures=[settings.lambda_architecture],
        )
        common = FunctionCommon(
            settings=settings,
            code=function_code(),
            layer=layer,
            environment={
                "GMP_MODE": "aws",
                "GMP_MESSAGES_TABLE": storage.messages_table.table_name,
                "GMP_CONFIG_TABLE": storage.config_table.table_name,
                "GMP_URGENT_QUEUE_URL": queues.urgent_queue.queue_url,
                "GMP_BULK_QUEUE_URL": queues.bulk_queue.queue_url,
                "GMP_LOG_LEVEL": settings.log_level,
                "GMP_LOG_DELIVERY_ACTIVITY": "true" if settings.log_delivery_activity else "false",
                # The API caps account timeouts by it; the sender derives its time budget from it.
                "GMP_SENDER_TIMEOUT": str(settings.sender_timeout_seconds),
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                # The API starts bulk jobs and hands what its call leaves to the jobs worker (stacks/jobs.py).
                "GMP_JOBS_QUEUE_URL": queues.jobs_queue.queue_url,
                "GMP_JOB_INLINE_BUDGET": str(settings.job_inline_budget_seconds),
                **settings.shard_environment,
            },
        )

        reporter = Reporter(
            self,
            "Reporter",
            settings=settings,
            common=common,
            storage=storage,
            queues=queues,
            secrets=secrets,
        )
        stream_reporter = StreamReporter(
            self, "StreamReporter", settings=settings, common=common, storage=storage, queues=queues, secrets=secrets
        )
        bouncer = Bouncer(self, "Bouncer", settings=settings, common=common, storage=storage, secrets=secrets)
        ses_events = SesEvents(self, "SesEvents", common=common, storage=storage, queues=queues, secrets=secrets)
        sender = Sender(
            self,
            "Sender",
            settings=settings,
            common=common,
            network=network,
            storage=storage,
            queues=queues,
            secrets=secrets,
        )
        api = Api(
            self,
            "Api",
            settings=settings,
            common=common,
            storage=storage,
            queues=queues,
            secrets=secrets,
            reporter=reporter.function,
        )
        queues.jobs_queue.grant_send_messages(api.function)
        # Hosted unsubscribe links name the API; only the sender builds them (the API's own function cannot
        # name its API: that would be a dependency cycle).
        sender.function.add_environment("GMP_PUBLIC_URL", settings.public_url or api.url)
        jobs = Jobs(self, "Jobs", settings=settings, common=common, storage=storage, queues=queues)
        Monitoring(
            self,
            "Monitoring",
            settings=settings,
            queues=queues,
            api_function=api.function,
            sender_function=sender.function,
            reporter_function=reporter.function,
            stream_reporter_function=stream_reporter.function,
            rest_api=api.rest_api,
        )

        self.network, self.storage, self.queues, self.secrets = network, storage, queues, secrets
        self.api, self.sender, self.reporter, self.stream_reporter = api, sender, reporter, stream_reporter
        self.jobs = jobs
        self.bouncer, self.ses_events = bouncer, ses_events

        CfnOutput(self, "ApiUrl", value=api.url, description="Mail Proxy URL for the client application")
        CfnOutput(
            self,
            "SesEventsTopicArn",
            value=ses_events.topic.topic_arn,
            description="SNS destination of a SES configuration set's Bounce, Complaint and Delivery events",
        )
        for number, ip in enumerate(network.nat_public_ips if network else [], start=1):
            CfnOutput(
                self,
                f"NatPublicIp{number}",
                value=ip,
                description="Sender's public IP: allowlist at SMTP providers",
            )
        CfnOutput(self, "UrgentQueueUrl", value=queues.urgent_queue.queue_url)
        CfnOutput(self, "BulkQueueUrl", value=queues.bulk_queue.queue_url)
        CfnOutput(self, "UrgentDlqUrl", value=queues.urgent_dlq.queue_url)
        CfnOutput(self, "BulkDlqUrl", value=queues.bulk_dlq.queue_url)
        CfnOutput(self, "MessagesTableName", value=storage.messages_table.table_name)
        CfnOutput(self, "ConfigTableName", value=storage.config_table.table_name)
        CfnOutput(
            self,
            "ApiTokenSecretArn",
            value=secrets.api_token.secret_arn,
            description="X-API-Token to give clients",
        )
        CfnOutput(
            self,
            "ClientSyncSecretArn",
            value=secrets.client_sync.secret_arn,
            description='Set to {"token": ...} or {"user": ..., "password": ...} for delivery reports',
        )


def build(app: App) -> MailProxyStack:
    """Add the stack and cdk-nag's AwsSolutions checks to `app` (used by app.py and by the tests)."""
    settings = Settings.from_context(app.node)
    stack = MailProxyStack(
        app,
        STACK_NAME,
        settings=settings,
        description="genro-mail-proxy serverless (API, SQS sender, reporter)",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    acknowledge_scanner_findings(stack)
    return stack
