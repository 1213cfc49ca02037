"""The seven functions: handlers, runtime, environment (docs/design.md), packaging, tracing, logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from stacks.bouncer import HANDLER as BOUNCER_HANDLER
from stacks.build_layer import PYTHON_VERSION
from stacks.jobs import HANDLER as JOBS_HANDLER
from stacks.ses_events import HANDLER as SES_EVENTS_HANDLER
from stacks.stream_reporter import HANDLER as STREAM_HANDLER
from tests.infrastructure.conftest import API_HANDLER, REPORTER_HANDLER, SENDER_HANDLER, Synthesis

HANDLERS = [
    API_HANDLER,
    SENDER_HANDLER,
    REPORTER_HANDLER,
    STREAM_HANDLER,
    JOBS_HANDLER,
    BOUNCER_HANDLER,
    SES_EVENTS_HANDLER,
]

COMMON_ENV = {
    "GMP_MODE",
    "GMP_MESSAGES_TABLE",
    "GMP_CONFIG_TABLE",
    "GMP_URGENT_QUEUE_URL",
    "GMP_BULK_QUEUE_URL",
    "GMP_LOG_LEVEL",
    "GMP_LOG_DELIVERY_ACTIVITY",
    "GMP_SENDER_TIMEOUT",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "GMP_JOBS_QUEUE_URL",
    "GMP_JOB_INLINE_BUDGET",
    "GMP_DUE_SHARDS",
    "GMP_REPORT_SHARDS",
    "GMP_TENANT_INDEX_SHARDS",
}
REPORTING_ENV = {"GMP_CLIENT_SYNC_SECRET_ARN", "GMP_CLIENT_SYNC_URL", "GMP_KMS_KEY_ID"}
ENV_BY_HANDLER = {
    API_HANDLER: COMMON_ENV
    | {"GMP_BODY_BUCKET", "GMP_KMS_KEY_ID", "GMP_API_TOKEN_SECRET_ARN", "GMP_REPORTER_FUNCTION_NAME"}
    | {"GMP_CORRELATION_SECRET_ARN"},  # verifies unsubscribe links
    SENDER_HANDLER: COMMON_ENV
    | {"GMP_BODY_BUCKET", "GMP_KMS_KEY_ID", "GMP_ATTACHMENT_BUCKETS", "GMP_LEASE_SECONDS"}
    | {"GMP_CORRELATION_SECRET_ARN", "GMP_PUBLIC_URL"},  # signs X-Genro-Mail-ID and hosted unsubscribe links
    REPORTER_HANDLER: COMMON_ENV | REPORTING_ENV | {"GMP_STREAM_FAILURES_QUEUE_URL"},
    STREAM_HANDLER: COMMON_ENV | REPORTING_ENV,
    JOBS_HANDLER: COMMON_ENV | {"GMP_BODY_BUCKET", "GMP_JOBS_DLQ_ARN"},
    BOUNCER_HANDLER: COMMON_ENV | {"GMP_KMS_KEY_ID", "GMP_CORRELATION_SECRET_ARN"},  # IMAP passwords; verifies ids
    SES_EVENTS_HANDLER: COMMON_ENV | {"GMP_CORRELATION_SECRET_ARN"},  # verifies X-Genro-Mail-ID
}


def test_stack_has_exactly_the_seven_functions(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::Lambda::Function", len(HANDLERS))
    for handler in HANDLERS:
        synth.function(handler)


@pytest.mark.parametrize("handler", HANDLERS)
def test_function_runs_python_of_the_layer_with_active_tracing(synth: Synthesis, handler: str) -> None:
    _, function = synth.function(handler)
    props = function["Properties"]
    assert props["Runtime"] == f"python{PYTHON_VERSION}"
    assert props["Architectures"] == ["arm64"]  # cdk.json's default: the layer builds for aarch64
    assert props["TracingConfig"] == {"Mode": "Active"}


def test_claim_lease_outlives_the_sender_function_and_account_timeouts_fit_it(synth: Synthesis) -> None:
    """A live send is never re-claimed: the lease is derived from the sender's timeout, which every
    function reads to cap account timeouts (the API) and to budget an invocation (the sender)."""
    _, sender = synth.function(SENDER_HANDLER)
    props = sender["Properties"]
    assert int(props["Environment"]["Variables"]["GMP_LEASE_SECONDS"]) >= props["Timeout"] + 30
    for handler in HANDLERS:
        _, function = synth.function(handler)
        assert function["Properties"]["Environment"]["Variables"]["GMP_SENDER_TIMEOUT"] == str(props["Timeout"])


@pytest.mark.parametrize("handler", HANDLERS)
def test_function_environment_is_exactly_the_design_contract(synth: Synthesis, handler: str) -> None:
    _, function = synth.function(handler)
    env = function["Properties"]["Environment"]["Variables"]
    assert set(env) == ENV_BY_HANDLER[handler]
    assert env["GMP_MODE"] == "aws"
    assert env["POWERTOOLS_SERVICE_NAME"] == "genro-mail-proxy"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "GenroMailProxy"
    assert env["GMP_LOG_LEVEL"] == "INFO"
    assert env["GMP_LOG_DELIVERY_ACTIVITY"] == "false"


def test_environment_points_at_the_stack_resources(synth: Synthesis) -> None:
    tables = synth.resources("AWS::DynamoDB::Table")
    queues = synth.resources("AWS::SQS::Queue")
    _, api = synth.function(API_HANDLER)
    env = api["Properties"]["Environment"]["Variables"]
    assert env["GMP_MESSAGES_TABLE"]["Ref"] in tables
    assert env["GMP_CONFIG_TABLE"]["Ref"] in tables
    assert env["GMP_MESSAGES_TABLE"] != env["GMP_CONFIG_TABLE"]
    assert env["GMP_URGENT_QUEUE_URL"]["Ref"] in queues
    assert env["GMP_BULK_QUEUE_URL"]["Ref"] in queues
    assert env["GMP_BODY_BUCKET"]["Ref"] in synth.resources("AWS::S3::Bucket")
    assert env["GMP_KMS_KEY_ID"]["Fn::GetAtt"][0] in synth.resources("AWS::KMS::Key")
    assert env["GMP_API_TOKEN_SECRET_ARN"]["Ref"] in synth.resources("AWS::SecretsManager::Secret")
    reporter_id, _ = synth.function(REPORTER_HANDLER)
    assert env["GMP_REPORTER_FUNCTION_NAME"] == {"Ref": reporter_id}


@pytest.mark.parametrize("handler", [REPORTER_HANDLER, STREAM_HANDLER])
def test_client_sync_url_comes_from_context(synth: Synthesis, handler: str) -> None:
    _, reporter = synth.function(handler)
    env = reporter["Properties"]["Environment"]["Variables"]
    assert env["GMP_CLIENT_SYNC_URL"] == synth.context["client_sync_url"]


def test_functions_share_one_code_asset_and_one_dependency_layer(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::Lambda::LayerVersion", 1)
    (layer_id,) = synth.resources("AWS::Lambda::LayerVersion")
    codes = set()
    for handler in HANDLERS:
        _, function = synth.function(handler)
        assert function["Properties"]["Layers"] == [{"Ref": layer_id}]
        codes.add(function["Properties"]["Code"]["S3Key"])
    assert len(codes) == 1
    synth.template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": [f"python{PYTHON_VERSION}"], "CompatibleArchitectures": ["arm64"]},
    )


def test_code_asset_holds_only_the_function_packages(synth: Synthesis) -> None:
    _, function = synth.function(API_HANDLER)
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset = synth.outdir / f"asset.{asset_hash}"
    assert asset.is_dir()
    assert {p.name for p in asset.iterdir()} <= {"functions", "mailproxy"}
    assert (asset / "functions").is_dir()
    unwanted = {"__pycache__", "tests", ".venv", "cdk.out", "build", "bench", "docs", ".git", ".mypy_cache"}
    found = {p.relative_to(asset) for p in asset.rglob("*") if p.name in unwanted or p.suffix == ".pyc"}
    assert not found


def test_sender_timeout_and_reserved_concurrency_come_from_context(synth: Synthesis) -> None:
    _, sender = synth.function(SENDER_HANDLER)
    assert sender["Properties"]["Timeout"] == synth.context["sender_timeout_seconds"]
    assert sender["Properties"]["ReservedConcurrentExecutions"] == synth.context["sender_reserved_concurrency"]
    assert sender["Properties"]["MemorySize"] == synth.context["sender_memory_mb"]


def test_api_timeout_fits_the_api_gateway_integration_limit(synth: Synthesis) -> None:
    _, api = synth.function(API_HANDLER)
    assert api["Properties"]["Timeout"] <= 29


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_function_logs_to_its_own_log_group_with_retention(synth: Synthesis, handler: str) -> None:
    _, function = synth.function(handler)
    group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    group = synth.template_json["Resources"][group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == synth.context["log_retention_days"]


def test_reporter_runs_on_the_default_schedule(synth: Synthesis) -> None:
    reporter_id, _ = synth.function(REPORTER_HANDLER)
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED",
            "Targets": Match.array_with([Match.object_like({"Arn": {"Fn::GetAtt": [reporter_id, "Arn"]}})]),
        },
    )


def test_layer_directory_from_context_is_the_layer_asset(synth: Synthesis) -> None:
    layer_assets = [p for p in synth.outdir.glob("asset.*") if (p / "python" / "placeholder.py").is_file()]
    assert len(layer_assets) == 1
    assert Path(synth.context["layer_dir"]).is_dir()
