"""Delivery reports from the messages table's DynamoDB Stream (docs/design.md, "Delivery reports"): within
seconds of an outcome, one POST per tenant and stream batch, with the payload, auth and signature of the
scheduled reporter (`mailproxy.logic.reports`).

A delivered report writes nothing on the message: that is what saves the outbox's writes. A report that
cannot go now (the client fails or hangs, the tenant has no endpoint, the client asked for quiet, its sync
state is unreadable) is put in the outbox, where the scheduled reporter retries it however long the client
is down. A message already in the outbox is left to the scheduled reporter, which always posts its latest
state, so that no stale `deferred` can follow a `sent`. One tenant's failure never delays another's: each
tenant is posted on its own, up to `MAX_PARALLEL_TENANTS` at once, and every failure is caught per tenant."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mailproxy.dal.items import from_item
from mailproxy.dal.keys import STATUS_SK
from mailproxy.dal.sync_state import LeaseRefused, PostLease
from mailproxy.logic.http_guard import HttpPolicy
from mailproxy.logic.reports import (
    MAX_PARALLEL_TENANTS,
    ClientReply,
    ReportTarget,
    post_leased,
    report_entry,
    report_policy,
    take_lease,
    take_reply,
)
from mailproxy.models import MessageStatus
from mailproxy.services import Services

# The event source mapping (stacks/stream_reporter.py; mailproxy_local/stream_poller.py locally).
STREAM_BATCH_SIZE = 100
STREAM_BATCHING_WINDOW_SECONDS = 1  # how long a batch may gather records: a report leaves within seconds
# Retries of a batch whose outbox writes failed (an AWS fault; a failing client never fails a record). Each
# retry posts the batch's new outcomes again, so it is bounded; bisection isolates the failing record.
STREAM_RETRY_ATTEMPTS = 100

OUTCOMES = frozenset({MessageStatus.SENT.value, MessageStatus.ERROR.value, MessageStatus.DEFERRED.value})
# Which records reach the handler (a Lambda filter pattern: a list names the values allowed): status items
# that an update left with an outcome; a claim, ingestion and the contents are never delivered (nor billed).
STREAM_FILTER: dict[str, Any] = {
    "eventName": ["MODIFY"],
    "dynamodb": {"Keys": {"sk": {"S": [STATUS_SK]}}, "NewImage": {"status": {"S": sorted(OUTCOMES)}}},
}


@dataclass(frozen=True)
class StreamOutcome:
    record_id: str  # the stream record's sequence number: what a partial batch failure names
    item: dict[str, Any]  # the status item as the outcome left it (the record's NewImage)


def unreported_outcome(record: dict[str, Any]) -> StreamOutcome | None:
    """The outcome a stream record carries, when the client has not had it: a status item whose write
    recorded an outcome (`rpt_seq` moved; a claim, a mark or an outbox write leave it) and that is not in
    the outbox."""
    data = record.get("dynamodb") or {}
    new = data.get("NewImage")
    if data.get("Keys", {}).get("sk", {}).get("S") != STATUS_SK or not new:
        return None
    if "rpt_pk" in new or new.get("rpt_seq") == (data.get("OldImage") or {}).get("rpt_seq"):
        return None
    if new.get("status", {}).get("S") not in OUTCOMES:
        return None
    return StreamOutcome(str(data["SequenceNumber"]), from_item(new))


def latest_per_message(outcomes: list[StreamOutcome]) -> list[StreamOutcome]:
    """One outcome per message, its latest (a shard delivers one item's records in order): a batch that saw
    `deferred` then `sent` posts `sent` only."""
    latest: dict[str, StreamOutcome] = {}
    for outcome in outcomes:
        latest.pop(outcome.item["pk"], None)  # re-inserted last: the batch's order is kept
        latest[outcome.item["pk"]] = outcome
    return list(latest.values())


@dataclass
class TenantDelivery:
    """What one tenant's share of a batch did (built in its worker)."""

    tenant_id: str
    posted: int = 0
    undelivered: list[StreamOutcome] | None = None  # for the outbox
    failed_post: bool = False
    exception: str | None = None


class StreamReporter:
    def __init__(
        self,
        services: Services,
        target_for: Callable[[str], ReportTarget | None],
        *,
        logger: Logger,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        policy: HttpPolicy | None = None,
    ) -> None:
        self._services = services
        self._target_for = target_for
        self._logger = logger
        self._metrics = metrics
        self._clock = clock
        self._policy = policy or report_policy(services.settings)

    def deliver(self, records: list[dict[str, Any]], *, budget_seconds: float) -> dict[str, dict[str, Any]]:
        """POST the batch's new outcomes, per tenant; returns those to put in the outbox, by record id.
        Never raises: whatever cannot be delivered is returned."""
        deadline = time.monotonic() + budget_seconds
        outcomes = latest_per_message([o for o in map(unreported_outcome, records) if o is not None])
        if not outcomes:
            return {}
        by_tenant: dict[str, list[StreamOutcome]] = {}
        for outcome in outcomes:
            by_tenant.setdefault(outcome.item["tenant_id"], []).append(outcome)
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_TENANTS, len(by_tenant))) as pool:
            results = list(pool.map(lambda entry: self._tenant(entry[0], entry[1], deadline), by_tenant.items()))
        owed: dict[str, dict[str, Any]] = {}
        for result in results:
            self._account(result)
            owed.update({o.record_id: o.item for o in result.undelivered or []})
        return owed

    def keep(self, item: dict[str, Any]) -> None:
        """Put an undelivered outcome in the outbox. AWS errors are raised: the stream record fails and
        Lambda delivers it again, so the report is never dropped. A newer outcome since the image (the
        condition fails) is reported by its own record."""
        self._services.outbox.put(item)

    def _tenant(
        self,
        tenant_id: str,
        outcomes: list[StreamOutcome],
        deadline: float,
    ) -> TenantDelivery:
        result = TenantDelivery(tenant_id, undelivered=outcomes)
        try:
            self._post_tenant(result, outcomes, deadline)
        except Exception as exc:
            result.exception = type(exc).__name__
            # Not the exception's text: http.client, KMS or a codec could quote a credential in it.
            self._logger.warning(
                "stream reports of a tenant failed; they go to the outbox",
                extra={"tenant_id": tenant_id, "exception": result.exception},
            )
        return result

    def _post_tenant(
        self,
        result: TenantDelivery,
        outcomes: list[StreamOutcome],
        deadline: float,
    ) -> None:
        target = self._target_for(result.tenant_id)
        if target is None:
            return  # no endpoint configured: the reports wait in the outbox until one is
        size = self._services.settings.report_batch_size
        for start in range(0, len(outcomes), size):
            if deadline - time.monotonic() <= 0.5:
                return
            lease = take_lease(self._services, result.tenant_id, target, deadline, self._clock)
            if isinstance(lease, LeaseRefused):
                return  # the client asked for quiet, or another poster holds it: the scheduled reporter posts
            started = self._clock()
            answer = post_leased(
                self._services,
                lease,
                target,
                [report_entry(o.item) for o in outcomes[start : start + size]],
                timeout=max(0.5, min(target.timeout, deadline - time.monotonic())),
                now=int(started),
                policy=self._policy,
            )
            if not answer.ok:
                result.failed_post = True
                self._logger.warning(
                    "stream report failed; its outcomes go to the outbox",
                    extra={"tenant_id": result.tenant_id, "reports": len(outcomes) - start, "reason": answer.detail},
                )
                return
            result.undelivered = outcomes[start + size :]
            result.posted += min(size, len(outcomes) - start)
            reply = take_reply(
                self._logger,
                result.tenant_id,
                answer.reply,
                now=int(started),
                max_defer=self._services.settings.sync_max_defer,
            )
            self._keep_reply(lease, reply, started)
            if reply.next_sync_after is not None:
                return  # the client asked for quiet: the rest waits in the outbox until then

    def _keep_reply(self, lease: PostLease, reply: ClientReply, started: float) -> None:
        """Keep what a 2xx reply says for the next calls: the sync time and any do-not-disturb (the write that
        gives the lease back), a served run-now cleared, and `queued` > 0 as a run-now, so that the next
        scheduled run calls again."""
        sync_state = self._services.sync_state
        sync_state.synced(lease, at=int(started), next_sync_after=reply.next_sync_after)
        if lease.state.requested_ms is not None:
            sync_state.request_served(lease.tenant_id, started_ms=int(started * 1000))
        if reply.queued and reply.next_sync_after is None:
            sync_state.request_sync(lease.tenant_id, now_ms=int(self._clock() * 1000))

    def _account(self, result: TenantDelivery) -> None:
        if result.posted:
            self._metrics.add_metric(name="ReportsPosted", unit=MetricUnit.Count, value=result.posted)
        if result.undelivered:
            self._metrics.add_metric(name="ReportsToOutbox", unit=MetricUnit.Count, value=len(result.undelivered))
        if result.failed_post:
            self._metrics.add_metric(name="ReportFailures", unit=MetricUnit.Count, value=1)
        if result.exception is not None:
            self._metrics.add_metric(name="ReportTenantFailures", unit=MetricUnit.Count, value=1)
