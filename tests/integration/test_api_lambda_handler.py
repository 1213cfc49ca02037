"""The Lambda entry point: a real API Gateway (REST, proxy) event through Mangum to the app and back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mailproxy import runtime
from mailproxy.config import settings as cached_settings
from mailproxy.dal.schema import LocalResources
from mailproxy_local.lambda_context import LocalLambdaContext
from tests.conftest import API_TOKEN, account_payload, make_settings


def rest_event(method: str, path: str, body: Any = None, token: str | None = API_TOKEN) -> dict[str, Any]:
    headers = {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "Content-Type": "application/json"}
    if token is not None:
        headers["X-API-Token"] = token
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "accountId": "123456789012",
            "identity": {"sourceIp": "192.0.2.10", "userAgent": "pytest"},
            "apiId": "abc123",
            "protocol": "HTTP/1.1",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


@pytest.fixture
def lambda_handler(aws: LocalResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    configured = make_settings(aws)
    for name, value in configured.model_dump(exclude_none=True).items():
        monkeypatch.setenv(f"GMP_{name.upper()}", str(getattr(value, "get_secret_value", lambda v=value: v)()))
    from functions.api import handler as module

    cached_settings.cache_clear()
    runtime.services.cache_clear()
    yield module.handler
    cached_settings.cache_clear()
    runtime.services.cache_clear()


def test_api_gateway_event_reaches_the_app_and_answers(lambda_handler: Any) -> None:
    created = lambda_handler(rest_event("POST", "/account", account_payload()), LocalLambdaContext("gmp-api"))
    assert created["statusCode"] == 200
    assert json.loads(created["body"])["ok"] is True
    listed = lambda_handler(rest_event("GET", "/accounts"), LocalLambdaContext("gmp-api"))
    assert [a["id"] for a in json.loads(listed["body"])["accounts"]] == ["smtp-main"]


def test_api_gateway_event_without_token_is_401(lambda_handler: Any) -> None:
    answer = lambda_handler(rest_event("GET", "/status", token=None), LocalLambdaContext("gmp-api"))
    assert answer["statusCode"] == 401
