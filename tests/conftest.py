"""Shared fixtures: moto in process (boto3 through botocore's real request path), services, the API client."""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from moto.core import serialize as moto_serialize
from moto.core.botocore_stubber import BotocoreStubber

from functions.api.app import ApiContext, create_app
from mailproxy.config import Settings
from mailproxy.crypto import new_local_key
from mailproxy.dal.schema import LocalResources, create_resources
from mailproxy.services import Services

pytest_plugins = ["tests.integration.conftest_smtp"]

API_TOKEN = "test-token-0123456789-abcdefghijklmnop"
AUTH = {"X-API-Token": API_TOKEN}


class _DistinctPaths(list[str]):
    """A loader's search paths: boto3 appends its data path to the loader of every session it creates."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@pytest.fixture(scope="session", autouse=True)
def _shared_botocore_loader() -> Iterator[None]:
    """Every boto3 session of the run shares one botocore data loader, so each service model (JSON) is
    parsed once per run instead of once per session: a test makes two sessions with three clients each,
    and parsing their models was most of a test's setup. The models are read-only data; the clients,
    their configuration and the requests they make are unchanged."""
    loaders: dict[str | None, botocore.loaders.Loader] = {}
    original = botocore.session.create_loader

    def shared(search_path_string: str | None = None) -> botocore.loaders.Loader:
        loader = loaders.get(search_path_string)
        if loader is None:
            loader = original(search_path_string)
            loader._search_paths = _DistinctPaths(loader.search_paths)  # type: ignore[attr-defined]
            loaders[search_path_string] = loader
        return loader

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(scope="session", autouse=True)
def _moto_alias_lookups_memoized() -> Iterator[None]:
    """moto 5 serializes every answer by walking the operation's output shape, and for each member of
    each structure asks six alias providers which keys to look up in the result. Every DynamoDB
    attribute value is such a structure, so that question was most of moto's time on a Query or Scan.
    For a plain dict result the answer depends only on the member's name, its shape and the parent
    shape (the providers look at nothing else of a dict), so it is computed once per triple. The keys,
    their order and so the serialized answers are exactly moto's; shapes are kept alive with the memo
    so their ids are never reused."""
    picker = getattr(moto_serialize, "XFormedAttributePicker", None)
    providers = getattr(moto_serialize, "DEFAULT_ALIAS_PROVIDERS", None)
    if picker is None or providers is None or not hasattr(picker, "get_possible_keys"):
        yield  # another moto: leave it alone
        return
    original = picker.get_possible_keys
    memo: dict[tuple[str, int, int], tuple[list[str], Any, Any]] = {}

    def get_possible_keys(self: Any, context: Any) -> Any:
        if type(context.obj) is not dict or self.alias_providers is not providers:
            return original(self, context)
        shape = context.shape
        parent = getattr(shape, "parent", None)
        key = (context.key, id(shape), id(parent))
        found = memo.get(key)
        if found is None:
            found = memo[key] = (list(original(self, context)), shape, parent)
        return found[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(picker, "get_possible_keys", get_possible_keys)
        yield


@pytest.fixture(scope="session", autouse=True)
def _in_process_dynamodb_one_request_at_a_time() -> Iterator[None]:
    """moto evaluates a condition and applies the update in separate steps, so two threads could both
    claim one message; DynamoDB makes each conditional write atomic, and the exactly-once claim relies on
    it. In-process moto therefore handles one DynamoDB request at a time, as the local stack's DynamoDB
    server does (mailproxy_local/moto_launcher.py --serialize)."""
    lock = threading.Lock()
    original = BotocoreStubber.__call__

    def one_at_a_time(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        if not event_name.startswith("before-send.dynamodb"):
            return original(self, event_name, request, **kwargs)
        with lock:
            return original(self, event_name, request, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BotocoreStubber, "__call__", one_at_a_time)
        yield


@pytest.fixture(autouse=True)
def _isolated_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach AWS: fake credentials, one region, no endpoint or profile from the outside."""
    for name in list(os.environ):
        if name.startswith(("GMP_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def aws() -> Iterator[LocalResources]:
    with mock_aws():
        yield create_resources(boto3.session.Session())


def make_settings(resources: LocalResources, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mode": "local",
        "api_token": API_TOKEN,
        "local_key": new_local_key(),
        "messages_table": resources.messages_table,
        "config_table": resources.config_table,
        "urgent_queue_url": resources.urgent_queue_url,
        "bulk_queue_url": resources.bulk_queue_url,
        "body_bucket": resources.body_bucket,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings(aws: LocalResources) -> Settings:
    return make_settings(aws)


@pytest.fixture
def services(settings: Settings) -> Services:
    return Services.create(settings)


class ReportTriggers:
    """Counts how often the API asked for an immediate report run."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def report_triggers() -> ReportTriggers:
    return ReportTriggers()


@pytest.fixture
def api(services: Services, report_triggers: ReportTriggers) -> TestClient:
    app = create_app(ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=report_triggers))
    return TestClient(app, raise_server_exceptions=False)


def account_payload(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "smtp-main",
        "host": "127.0.0.1",
        "port": 2525,
        "user": "sender",
        "password": "app-specific-password",
        "use_tls": False,
        **overrides,
    }


def message_payload(msg_id: str = "MSG-001", **overrides: Any) -> dict[str, Any]:
    return {
        "id": msg_id,
        "account_id": "smtp-main",
        "from": "sender@example.com",
        "to": ["rcpt@example.com"],
        "subject": "Hello",
        "body": "Hi there",
        **overrides,
    }


@pytest.fixture
def lambda_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The function handlers read their configuration from the environment, as in Lambda."""
    from mailproxy import runtime
    from mailproxy.config import settings as cached_settings

    def reset() -> None:
        cached_settings.cache_clear()
        runtime.services.cache_clear()

    for name, value in settings.model_dump(exclude_none=True).items():
        plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        monkeypatch.setenv(f"GMP_{name.upper()}", str(plain).lower() if isinstance(plain, bool) else str(plain))
    reset()
    yield cached_settings()
    reset()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the functions' structured logger writes (JSON lines), whatever stream it was created with."""
    from mailproxy.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    original = handler.setStream(buffer)
    yield buffer
    if original is not None:
        handler.setStream(original)
