"""Delivery reports (SPEC §5): POST outcomes not yet acknowledged to the client, oldest first, in batches;
mark them delivered only after a 2xx; stop at the first failure and retry on the next run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mailproxy.logic.sweep import sweep_due
from mailproxy.models import DeliveryReportItem, MessageStatus
from mailproxy.services import Services


@dataclass(frozen=True)
class ReportTarget:
    url: str
    token: str | None = None
    user: str | None = None
    password: str | None = None
    signing_secret: str | None = None
    timeout: float = 10.0

    def headers(self, body: bytes, now: int) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "genro-mail-proxy-serverless"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.user is not None and self.password is not None:
            basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        if self.signing_secret:
            headers["X-GMP-Signature"] = signature(self.signing_secret, body, now)
        return headers


def tenant_target(services: Services, tenant_id: str, fallback: ReportTarget | None) -> ReportTarget | None:
    """A tenant's own report endpoint and auth (client_base_url + client_sync_path) override the
    deployment's; a tenant without one reports to the deployment's endpoint."""
    tenant = services.tenants.get(tenant_id)
    if tenant is None or not tenant.get("client_base_url"):
        return fallback
    auth = tenant.get("client_auth") or {}
    method = auth.get("method", "none")
    return ReportTarget(
        url=tenant["client_base_url"].rstrip("/") + tenant.get("client_sync_path", "/mail-proxy/sync"),
        token=services.tenants.client_secret(tenant, "token") if method == "bearer" else None,
        user=auth.get("user") if method == "basic" else None,
        password=services.tenants.client_secret(tenant, "password") if method == "basic" else None,
        signing_secret=fallback.signing_secret if fallback else None,
        timeout=fallback.timeout if fallback else 10.0,
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
        account_id=item["account_id"],
        priority=int(item["priority"]),
        sent_ts=item.get("sent_ts") if status is MessageStatus.SENT else None,
        error_ts=item.get("error_ts") if status is MessageStatus.ERROR else None,
        error=item.get("error") if status is MessageStatus.ERROR else None,
        deferred_ts=item.get("deferred_ts") if status is MessageStatus.DEFERRED else None,
        deferred_reason=item.get("deferred_reason") if status is MessageStatus.DEFERRED else None,
    )


@dataclass(frozen=True)
class PostResult:
    ok: bool
    detail: str
    reply: Any = None


def post(target: ReportTarget, entries: list[DeliveryReportItem], *, timeout: float, now: int) -> PostResult:
    body = json.dumps({"delivery_report": [e.wire() for e in entries]}, separators=(",", ":")).encode()
    request = urllib.request.Request(target.url, data=body, headers=target.headers(body, now), method="POST")  # noqa: S310 - URL validated as http(s) in the settings
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            raw = answer.read(65536)
            status = answer.status
    except urllib.error.HTTPError as exc:
        return PostResult(False, f"client answered HTTP {exc.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return PostResult(False, f"client unreachable: {reason}")
    if not 200 <= status < 300:
        return PostResult(False, f"client answered HTTP {status}")
    try:
        reply = json.loads(raw) if raw else None
    except ValueError:
        reply = None
    return PostResult(True, f"HTTP {status}", reply)


MAX_CYCLES = 5  # cycles one run may chain when clients keep answering {"queued": n}


@dataclass
class ReportRun:
    swept: int = 0
    posted: int = 0
    batches: int = 0
    failures: int = 0
    stopped: str = "done"


class Reporter:
    def __init__(
        self,
        services: Services,
        target_for: Callable[[str], ReportTarget | None],
        *,
        logger: Logger,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._services = services
        self._target_for = target_for
        self._logger = logger
        self._metrics = metrics
        self._clock = clock

    def run(self, *, budget_seconds: float, batch_size: int) -> ReportRun:
        """Sweep, then report until the outbox is empty, a client fails, or the time budget is used.
        A client answering `{"queued": n}` with n > 0 asks for another cycle at once."""
        deadline = time.monotonic() + budget_seconds
        run = ReportRun()
        for _ in range(MAX_CYCLES):
            run.swept += sweep_due(self._services, now=int(self._clock()))
            if not self._report(run, deadline, batch_size):
                break
        self._oldest_pending_metric()
        return run

    def _report(self, run: ReportRun, deadline: float, batch_size: int) -> bool:
        """One cycle; True when a client asked for another one and there is time for it."""
        failed_tenants: set[str] = set()
        again = False
        while True:
            if deadline - time.monotonic() <= 0.5:
                run.stopped = "time budget used"
                return False
            items = [
                i for i in self._services.messages.pending_reports(batch_size) if i["tenant_id"] not in failed_tenants
            ]
            if not items:
                return again and not failed_tenants
            progressed = False
            torn = [i for i in items if not is_reportable(i)]
            if torn:
                self._logger.warning(
                    "outbox entries read incomplete; left for the next run", extra={"count": len(torn)}
                )
                items = [i for i in items if is_reportable(i)]
                if not items:
                    return False
            for tenant_id, group in groupby(sorted(items, key=lambda i: i["tenant_id"]), key=lambda i: i["tenant_id"]):
                batch = list(group)
                target = self._target_for(tenant_id)
                if target is None:
                    continue  # no endpoint configured: the reports wait in the outbox
                result = post(
                    target,
                    [report_entry(i) for i in batch],
                    timeout=max(0.5, min(target.timeout, deadline - time.monotonic())),
                    now=int(self._clock()),
                )
                if not result.ok:
                    # This client is failing: leave its reports for the next run rather than hammer it.
                    failed_tenants.add(tenant_id)
                    run.failures += 1
                    run.stopped = result.detail
                    self._metrics.add_metric(name="ReportFailures", unit=MetricUnit.Count, value=1)
                    self._logger.warning(
                        "delivery report failed; will retry next run",
                        extra={"tenant_id": tenant_id, "reports": len(batch), "reason": result.detail},
                    )
                    continue
                self._mark(batch)
                run.posted += len(batch)
                run.batches += 1
                progressed = True
                self._metrics.add_metric(name="ReportsPosted", unit=MetricUnit.Count, value=len(batch))
                if isinstance(result.reply, dict) and isinstance(result.reply.get("queued"), int):
                    again = again or result.reply["queued"] > 0
            if not progressed:
                if not failed_tenants:
                    run.stopped = "no report endpoint configured"
                return False

    def _mark(self, batch: list[dict[str, Any]]) -> None:
        now = int(self._clock())
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: self._services.messages.mark_reported(item, now), batch))

    def _oldest_pending_metric(self) -> None:
        oldest = self._services.messages.pending_reports(1)
        age = 0.0
        if oldest:
            age = max(0.0, self._clock() - int(oldest[0]["rpt_sk"].split("#", 1)[0]) / 1000)
        self._metrics.add_metric(name="OldestPendingReportAge", unit=MetricUnit.Seconds, value=age)
