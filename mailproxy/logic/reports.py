"""Delivery reports (docs/network.md, "The proxy → your application"): POST outcomes not yet acknowledged
to the client, oldest first within each tenant, in batches; mark them delivered only after a 2xx; a failing
client stops its own tenant's reports for the run and is retried on the next one.

The outbox is partitioned per tenant (docs/reliability.md, "Poison reports and tenants") and each tenant is
read and posted on its own, in a small pool: no tenant's backlog, missing target, failing endpoint or bad
credential delays another tenant's reports. Every per-tenant failure is caught, counted
(`ReportTenantFailures`) and logged with the tenant and the exception's type, never its text (it could hold
a credential)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mailproxy.logic.http_auth import BadCredential, HttpAuth
from mailproxy.logic.http_guard import HttpPolicy, HttpRefused, HttpUnavailable
from mailproxy.logic.ssrf import parse_allowlist
from mailproxy.logic.sweep import sweep_due
from mailproxy.models import DEFAULT_TENANT, DeliveryReportItem, MessageStatus
from mailproxy.services import Services


@dataclass(frozen=True)
class ReportTarget:
    url: str
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    trusted_host: bool = False  # the deployment's own endpoint (GMP_CLIENT_SYNC_URL): its host is allowed

    def headers(self, body: bytes, now: int) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "genro-mail-proxy-serverless"}
        auth = HttpAuth(token=self.token, user=self.user, password=self.password)
        auth.check("report credential")
        headers.update(auth.headers())
        if self.signing_secret:
            headers["X-GMP-Signature"] = signature(self.signing_secret, body, now)
        return headers


def tenant_target(
    services: Services,
    tenant_id: str,
    fallback: ReportTarget | Callable[[], ReportTarget | None] | None,
) -> ReportTarget | None:
    """A tenant's own report endpoint and auth (client_base_url + client_sync_path) override the
    deployment's, and its reports are signed with its own signing secret only (none if it has none: the
    deployment's secret is never sent to a tenant's endpoint). A tenant without an own endpoint reports
    to the deployment's endpoint, signed with the deployment's secret. `fallback` may be a callable,
    so that the deployment's credentials are read only when a tenant needs them."""
    tenant = services.tenants.get(tenant_id)
    url = tenant.sync_url if tenant else None
    if tenant is None or url is None:
        return fallback() if callable(fallback) else fallback
    credentials = services.tenants.credentials(tenant)
    return ReportTarget(
        url=url,
        token=credentials.token,
        user=credentials.user,
        password=credentials.password,
        signing_secret=services.tenants.signing_secret(tenant),
        timeout=services.settings.client_sync_timeout,
    )


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the client recomputes it to verify the origin."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


_OUTCOME_TS = {MessageStatus.SENT: "sent_ts", MessageStatus.ERROR: "error_ts"}


def is_reportable(item: dict[str, Any]) -> bool:
    """An outbox image that carries the timestamp of its own outcome. A torn image (an outcome write seen
    half applied) is left for the next run rather than posted empty and taken out of the outbox."""
    status = MessageStatus(item["status"])
    return bool(item.get(_OUTCOME_TS.get(status, "deferred_ts")))


def report_entry(item: dict[str, Any]) -> DeliveryReportItem:
    """The seed's fields; exactly one of sent_ts / error_ts / deferred_ts is set, by the current status."""
    status = MessageStatus(item["status"])
    if status in (MessageStatus.SENDING, MessageStatus.QUEUED):
        # Only an outcome puts a message in the outbox, so this is a deferral whose next attempt has begun
        # (or been held back): report the deferral; the attempt's own outcome follows in a later run.
        status = MessageStatus.DEFERRED
    return DeliveryReportItem(
        id=item["id"],
        tenant_id=item["tenant_id"],
        account_id=item["account_id"],
        priority=int(item["priority"]),
        sent_ts=item.get("sent_ts") if status is MessageStatus.SENT else None,
        error_ts=item.get("error_ts") if status is MessageStatus.ERROR else None,
        error=item.get("error") if status is MessageStatus.ERROR else None,
        deferred_ts=item.get("deferred_ts") if status is MessageStatus.DEFERRED else None,
        deferred_reason=item.get("deferred_reason") if status is MessageStatus.DEFERRED else None,
    )


def report_body(entries: list[DeliveryReportItem]) -> bytes:
    """The bytes POSTed and signed: `{"delivery_report": [entry, ...]}` as compact JSON (docs/network.md,
    "The proxy → your application")."""
    return json.dumps({"delivery_report": [e.wire() for e in entries]}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PostResult:
    ok: bool
    detail: str
    reply: Any = None


def post(
    target: ReportTarget,
    entries: list[DeliveryReportItem],
    *,
    timeout: float,
    now: int,
    policy: HttpPolicy | None = None,
) -> PostResult:
    """POST one batch through the guarded client (vetted addresses, no redirects, https in aws mode).
    Raises `BadCredential` for a stored credential that cannot be sent."""
    policy = policy or HttpPolicy()
    if target.trusted_host:
        policy = policy.allowing(urlsplit(target.url).hostname or "")
    body = report_body(entries)
    headers = target.headers(body, now)
    try:
        answer = policy.request("POST", target.url, headers=headers, body=body, timeout=timeout, max_bytes=65536)
    except HttpRefused as exc:
        return PostResult(False, f"report URL refused: {exc}")
    except HttpUnavailable as exc:
        return PostResult(False, f"client unreachable: {exc}")
    if answer.is_redirect:
        return PostResult(False, f"client answered HTTP {answer.status} (a redirect; not followed)")
    if not answer.ok:
        return PostResult(False, f"client answered HTTP {answer.status}")
    try:
        reply = json.loads(answer.body) if answer.body else None
    except ValueError:
        reply = None
    return PostResult(True, f"HTTP {answer.status}", reply)


MAX_CYCLES = 5  # cycles one run may chain when clients keep answering {"queued": n}
MAX_PARALLEL_TENANTS = 8  # tenants reported at once: a hanging client holds one worker, not the run


@dataclass
class ReportRun:
    swept: int = 0
    posted: int = 0
    batches: int = 0
    failures: int = 0
    stopped: str = "done"


@dataclass
class TenantRun:
    """What one tenant's share of a cycle did (built in its worker, summed by the run)."""

    tenant_id: str
    posted: int = 0
    batches: int = 0
    failure: str | None = None  # why this tenant's reports stopped for the run (a failed POST, an exception)
    exception: str | None = None  # the exception's type, when it was one
    no_target: bool = False
    budget_used: bool = False
    again: bool = False  # the client answered {"queued": n > 0}
    left: bool = False  # reports may be left in its outbox
    oldest_left_sk: str | None = None


class Reporter:
    def __init__(
        self,
        services: Services,
        target_for: Callable[[str], ReportTarget | None],
        *,
        logger: Logger,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        policy: HttpPolicy | None = None,
        tenants: Callable[[], list[str]] | None = None,
    ) -> None:
        self._services = services
        self._target_for = target_for
        self._logger = logger
        self._metrics = metrics
        self._clock = clock
        self._policy = policy or HttpPolicy(
            mode=services.settings.mode, allowlist=parse_allowlist(services.settings.smtp_host_allowlist)
        )
        self._tenants = tenants or self._known_tenants

    def _known_tenants(self) -> list[str]:
        """`default` and every configured tenant: the partitions of the outbox to read."""
        return list(dict.fromkeys([DEFAULT_TENANT, *sorted(t.id for t in self._services.tenants.list())]))

    def run(self, *, budget_seconds: float, batch_size: int) -> ReportRun:
        """Sweep, then report every tenant until its outbox is empty, its client fails, or the time budget
        is used. A client answering `{"queued": n}` with n > 0 asks for another cycle at once."""
        deadline = time.monotonic() + budget_seconds
        run = ReportRun()
        stopped_tenants: set[str] = set()  # failed this run: not tried again until the next one
        last: dict[str, TenantRun] = {}
        for _ in range(MAX_CYCLES):
            run.swept += sweep_due(self._services, now=int(self._clock()))
            tenants = [t for t in self._tenant_ids() if t not in stopped_tenants]
            results = self._cycle(tenants, deadline, batch_size)
            for result in results:
                last[result.tenant_id] = result
                self._account(run, result)
                if result.failure is not None:
                    stopped_tenants.add(result.tenant_id)
            if not any(r.again for r in results) or deadline - time.monotonic() <= 0.5:
                break
        run.stopped = _summary(list(last.values()))
        self._oldest_pending_metric(list(last.values()))
        return run

    def _tenant_ids(self) -> list[str]:
        try:
            return self._tenants()
        except Exception as exc:  # the tenant list unreadable: report `default` at least
            self._logger.warning(
                "tenant list unreadable; reporting the default tenant only", extra={"exception": type(exc).__name__}
            )
            return [DEFAULT_TENANT]

    def _cycle(self, tenants: list[str], deadline: float, batch_size: int) -> list[TenantRun]:
        if not tenants:
            return []
        if len(tenants) == 1:
            return [self._tenant(tenants[0], deadline, batch_size)]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_TENANTS, len(tenants))) as pool:
            return list(pool.map(lambda t: self._tenant(t, deadline, batch_size), tenants))

    def _tenant(self, tenant_id: str, deadline: float, batch_size: int) -> TenantRun:
        """One tenant's reports for one cycle. Never raises: an exception ends this tenant's share only."""
        result = TenantRun(tenant_id)
        try:
            self._report_tenant(result, deadline, batch_size)
        except Exception as exc:
            result.failure = result.exception = type(exc).__name__
            if isinstance(exc, BadCredential):
                result.failure = str(exc)  # names the field only
            result.left = True
            # The exception's text is not logged: http.client, KMS or a codec could quote a credential in it.
            self._logger.warning(
                "delivery reports of a tenant failed; the other tenants go on; will retry next run",
                extra={"tenant_id": tenant_id, "exception": type(exc).__name__, "reason": result.failure},
            )
        return result

    def _report_tenant(self, result: TenantRun, deadline: float, batch_size: int) -> None:
        tenant_id = result.tenant_id
        while True:
            if deadline - time.monotonic() <= 0.5:
                result.budget_used = result.left = True
                return
            items = self._services.outbox.pending(batch_size, tenant_id)
            if not items:
                return
            result.oldest_left_sk = items[0]["rpt_sk"]
            torn = [i for i in items if not is_reportable(i)]
            if torn:
                self._logger.warning(
                    "outbox entries read incomplete; left for the next run",
                    extra={"tenant_id": tenant_id, "count": len(torn)},
                )
                items = [i for i in items if is_reportable(i)]
                if not items:
                    result.left = True
                    return
            target = self._target_for(tenant_id)
            if target is None:
                result.no_target = result.left = True  # no endpoint configured: the reports wait in the outbox
                return
            answer = post(
                target,
                [report_entry(i) for i in items],
                timeout=max(0.5, min(target.timeout, deadline - time.monotonic())),
                now=int(self._clock()),
                policy=self._policy,
            )
            if not answer.ok:
                # This client is failing: leave its reports for the next run rather than hammer it.
                result.failure = answer.detail
                result.left = True
                self._logger.warning(
                    "delivery report failed; will retry next run",
                    extra={"tenant_id": tenant_id, "reports": len(items), "reason": answer.detail},
                )
                return
            marked = self._mark(items)
            result.posted += len(items)
            result.batches += 1
            if isinstance(answer.reply, dict) and isinstance(answer.reply.get("queued"), int):
                result.again = result.again or answer.reply["queued"] > 0
            if not marked:  # every entry changed since it was read: read again next cycle, not in a loop
                result.left = True
                return

    def _account(self, run: ReportRun, result: TenantRun) -> None:
        run.posted += result.posted
        run.batches += result.batches
        if result.posted:
            self._metrics.add_metric(name="ReportsPosted", unit=MetricUnit.Count, value=result.posted)
        if result.failure is not None:
            run.failures += 1
            self._metrics.add_metric(name="ReportTenantFailures", unit=MetricUnit.Count, value=1)
            if result.exception is None:
                self._metrics.add_metric(name="ReportFailures", unit=MetricUnit.Count, value=1)

    def _mark(self, batch: list[dict[str, Any]]) -> int:
        now = int(self._clock())
        with ThreadPoolExecutor(max_workers=8) as pool:
            return sum(pool.map(lambda item: self._services.outbox.mark_reported(item, now), batch))

    def _oldest_pending_metric(self, results: list[TenantRun]) -> None:
        """The age of the oldest report still waiting, over every tenant (0 when all are delivered)."""
        oldest: list[int] = []
        for result in results:
            if not result.left:
                continue
            sk = result.oldest_left_sk
            if result.posted or sk is None:  # what was read first may be delivered: read the head again
                try:
                    head = self._services.outbox.pending(1, result.tenant_id)
                except Exception:
                    head = []
                sk = head[0]["rpt_sk"] if head else None
            if sk is not None:
                oldest.append(int(sk.split("#", 1)[0]))
        age = max(0.0, self._clock() - min(oldest) / 1000) if oldest else 0.0
        self._metrics.add_metric(name="OldestPendingReportAge", unit=MetricUnit.Seconds, value=age)


def _summary(results: list[TenantRun]) -> str:
    """The run's `stopped`: "done", or why reports are left (the first reason met, by tenant order)."""
    for result in results:
        if result.failure is not None:
            return result.failure
    if any(r.budget_used for r in results):
        return "time budget used"
    if any(r.no_target for r in results):
        return "no report endpoint configured"
    return "done"
