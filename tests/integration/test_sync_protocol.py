"""The report sync protocol in full (docs/tenants.md, "The client's reply"): next_sync_after, run-now, error and
not_found, the periodic empty call and `queued`, against the real HTTP report server, with an injected clock."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import ConfigError, load_settings
from mailproxy.logic.reports import Reporter, ReportRun, ReportTarget, sync_status, tenant_target
from mailproxy.models import TenantIn
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy.views import SyncStatus
from tests.conftest import API_TOKEN
from tests.integration.test_reporter import seed_outcomes
from tests.report_server import ReportEndpoint, report_endpoint

SYNC_PATH = "/mail-proxy/sync"
T0 = 1_900_000_000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Metrics:
    """Every metric the reporter adds, by name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.values: dict[str, float] = {}
        original = metrics.add_metric

        def record(name: str, unit: Any, value: float, **kwargs: Any) -> None:
            self.values[name] = self.values.get(name, 0) + float(value)
            original(name=name, unit=unit, value=value, **kwargs)

        monkeypatch.setattr(metrics, "add_metric", record)


@pytest.fixture
def acme(services: Services) -> Iterator[ReportEndpoint]:
    """Tenant `acme` with its own report endpoint, bearer auth and a signing secret."""
    with report_endpoint(SYNC_PATH) as endpoint:
        services.tenants.put(
            TenantIn.model_validate(
                {
                    "id": "acme",
                    "client_base_url": endpoint.url.removesuffix(SYNC_PATH),
                    "client_auth": {"method": "bearer", "token": "acme-token"},
                }
            )
        )
        yield endpoint


@pytest.fixture
def clock() -> Clock:
    return Clock()


def run(services: Services, clock: Clock) -> ReportRun:
    reporter = Reporter(
        services, lambda tenant: tenant_target(services, tenant, None), logger=logger, metrics=metrics, clock=clock
    )
    return reporter.run(budget_seconds=20, batch_size=100)


def posted_ids(endpoint: ReportEndpoint) -> list[str]:
    return [item["id"] for item in endpoint.items()]


def empty_calls(endpoint: ReportEndpoint) -> int:
    return sum(1 for r in endpoint.received if r.items == [])


def test_next_sync_after_holds_the_tenants_reports_until_the_clock_passes_it(
    services: Services, acme: ReportEndpoint, clock: Clock
) -> None:
    seed_outcomes(services, 1, prefix="a", tenant_id="acme")
    acme.replies = [{"ok": True, "next_sync_after": T0 + 600}]
    assert run(services, clock).posted == 1
    seed_outcomes(services, 1, prefix="b", tenant_id="acme")
    clock.now = T0 + 599
    held = run(services, clock)
    assert held.posted == 0 and held.held == 1
    assert len(acme.received) == 1  # not even an empty call inside the quiet time
    assert [i["id"] for i in services.outbox.pending(10, "acme")] == ["b0"]  # waits; nothing lost or marked
    clock.now = T0 + 600
    assert run(services, clock).posted == 1
    assert posted_ids(acme) == ["a0", "b0"]


def test_do_not_disturb_of_one_tenant_does_not_hold_another(
    services: Services, acme: ReportEndpoint, clock: Clock
) -> None:
    with report_endpoint(SYNC_PATH) as beta:
        services.tenants.put(
            TenantIn.model_validate({"id": "beta", "client_base_url": beta.url.removesuffix(SYNC_PATH)})
        )
        acme.reply = {"next_sync_after": T0 + 3600}
        seed_outcomes(services, 1, prefix="a", tenant_id="acme")
        run(services, clock)
        seed_outcomes(services, 1, prefix="a1", tenant_id="acme")
        seed_outcomes(services, 2, prefix="b", tenant_id="beta")
        clock.now = T0 + 60
        assert run(services, clock).posted == 2
        assert sorted(posted_ids(beta)) == ["b0", "b1"]
        assert posted_ids(acme) == ["a0"]


def test_run_now_for_the_tenant_clears_its_do_not_disturb_and_syncs_it(
    services: Services, api: TestClient, acme: ReportEndpoint, clock: Clock
) -> None:
    seed_outcomes(services, 1, prefix="a", tenant_id="acme")
    acme.replies = [{"next_sync_after": T0 + 3600}]
    run(services, clock)
    seed_outcomes(services, 1, prefix="b", tenant_id="acme")
    clock.now = T0 + 10
    assert run(services, clock).posted == 0
    answer = api.post("/commands/run-now", json={"tenant_id": "acme"}, headers={"X-API-Token": API_TOKEN})
    assert answer.status_code == 200
    assert run(services, clock).posted == 1
    assert posted_ids(acme) == ["a0", "b0"]
    # with no events left, a further run-now is an empty call at once, though the last sync is seconds old
    clock.now = T0 + 20
    run(services, clock)
    assert empty_calls(acme) == 0
    api.post("/commands/run-now", json={"tenant_id": "acme"}, headers={"X-API-Token": API_TOKEN})
    run(services, clock)
    assert empty_calls(acme) == 1
    run(services, clock)  # the request was served: no second call before the interval
    assert empty_calls(acme) == 1


def test_run_now_for_another_tenant_or_for_all_leaves_the_do_not_disturb(
    services: Services, api: TestClient, acme: ReportEndpoint, clock: Clock
) -> None:
    seed_outcomes(services, 1, prefix="a", tenant_id="acme")
    acme.replies = [{"next_sync_after": T0 + 3600}]
    run(services, clock)
    seed_outcomes(services, 1, prefix="b", tenant_id="acme")
    headers = {"X-API-Token": API_TOKEN}
    assert api.post("/commands/run-now", json={"tenant_id": "beta"}, headers=headers).status_code == 200
    assert api.post("/commands/run-now", headers=headers).status_code == 200
    clock.now = T0 + 10
    assert run(services, clock).posted == 0


def test_error_and_not_found_in_the_reply_are_logged_counted_and_still_marked(
    services: Services,
    acme: ReportEndpoint,
    clock: Clock,
    captured_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = Metrics(monkeypatch)
    seed_outcomes(services, 3, prefix="m", tenant_id="acme")
    acme.reply = {"ok": False, "error": ["m0"], "not_found": ["m1", "x" * 500]}
    assert run(services, clock).posted == 3
    assert services.outbox.pending(10, "acme") == []
    assert counted.values["ReportClientErrors"] == 1
    assert counted.values["ReportClientNotFound"] == 2
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.strip()]
    listed = {line["message"]: line for line in lines if "listed reported ids" in line["message"]}
    error = next(v for k, v in listed.items() if "as error" in k)
    not_found = next(v for k, v in listed.items() if "as not_found" in k)
    assert error["ids"] == ["m0"] and error["tenant_id"] == "acme"
    assert not_found["ids"] == ["m1", "x" * 128] and not_found["count"] == 2  # bounded


def test_an_idle_tenant_gets_an_empty_call_after_the_interval_and_not_before(
    services: Services, acme: ReportEndpoint, clock: Clock
) -> None:
    interval = services.settings.sync_interval
    assert interval == 300
    assert run(services, clock).sync_calls == 1  # never called: due at once
    call = acme.received[0]
    assert json.loads(call.raw) == {"delivery_report": []}
    assert call.headers["authorization"] == "Bearer acme-token"  # the reports' auth
    clock.now = T0 + interval - 1
    assert run(services, clock).sync_calls == 0
    clock.now = T0 + interval
    assert run(services, clock).sync_calls == 1
    assert empty_calls(acme) == 2


def test_no_empty_call_to_an_inactive_tenant_a_busy_one_or_the_deployment_endpoint(
    services: Services, acme: ReportEndpoint, clock: Clock
) -> None:
    with report_endpoint() as deployment:
        base = acme.url.removesuffix(SYNC_PATH)
        services.tenants.put(TenantIn.model_validate({"id": "idle", "client_base_url": base, "active": False}))
        seed_outcomes(services, 1, prefix="a", tenant_id="acme")
        reporter = Reporter(
            services,
            lambda tenant: tenant_target(services, tenant, ReportTarget(deployment.url)),
            logger=logger,
            metrics=metrics,
            clock=clock,
        )
        result = reporter.run(budget_seconds=20, batch_size=100)
        assert result.posted == 1 and result.sync_calls == 0
        assert empty_calls(acme) == 0 and deployment.received == []  # `default` reports there: no empty call


def test_a_failed_empty_call_waits_the_interval_and_is_no_report_failure(
    services: Services, acme: ReportEndpoint, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Metrics(monkeypatch)
    acme.statuses = [503]
    first = run(services, clock)
    assert first.sync_calls == 1 and first.failures == 0 and first.stopped == "done"
    assert counted.values["SyncCallFailures"] == 1
    clock.now = T0 + 60
    assert run(services, clock).sync_calls == 0


def test_an_empty_call_answered_queued_starts_another_cycle(
    services: Services, acme: ReportEndpoint, clock: Clock
) -> None:
    acme.replies = [{"ok": True, "queued": 2}]
    answered = run(services, clock)
    assert answered.cycles == 2 and empty_calls(acme) == 1  # the second cycle: not due again
    clock.now = T0 + 300
    assert run(services, clock).cycles == 1  # {"ok": true}: one cycle


def test_a_report_answered_queued_starts_another_cycle(services: Services, acme: ReportEndpoint, clock: Clock) -> None:
    seed_outcomes(services, 1, prefix="a", tenant_id="acme")
    acme.replies = [{"queued": 1}]
    assert run(services, clock).cycles == 2
    seed_outcomes(services, 1, prefix="b", tenant_id="acme")
    assert run(services, clock).cycles == 1


@pytest.mark.parametrize(
    ("value", "held_until"),
    [
        ((T0 + 10 * 365 * 86400) * 1000, T0 + 86400),  # milliseconds by mistake: capped at GMP_SYNC_MAX_DEFER
        (float("inf"), T0 + 86400),
        ("tomorrow", None),  # not a number: ignored
        (True, None),
        (T0 - 5, None),  # already past
    ],
)
def test_a_bad_next_sync_after_is_capped_or_ignored_and_logged(
    services: Services,
    acme: ReportEndpoint,
    clock: Clock,
    captured_logs: io.StringIO,
    value: Any,
    held_until: int | None,
) -> None:
    seed_outcomes(services, 1, prefix="a", tenant_id="acme")
    acme.replies = [{"next_sync_after": value}]
    run(services, clock)
    state = services.sync_state.all()["acme"]
    assert state.next_sync_after == held_until
    if value != T0 - 5:
        assert "next_sync_after was not taken as sent" in captured_logs.getvalue()
    seed_outcomes(services, 1, prefix="b", tenant_id="acme")
    clock.now = (held_until or T0) + 1
    assert run(services, clock).posted == 1


def test_sync_status_names_each_tenants_last_sync_due_call_and_quiet(
    services: Services, acme: ReportEndpoint, clock: Clock
) -> None:
    services.tenants.put(TenantIn.model_validate({"id": "beta", "name": "Beta"}))
    seed_outcomes(services, 1, prefix="a", tenant_id="acme")
    acme.replies = [{"next_sync_after": T0 + 1000}]
    run(services, clock)
    status = SyncStatus.model_validate(sync_status(services, T0 + 5), from_attributes=True)
    assert status.sync_interval_seconds == 300
    by_id = {t.id: t for t in status.tenants}
    assert by_id["acme"].last_sync_ts == T0 and by_id["acme"].in_dnd is True
    assert by_id["acme"].next_sync_due == T0 + 1000
    assert by_id["acme"].client_base_url == acme.url.removesuffix(SYNC_PATH)
    assert by_id["beta"].name == "Beta" and by_id["beta"].next_sync_due is None  # no own endpoint
    assert by_id["beta"].last_sync_ts is None and by_id["beta"].in_dnd is False
    later = sync_status(services, T0 + 1001)
    assert next(t for t in later.tenants if t.id == "acme").in_dnd is False


@pytest.mark.parametrize(("name", "value"), [("GMP_SYNC_INTERVAL", "0"), ("GMP_SYNC_MAX_DEFER", "abc")])
def test_bad_sync_settings_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_the_reporter_handler_makes_the_empty_calls(lambda_env: Any, services: Services, acme: ReportEndpoint) -> None:
    from functions.reporter import handler as reporter_handler
    from mailproxy_local.lambda_context import LocalLambdaContext

    answer = reporter_handler.handler({"source": "schedule"}, LocalLambdaContext("gmp-reporter"))
    assert answer["sync_calls"] == 1 and empty_calls(acme) == 1
    assert services.sync_state.all()["acme"].last_sync_ts is not None
