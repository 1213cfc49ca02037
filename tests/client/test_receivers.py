"""mailproxy_client.receivers: the Django view, Flask blueprint and FastAPI router, each driven by its framework's
own test client with reports signed by the proxy's signing code."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import RequestFactory
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask

from mailproxy.logic.reports import signature
from mailproxy_client import DeliveryReport
from mailproxy_client.receivers import django_view, fastapi_router, flask_blueprint
from tests.client.test_django_backend import configure_django

SECRET = "whsec-receivers-0123456789"
TOKEN = "sync-token-receivers-abcdefghij"
SENT = {"id": "MSG-1", "account_id": "smtp-main", "priority": 2, "sent_ts": 1_735_689_600, "metadata": {"order": "7"}}

Post = Callable[[bytes, dict[str, str]], tuple[int, Any]]


class Store:
    """A handler that upserts by id, as the module docstring asks: a retried batch changes nothing."""

    def __init__(self, fail: bool = False) -> None:
        self.by_id: dict[str, DeliveryReport] = {}
        self.calls = 0
        self.fail = fail

    def __call__(self, reports: list[DeliveryReport]) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("database down")
        for report in reports:
            self.by_id[report.id] = report


def signed_request(*entries: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"delivery_report": list(entries)}).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {TOKEN}",
        "X-GMP-Signature": signature(SECRET, body, int(time.time())),
    }
    return body, headers


def django_poster(store: Store) -> Post:
    configure_django()
    view = django_view(store, bearer_token=TOKEN, signing_secret=SECRET)
    factory = RequestFactory()

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        request = factory.post("/gmp/reports", data=body, content_type="application/json", headers=headers)
        response = view(request)
        return response.status_code, json.loads(response.content)

    return post


def flask_poster(store: Store) -> Post:
    app = Flask(__name__)
    app.register_blueprint(flask_blueprint(store, bearer_token=TOKEN, signing_secret=SECRET))
    client = app.test_client()

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        response = client.post("/gmp/reports", data=body, headers=headers)
        return response.status_code, response.get_json()

    return post


def fastapi_poster(store: Store) -> Post:
    app = FastAPI()
    app.include_router(fastapi_router(store, bearer_token=TOKEN, signing_secret=SECRET))
    client = TestClient(app, raise_server_exceptions=False)

    def post(body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        response = client.post("/gmp/reports", content=body, headers=headers)
        return response.status_code, response.json() if response.status_code != 500 else None

    return post


FRAMEWORKS = pytest.mark.parametrize("poster", [django_poster, flask_poster, fastapi_poster], ids=lambda p: p.__name__)


@FRAMEWORKS
def test_signed_report_reaches_the_handler_and_is_acknowledged(poster: Callable[[Store], Post]) -> None:
    store = Store()
    status, answer = poster(store)(*signed_request(SENT))
    assert (status, answer) == (200, {"ok": True})
    assert store.by_id["MSG-1"].sent_ts == SENT["sent_ts"]
    assert store.by_id["MSG-1"].metadata == {"order": "7"}


@FRAMEWORKS
def test_retried_batch_is_acknowledged_again_and_upserts(poster: Callable[[Store], Post]) -> None:
    store = Store()
    post = poster(store)
    request = signed_request(SENT)
    assert post(*request)[0] == 200
    assert post(*request)[0] == 200
    assert store.calls == 2 and list(store.by_id) == ["MSG-1"]


@FRAMEWORKS
def test_bad_signature_is_401_and_the_handler_is_not_called(poster: Callable[[Store], Post]) -> None:
    store = Store()
    body, headers = signed_request(SENT)
    headers["X-GMP-Signature"] = signature("another-secret", body, int(time.time()))
    status, answer = poster(store)(body, headers)
    assert status == 401 and "X-GMP-Signature" in answer["error"]
    assert store.calls == 0


@FRAMEWORKS
def test_malformed_entry_is_400_naming_the_field(poster: Callable[[Store], Post]) -> None:
    store = Store()
    status, answer = poster(store)(*signed_request({"account_id": "smtp-main"}))
    assert status == 400 and "delivery_report.0" in answer["error"] and "id" in answer["error"]
    assert store.calls == 0


@FRAMEWORKS
def test_failing_handler_is_not_acknowledged(poster: Callable[[Store], Post]) -> None:
    store = Store(fail=True)
    post = poster(store)
    if poster is django_poster:  # the view lets the exception through to Django's own 500 handler
        with pytest.raises(RuntimeError):
            post(*signed_request(SENT))
    else:
        assert post(*signed_request(SENT))[0] == 500
    assert store.calls == 1 and not store.by_id
