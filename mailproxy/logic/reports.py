"""Delivery reports (docs/network.md, "The proxy → your application"): what a report is and how it is posted
(payload, auth, signature, the client's reply), shared with the stream reporter (`stream_reports.py`), which
posts outcomes within seconds; and the scheduled reporter, which POSTs what the stream could not deliver
(the outbox) to the client, oldest first within each tenant, in batches; marks them delivered only after a
2xx; a failing client stops its own tenant's reports for the run and is retried on the next one.

The outbox is partitioned per tenant (docs/reliability.md, "Poison reports and tenants") and each tenant is
read and posted on its own, in a small pool: no tenant's backlog, missing target, failing endpoint or bad
credential delays another tenant's reports. Every per-tenant failure is caught, counted
(`ReportTenantFailures`) and logged with the tenant and the exception's type, never its text (it could hold
a credential).

The client's reply (docs/tenants.md, "The client's reply") steers the next calls: `next_sync_after` holds the
tenant's calls until then (capped at `GMP_SYNC_MAX_DEFER`; run-now for the tenant lifts it), `queued` > 0
asks for another cycle at once, `error` / `not_found` ids are logged and counted (the batch is acknowledged
all the same). A tenant with its own endpoint and no events gets an empty call every `GMP_SYNC_INTERVAL`,
so that its client can hand back work."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mailproxy.config import Settings
from mailproxy.dal.records import StoredTenant
from mailproxy.dal.sync_state import LeaseRefused, PostLease, SyncState
from mailproxy.logic.http_auth import BadCredential, HttpAuth
from mailproxy.logic.http_guard import HttpPolicy, HttpRefused, HttpUnavailable
from mailproxy.logic.ssrf import parse_allowlist
from mailproxy.logic.sweep import sweep_due
from mailproxy.models import DEFAULT_TENANT, NOTICE_FIELDS, DeliveryReportItem, MessageStatus
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


def report_policy(settings: Settings) -> HttpPolicy:
    """The guarded HTTP client's rules for report posts: https and the SSRF guard in aws mode."""
    return HttpPolicy(mode=settings.mode, allowlist=parse_allowlist(settings.smtp_host_allowlist))


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


# The stream keeps a record 24 h and its event source retries a record until then at most; with the longest
# invocation on top, an outcome older than this is either delivered or in the outbox (docs/design.md,
# "Delivery reports").
STREAM_MAX_LAG_SECONDS = 24 * 3600 + 15 * 60


def reported_at(item: dict[str, Any], now: float) -> int | None:
    """When the client acknowledged the message's current outcome, by the one rule of docs/design.md
    ("Delivery reports"): the outbox marked this very outcome (`reported_seq` = `rpt_seq`): its mark time;
    out of the outbox and older than the stream's maximum lag: its outcome time (the stream posted it
    with no mark, or it is owed nowhere); otherwise None (still owed, or the stream is on it)."""
    if item.get("rpt_pk") or not item.get("rpt_seq"):
        return None
    if item.get("reported_seq") == item["rpt_seq"]:
        return int(item["reported_ts"])
    outcome_ts = int(item.get("updated_ts") or 0)
    return outcome_ts if outcome_ts < now - STREAM_MAX_LAG_SECONDS else None


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
        metadata=item.get("metadata"),
        tags=item.get("tags"),
        sandbox=item.get("sandbox"),
        **{name: item.get(name) for name in NOTICE_FIELDS},
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


# A POST's lease on its tenant (dal/sync_state.py) is held for the POST's timeout and this margin at most.
LEASE_MARGIN_SECONDS = 5.0
# How long a poster waits for another poster's lease on the same tenant (a POST takes milliseconds to
# seconds) before it leaves its reports to the outbox (the stream reporter) or to the next cycle.
LEASE_WAIT_SECONDS = 3.0


def take_lease(
    services: Services, tenant_id: str, target: ReportTarget, deadline: float, clock: Callable[[], float]
) -> PostLease | LeaseRefused:
    """The tenant's post lease, waiting a little while another poster holds it; refused at once while the
    client's quiet time holds."""
    waited = 0.0
    pause = 0.05
    while True:
        taken = services.sync_state.take_post_lease(
            tenant_id, now=clock(), seconds=target.timeout + LEASE_MARGIN_SECONDS
        )
        if isinstance(taken, PostLease) or taken.quiet:
            return taken
        if waited + pause > LEASE_WAIT_SECONDS or deadline - time.monotonic() <= pause + 0.5:
            return taken
        time.sleep(pause)
        waited += pause
        pause = min(pause * 2, 0.4)


def post_leased(
    services: Services,
    lease: PostLease,
    target: ReportTarget,
    entries: list[DeliveryReportItem],
    *,
    timeout: float,
    now: int,
    policy: HttpPolicy,
) -> PostResult:
    """`post` under `lease`: a call that was not answered 2xx is kept as `called` and the lease given back;
    after a 2xx the caller keeps the reply with `sync_state.synced(lease, ...)`, which gives it back."""
    try:
        answer = post(target, entries, timeout=timeout, now=now, policy=policy)
    except BaseException:
        services.sync_state.release(lease)
        raise
    if not answer.ok:
        services.sync_state.called(lease, at=now)
    return answer


LOGGED_IDS = 20  # ids of a reply's error / not_found lists that one log line names
LOGGED_ID_CHARS = 128


@dataclass(frozen=True)
class ClientReply:
    """What the proxy reads of a 2xx reply; anything else in it is ignored."""

    queued: int = 0
    next_sync_after: int | None = None  # None: no do-not-disturb
    errors: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    problem: str | None = None  # why `next_sync_after` was not taken as sent


def read_reply(reply: Any, *, now: int, max_defer: int) -> ClientReply:
    """The reply's `queued`, `next_sync_after`, `error` and `not_found`. A `next_sync_after` that is not a
    number is ignored and one further than `max_defer` ahead is cut to it (`problem` says which), so that a
    typo (milliseconds, a year) cannot stop a tenant's reports for longer."""
    if not isinstance(reply, dict):
        return ClientReply()
    queued = reply.get("queued")
    raw = reply.get("next_sync_after")
    until: int | None = None
    problem = None
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or math.isnan(raw):
            problem = "next_sync_after is not a number (unix seconds): ignored"
        elif raw > now + max_defer:
            until, problem = now + max_defer, f"next_sync_after more than {max_defer} s ahead: capped"
        elif raw > now:
            until = math.ceil(raw)
    return ClientReply(
        queued=queued if isinstance(queued, int) and not isinstance(queued, bool) and queued > 0 else 0,
        next_sync_after=until,
        errors=_ids(reply.get("error")),
        not_found=_ids(reply.get("not_found")),
        problem=problem,
    )


def take_reply(logger: Logger, tenant_id: str, raw: Any, *, now: int, max_defer: int) -> ClientReply:
    """`read_reply`, logging what the client got wrong (a `next_sync_after` not taken as sent) and the ids
    it listed as `error` / `not_found` (the original's rule: acknowledged like the rest; logged so that
    someone can look)."""
    reply = read_reply(raw, now=now, max_defer=max_defer)
    if reply.problem:
        logger.warning(
            "the client's next_sync_after was not taken as sent",
            extra={"tenant_id": tenant_id, "reason": reply.problem, "next_sync_after": reply.next_sync_after},
        )
    for name, ids in (("error", reply.errors), ("not_found", reply.not_found)):
        if ids:
            logger.warning(
                f"the client listed reported ids as {name}; they stay reported",
                extra={
                    "tenant_id": tenant_id,
                    "count": len(ids),
                    "ids": [i[:LOGGED_ID_CHARS] for i in ids[:LOGGED_IDS]],
                },
            )
    return reply


def _ids(value: Any) -> list[str]:
    """A reply's list of message ids, as strings; anything but a list is no list."""
    return [str(v) for v in value] if isinstance(value, list) else []


def in_dnd(state: SyncState | None, now: float) -> bool:
    """The client asked not to be called before `next_sync_after`, and that time has not come."""
    return state is not None and state.next_sync_after is not None and now < state.next_sync_after


def next_call_due(state: SyncState | None, now: int, interval: int) -> int:
    """When the next empty call to a tenant with no events may go: at once after a run-now or for a tenant
    never called; else `interval` after the last call, and never inside the client's do-not-disturb."""
    if state is None or state.requested_ms is not None:
        return now
    last = max(state.last_sync_ts or 0, state.last_call_ts or 0)
    due = last + interval if last else now
    return max(due, state.next_sync_after or 0)


def request_sync(services: Services, tenant_id: str, now: float) -> None:
    """run-now naming a tenant: its do-not-disturb is lifted and the next report run calls it, with its
    events or, having none, with an empty call."""
    services.sync_state.request_sync(tenant_id, now_ms=int(now * 1000))


@dataclass(frozen=True)
class TenantSync:
    id: str
    name: str | None
    active: bool
    client_base_url: str | None
    last_sync_ts: int | None
    next_sync_due: int | None  # None: the tenant has no endpoint of its own, so no periodic call
    in_dnd: bool


@dataclass(frozen=True)
class SyncOverview:
    tenants: list[TenantSync]
    sync_interval_seconds: int


def sync_status(services: Services, now: float) -> SyncOverview:
    """Every configured tenant's sync state (`GET /instance/get_sync_status`): two Queries."""
    states = services.sync_state.all()
    interval = services.settings.sync_interval
    tenants = []
    for tenant in sorted(services.tenants.list(), key=lambda t: t.id):
        state = states.get(tenant.id)
        tenants.append(
            TenantSync(
                id=tenant.id,
                name=tenant.name,
                active=tenant.active,
                client_base_url=tenant.client_base_url,
                last_sync_ts=state.last_sync_ts if state else None,
                next_sync_due=next_call_due(state, int(now), interval) if _calls_when_idle(tenant) else None,
                in_dnd=in_dnd(state, now),
            )
        )
    return SyncOverview(tenants=tenants, sync_interval_seconds=interval)


def _calls_when_idle(tenant: StoredTenant | None) -> bool:
    """Empty calls go to active tenants with an endpoint of their own, never to the deployment's."""
    return tenant is not None and tenant.active and tenant.sync_url is not None


MAX_CYCLES = 5  # cycles one run may chain when clients keep answering {"queued": n}
MAX_PARALLEL_TENANTS = 8  # tenants reported at once: a hanging client holds one worker, not the run


@dataclass
class ReportRun:
    swept: int = 0
    posted: int = 0
    batches: int = 0
    failures: int = 0
    cycles: int = 0
    sync_calls: int = 0  # empty calls to tenants with no events
    held: int = 0  # tenants not called in the last cycle: their client's next_sync_after is still ahead
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
    held: bool = False  # in the client's do-not-disturb: nothing posted
    sync_calls: int = 0
    sync_call_failed: bool = False
    client_errors: int = 0  # ids the client's replies listed as `error`
    client_not_found: int = 0  # ... and as `not_found`


@dataclass(frozen=True)
class TenantCycle:
    """What a tenant's share of a cycle starts from: its sync state and whether it gets empty calls."""

    state: SyncState | None
    calls_when_idle: bool


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
        self._policy = policy or report_policy(services.settings)
        self._tenants = tenants

    def run(self, *, budget_seconds: float, batch_size: int) -> ReportRun:
        """Sweep, then report every tenant until its outbox is empty, its client fails or asks for quiet, or
        the time budget is used. A client answering `{"queued": n}` with n > 0 asks for another cycle at once."""
        deadline = time.monotonic() + budget_seconds
        run = ReportRun()
        stopped_tenants: set[str] = set()  # failed this run: not tried again until the next one
        last: dict[str, TenantRun] = {}
        for _ in range(MAX_CYCLES):
            run.cycles += 1
            run.swept += sweep_due(self._services, now=int(self._clock()))
            configured = self._configured_tenants()
            states = self._sync_states()
            tenants = [t for t in self._tenant_ids(configured) if t not in stopped_tenants]
            plans = {
                t: TenantCycle(
                    state=states.get(t) if states is not None else None,
                    # sync state unreadable: events are still posted, but no empty call is made blind
                    calls_when_idle=states is not None and _calls_when_idle((configured or {}).get(t)),
                )
                for t in tenants
            }
            results = self._cycle(plans, deadline, batch_size)
            for result in results:
                last[result.tenant_id] = result
                self._account(run, result)
                if result.failure is not None:
                    stopped_tenants.add(result.tenant_id)
            run.held = sum(r.held for r in results)
            if not any(r.again for r in results) or deadline - time.monotonic() <= 0.5:
                break
        run.stopped = _summary(list(last.values()))
        self._oldest_pending_metric(list(last.values()))
        return run

    def _configured_tenants(self) -> dict[str, StoredTenant] | None:
        """Every configured tenant, by id; None when the list cannot be read."""
        try:
            return {t.id: t for t in self._services.tenants.list()}
        except Exception as exc:
            self._logger.warning("tenant list unreadable", extra={"exception": type(exc).__name__})
            return None

    def _sync_states(self) -> dict[str, SyncState] | None:
        try:
            return self._services.sync_state.all()
        except Exception as exc:
            self._logger.warning(
                "sync states unreadable; events are posted, no empty call is made",
                extra={"exception": type(exc).__name__},
            )
            return None

    def _tenant_ids(self, configured: dict[str, StoredTenant] | None) -> list[str]:
        """`default` and every configured tenant: the partitions of the outbox to read."""
        if self._tenants is not None:
            try:
                return self._tenants()
            except Exception as exc:
                self._logger.warning("tenant ids unreadable", extra={"exception": type(exc).__name__})
                configured = None
        if configured is None:
            self._logger.warning("reporting the default tenant only")
            return [DEFAULT_TENANT]
        return list(dict.fromkeys([DEFAULT_TENANT, *sorted(configured)]))

    def _cycle(self, plans: dict[str, TenantCycle], deadline: float, batch_size: int) -> list[TenantRun]:
        if not plans:
            return []
        if len(plans) == 1:
            ((tenant_id, plan),) = plans.items()
            return [self._tenant(tenant_id, plan, deadline, batch_size)]
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_TENANTS, len(plans))) as pool:
            return list(pool.map(lambda item: self._tenant(item[0], item[1], deadline, batch_size), plans.items()))

    def _tenant(self, tenant_id: str, plan: TenantCycle, deadline: float, batch_size: int) -> TenantRun:
        """One tenant's reports for one cycle. Never raises: an exception ends this tenant's share only."""
        result = TenantRun(tenant_id)
        try:
            self._report_tenant(result, plan, deadline, batch_size)
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

    def _report_tenant(self, result: TenantRun, plan: TenantCycle, deadline: float, batch_size: int) -> None:
        tenant_id = result.tenant_id
        state = plan.state
        if in_dnd(state, self._clock()):
            result.held = result.left = True  # its events wait in the outbox; nothing is lost or marked
            return
        while True:
            if deadline - time.monotonic() <= 0.5:
                result.budget_used = result.left = True
                return
            items = self._services.outbox.pending(batch_size, tenant_id)
            if not items:
                if result.batches == 0 and plan.calls_when_idle:
                    self._idle_call(result, state, deadline)
                return
            result.oldest_left_sk = items[0]["rpt_sk"]
            items = self._reportable(tenant_id, items)
            if not items:
                result.left = True
                return
            target = self._target_for(tenant_id)
            if target is None:
                result.no_target = result.left = True  # no endpoint configured: the reports wait in the outbox
                return
            lease = take_lease(self._services, tenant_id, target, deadline, self._clock)
            if isinstance(lease, LeaseRefused):
                # Quiet time set by a reply since the cycle began, or another poster still at it: next cycle.
                result.held = lease.quiet
                result.left = True
                return
            started = self._clock()
            answer = post_leased(
                self._services,
                lease,
                target,
                [report_entry(i) for i in items],
                timeout=max(0.5, min(target.timeout, deadline - time.monotonic())),
                now=int(started),
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
            # The reply is kept first: that write gives the lease back, so a marking that fails below leaves
            # the entries for a resend by the next run rather than a lease that blocks it.
            reply = self._synced(result, lease, answer.reply, started)
            marked = self._mark(items)
            result.posted += len(items)
            result.batches += 1
            if reply.next_sync_after is not None:
                result.held = result.left = True  # the client asked for quiet: the rest waits until then
                return
            if not marked:  # every entry changed since it was read: read again next cycle, not in a loop
                result.left = True
                return

    def _reportable(self, tenant_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entries read whole; an entry read half-written (a concurrent outbox write) waits for the next run."""
        reportable = [i for i in items if is_reportable(i)]
        if len(reportable) < len(items):
            self._logger.warning(
                "outbox entries read incomplete; left for the next run",
                extra={"tenant_id": tenant_id, "count": len(items) - len(reportable)},
            )
        return reportable

    def _idle_call(self, result: TenantRun, state: SyncState | None, deadline: float) -> None:
        """The empty call `{"delivery_report": []}` to a tenant with no events, when its interval has passed
        (or a run-now asked for it), so that its client can hand back work (`queued`)."""
        started = self._clock()
        if next_call_due(state, int(started), self._services.settings.sync_interval) > started:
            return
        target = self._target_for(result.tenant_id)
        if target is None:
            return
        lease = take_lease(self._services, result.tenant_id, target, deadline, self._clock)
        if isinstance(lease, LeaseRefused):
            return  # quiet, or another poster is calling this client right now
        answer = post_leased(
            self._services,
            lease,
            target,
            [],
            timeout=max(0.5, min(target.timeout, deadline - time.monotonic())),
            now=int(started),
            policy=self._policy,
        )
        result.sync_calls += 1
        if not answer.ok:
            # Not a report failure (nothing was to be delivered): the next call waits its interval.
            result.sync_call_failed = True
            self._logger.warning(
                "empty sync call failed; next one after the interval",
                extra={"tenant_id": result.tenant_id, "reason": answer.detail},
            )
            return
        self._synced(result, lease, answer.reply, started)

    def _synced(self, result: TenantRun, lease: PostLease, raw: Any, started: float) -> ClientReply:
        """Read a 2xx reply and keep what it says for the next calls (which gives the lease back)."""
        now = int(started)
        tenant_id = result.tenant_id
        reply = take_reply(self._logger, tenant_id, raw, now=now, max_defer=self._services.settings.sync_max_defer)
        result.client_errors += len(reply.errors)
        result.client_not_found += len(reply.not_found)
        result.again = result.again or reply.queued > 0
        self._services.sync_state.synced(lease, at=now, next_sync_after=reply.next_sync_after)
        if lease.state.requested_ms is not None:
            self._services.sync_state.request_served(tenant_id, started_ms=int(started * 1000))
        return reply

    def _account(self, run: ReportRun, result: TenantRun) -> None:
        run.posted += result.posted
        run.batches += result.batches
        run.sync_calls += result.sync_calls
        if result.posted:
            self._metrics.add_metric(name="ReportsPosted", unit=MetricUnit.Count, value=result.posted)
        if result.sync_calls:
            self._metrics.add_metric(name="SyncCalls", unit=MetricUnit.Count, value=result.sync_calls)
        if result.sync_call_failed:
            self._metrics.add_metric(name="SyncCallFailures", unit=MetricUnit.Count, value=1)
        if result.client_errors:
            self._metrics.add_metric(name="ReportClientErrors", unit=MetricUnit.Count, value=result.client_errors)
        if result.client_not_found:
            self._metrics.add_metric(name="ReportClientNotFound", unit=MetricUnit.Count, value=result.client_not_found)
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
