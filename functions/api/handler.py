"""API Gateway entry point: the FastAPI app wrapped by Mangum."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from functions.api.app import ApiContext, create_app
from mailproxy import runtime
from mailproxy.config import settings
from mailproxy.observability import logger


@cache
def _lambda_client() -> Any:
    return boto3.client("lambda")


def _trigger_report() -> None:
    name = settings().reporter_function_name
    if name:
        _lambda_client().invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"source": "run-now"}).encode()
        )


app = create_app(ApiContext(services=runtime.services, api_token=runtime.api_token, trigger_report=_trigger_report))
handler = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)(
    Mangum(app, lifespan="off")
)
