"""What the three Lambda handlers share per process: the services, secrets from Secrets Manager, the API token."""

from __future__ import annotations

from functools import cache
from typing import Any

from mailproxy.config import Settings, check_aws_token, settings
from mailproxy.logic.bounces import correlation
from mailproxy.services import Services


@cache
def services() -> Services:
    """One set of AWS clients and stores per process (a Lambda container), created on first use."""
    return Services.create(settings())


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
