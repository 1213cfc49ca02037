"""Per-tenant report targets and the `{"queued": n}` convention (docs/tenants.md, "Tenants and their keys")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailproxy.logic.reports import Reporter, ReportTarget, tenant_target
from mailproxy.models import TenantIn
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from tests.integration.test_reporter import seed_outcomes
from tests.report_server import ReportEndpoint, report_endpoint


@pytest.fixture
def deployment_client() -> Iterator[ReportEndpoint]:
    with report_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def tenant_client() -> Iterator[ReportEndpoint]:
    with report_endpoint("/mail-proxy/sync") as endpoint:
        yield endpoint


def reporter(services: Services, fallback: ReportTarget | None) -> Reporter:
    return Reporter(services, lambda tenant: tenant_target(services, tenant, fallback), logger=logger, metrics=metrics)


def test_tenant_report_target_and_bearer_override_the_deployments(
    services: Services, deployment_client: ReportEndpoint, tenant_client: ReportEndpoint
) -> None:
    base = tenant_client.url.removesuffix("/mail-proxy/sync")
    services.tenants.put(
        TenantIn.model_validate(
            {"id": "acme", "client_base_url": base, "client_auth": {"method": "bearer", "token": "acme-token"}}
        )
    )
    seed_outcomes(services, 2, prefix="t", tenant_id="acme")
    seed_outcomes(services, 3)
    run = reporter(services, ReportTarget(deployment_client.url, token="deployment-token")).run(
        budget_seconds=20, batch_size=100
    )
    assert run.posted == 5
    assert sorted(i["id"] for i in tenant_client.items()) == ["t0", "t1"]
    assert tenant_client.acknowledged[0].headers["authorization"] == "Bearer acme-token"
    assert sorted(i["id"] for i in deployment_client.items()) == ["m0", "m1", "m2"]
    assert deployment_client.acknowledged[0].headers["authorization"] == "Bearer deployment-token"


def test_one_failing_tenant_does_not_hold_back_another(
    services: Services, deployment_client: ReportEndpoint, tenant_client: ReportEndpoint
) -> None:
    base = tenant_client.url.removesuffix("/mail-proxy/sync")
    services.tenants.put(TenantIn.model_validate({"id": "acme", "client_base_url": base}))
    tenant_client.default_status = 500
    seed_outcomes(services, 2, prefix="t", tenant_id="acme")
    seed_outcomes(services, 2)
    run = reporter(services, ReportTarget(deployment_client.url)).run(budget_seconds=20, batch_size=100)
    assert run.posted == 2 and run.failures == 1
    assert len(services.outbox.pending(10)) == 2  # acme's wait for the next run


def test_reply_queued_n_starts_another_cycle_at_once(services: Services, deployment_client: ReportEndpoint) -> None:
    seed_outcomes(services, 1)
    deployment_client.reply = {"ok": True, "queued": 3}
    calls = []
    original = services.outbox.pending

    def counting(limit: int, tenant_id: str | None = None) -> list[dict[str, object]]:
        calls.append(limit)
        return original(limit, tenant_id)

    services.outbox.pending = counting  # type: ignore[method-assign]
    reporter(services, ReportTarget(deployment_client.url)).run(budget_seconds=20, batch_size=100)
    # cycle 1 reads a batch and then an empty outbox; the reply asked for cycle 2, which reads the outbox again
    # (the outbox is read per tenant, docs/reliability.md; here only `default` has reports and no tenant is configured)
    assert len(calls) == 3
    deployment_client.reply = {"ok": True}
    calls.clear()
    seed_outcomes(services, 1, prefix="n")
    reporter(services, ReportTarget(deployment_client.url)).run(budget_seconds=20, batch_size=100)
    assert len(calls) == 2  # one cycle: batch, empty outbox (nothing left: no oldest-pending read)
