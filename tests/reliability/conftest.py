"""Fixtures of the reliability suite: fast retries, a report endpoint, a virtual clock and a `world`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mailproxy.config import Settings
from mailproxy.dal.schema import LocalResources
from mailproxy.services import Services
from tests.conftest import make_settings
from tests.reliability.harness import VirtualClock, World, install_clock
from tests.report_server import ReportEndpoint, report_endpoint

# Small timings so that every scenario settles in seconds: backoff of 1-2 s, the shortest lease the
# settings allow, and a one-minute grace before the sweep re-enqueues a message whose record was lost.
FAST = {
    "backoff_base": 1.0,
    "backoff_cap": 2.0,
    "lease_seconds": 10,
    "enqueue_grace": 60,
    "max_attempts": 6,
    "report_batch_size": 50,
    "client_sync_timeout": 2.0,
    "report_run_budget": 10.0,
}


@pytest.fixture
def endpoint() -> Iterator[ReportEndpoint]:
    with report_endpoint() as client:
        yield client


@pytest.fixture
def settings(aws: LocalResources, endpoint: ReportEndpoint) -> Settings:
    return make_settings(aws, client_sync_url=endpoint.url, **FAST)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    return install_clock(monkeypatch)


@pytest.fixture
def world(lambda_env: Settings, services: Services, clock: VirtualClock, endpoint: ReportEndpoint) -> World:
    return World(services=services, clock=clock, endpoint=endpoint)


@pytest.fixture(autouse=True)
def _quiet_werkzeug() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's access log
