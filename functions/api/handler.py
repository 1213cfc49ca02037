"""API Gateway entry point: the FastAPI app wrapped by Mangum."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from functions.api.app import ApiContext, create_app
from mailproxy.config import check_aws_token, settings
from mailproxy.observability import logger
from mailproxy.services import Services


def _get_secret(name: str, **options: Any) -> Any:
    # Imported on first use: only deployed functions read secrets, and the import costs ~0.09 s of cold start.
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(name, **options)


@cache
def _services() -> Services:
    return Services.create(settings())


def _api_token() -> str:
    configured = settings()
    if configured.api_token is not None:
        return configured.api_token.get_secret_value()
    if not configured.api_token_secret_arn:
        raise RuntimeError("GMP_API_TOKEN or GMP_API_TOKEN_SECRET_ARN must be set")
    token = str(_get_secret(configured.api_token_secret_arn, max_age=300))
    check_aws_token(token)
    return token


@cache
def _lambda_client() -> Any:
    return boto3.client("lambda")


def _trigger_report() -> None:
    name = settings().reporter_function_name
    if name:
        _lambda_client().invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"source": "run-now"}).encode()
        )


app = create_app(ApiContext(services=_services, api_token=_api_token, trigger_report=_trigger_report))
handler = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)(
    Mangum(app, lifespan="off")
)
