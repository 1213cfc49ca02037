"""What the three Lambda handlers share per process: the services, secrets from Secrets Manager, the API token."""

from __future__ import annotations

from functools import cache
from typing import Any

from mailproxy.config import check_aws_token, settings
from mailproxy.services import Services


@cache
def services() -> Services:
    """One set of AWS clients and stores per process (a Lambda container), created on first use."""
    return Services.create(settings())


def get_secret(name: str, **options: Any) -> Any:
    # Imported on first use: only deployed functions read secrets, and the import costs ~0.09 s of cold start.
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(name, **options)


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
