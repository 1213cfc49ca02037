"""What the three Lambda handlers share per process: the services, secrets from Secrets Manager, the API token."""

from __future__ import annotations

from functools import cache
from typing import Any

from mailproxy.config import Settings, check_aws_token, settings
from mailproxy.logic.bounces import correlation
from mailproxy.logic.reports import ReportTarget
from mailproxy.services import Services


@cache
def services() -> Services:
    """One set of AWS clients and stores per process (a Lambda container), created on first use."""
    return Services.create(settings())


@cache
def streams() -> Any:
    """The DynamoDB Streams client of the process (the reporter reads failed stream batches again with it), in
    the region of its DynamoDB; a local DynamoDB (moto's server) serves its streams at its own URL."""
    import boto3

    from mailproxy.services import BOTO_CONFIG

    dynamodb = services().dynamodb
    region = dynamodb.meta.region_name
    endpoint = dynamodb.meta.endpoint_url
    if endpoint.endswith(".amazonaws.com"):  # AWS: the region's streams endpoint, named (as moto routes it too)
        endpoint = f"https://streams.dynamodb.{region}.amazonaws.com"
    return boto3.client("dynamodbstreams", region_name=region, endpoint_url=endpoint, config=BOTO_CONFIG)


def get_secret(name: str, **options: Any) -> Any:
    # Imported on first use: only deployed functions read secrets, and the import costs ~0.09 s of cold start.
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(name, **options)


def correlation_key(configured: Settings) -> bytes:
    """The key of X-Genro-Mail-ID and unsubscribe links: from the secret the stack generates
    (GMP_CORRELATION_SECRET_ARN, read once an hour per container), else `correlation.deployment_key`
    (GMP_CORRELATION_SECRET, or the local key in local mode)."""
    if configured.correlation_secret is None and configured.correlation_secret_arn:
        return correlation.correlation_key(str(get_secret(configured.correlation_secret_arn, max_age=3600)))
    return correlation.deployment_key(configured)


def api_token() -> str:
    """The admin token: GMP_API_TOKEN (local mode), or the Secrets Manager secret the stack generates."""
    configured = settings()
    if configured.api_token is not None:
        return configured.api_token.get_secret_value()
    if not configured.api_token_secret_arn:
        raise RuntimeError("GMP_API_TOKEN or GMP_API_TOKEN_SECRET_ARN must be set")
    token = str(get_secret(configured.api_token_secret_arn, max_age=300))
    check_aws_token(token)
    return token


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def deployment_report_target() -> ReportTarget | None:
    """The deployment's report endpoint (`GMP_CLIENT_SYNC_URL`, docs/design.md, "Environment of the functions");
    credentials from Secrets Manager in AWS."""
    configured = settings()
    if configured.client_sync_url is None:
        return None
    credentials: dict[str, Any] = {}
    if configured.client_sync_secret_arn:
        credentials = get_secret(configured.client_sync_secret_arn, transform="json", max_age=300) or {}
    return ReportTarget(
        url=str(configured.client_sync_url),
        trusted_host=True,  # the operator's own endpoint: allowed whatever it resolves to (still https in aws)
        token=credentials.get("token") or _secret(configured.client_sync_token),
        user=credentials.get("user") or configured.client_sync_user,
        password=credentials.get("password") or _secret(configured.client_sync_password),
        signing_secret=credentials.get("signing_secret") or _secret(configured.client_sync_secret),
        timeout=configured.client_sync_timeout,
    )
