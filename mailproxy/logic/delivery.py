"""Delivery of one sender batch: claim each message, respect the account's quotas, send over one SMTP
connection per account, record the outcome, and re-enqueue what must wait."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from mailproxy.config import SENDER_SAFETY_SECONDS
from mailproxy.dal.connections import ConnectionSlot
from mailproxy.dal.counters import Tally
from mailproxy.dal.messages import RETENTION_SECONDS, Outcome
from mailproxy.dal.queues import MAX_DELAY_SECONDS, QueueEntry, ReceivedRecord
from mailproxy.dal.ratelimits import Reservation
from mailproxy.dal.records import ClaimedMessage
from mailproxy.headers import parse_address
from mailproxy.logic.attachments import AttachmentFetcher, FetchFailed, LargeFiles
from mailproxy.logic.backoff import retry_delay
from mailproxy.logic.bounces.correlation import correlation_id
from mailproxy.logic.bounces.ses import SES_CONFIGURATION_SET_HEADER
from mailproxy.logic.http_guard import HttpPolicy
from mailproxy.logic.mime import (
    Download,
    Envelope,
    ListUnsubscribe,
    MailAttachment,
    OutgoingMail,
    build_message,
    with_download_links,
)
from mailproxy.logic.orphans import refused_claim
from mailproxy.logic.smtp import Outcome as SmtpOutcome
from mailproxy.logic.smtp import SendResult, SmtpAccount, SmtpPool
from mailproxy.logic.ssrf import guarded_addresses, parse_allowlist
from mailproxy.logic.suppression import RECIPIENT_FIELDS, SUPPRESSED_METRIC, SendTimeSuppression, without
from mailproxy.logic.unsubscribe import Unsubscription, unsubscribe_key, unsubscribe_token
from mailproxy.models import MessageStatus, check_headers_size
from mailproxy.services import Services


@dataclass
class _Account:
    smtp: SmtpAccount
    limits: dict[str, int]
    reject_over_limit: bool
    batch_size: int | None
    limit_per_second: int | None = None  # reserved per message, right before its send
    max_concurrent: int | None = None
    problem: str | None = None  # why it cannot be used now (its password does not decrypt)
    sandbox: bool = False  # build, record `sent`, connect to nothing
    keep_raw_seconds: int | None = None  # keep the MIME of real sends this long (GET /messages/{id}/raw)
    suppression: bool = True  # false: the tenant's suppression list is not applied (transactional mail)
    is_pec: bool = False  # a PEC account: an acceptance receipt is awaited after each send
    ses_configuration_set: str | None = None  # SES publishes this account's bounces to the deployment's topic


# The history reason of a sandbox account's `sent`: built and validated, delivered to nobody.
SANDBOX_REASON = "sandbox: not delivered"
# A message that finds every connection slot of its account held waits this long: slots free up as the
# batches holding them end.
CONNECTION_WAIT_SECONDS = 5
# How long one message may wait in the batch for a slot of its account's per-second rate before it is deferred.
MAX_PACING_SECONDS = 2.0
PACING_TRIES = 4

# The /metrics counter (dal/counters.py) each recorded outcome adds to.
_COUNTER_OF_STATUS = {MessageStatus.SENT: "sent", MessageStatus.ERROR: "errors", MessageStatus.DEFERRED: "deferred"}


def _unfinished_claims(claimed: ClaimedMessage) -> int:
    """Earlier claims of this message that never recorded an outcome: the invocation crashed or timed out."""
    return max(0, claimed.claims - 1 - claimed.outcomes)


class BatchDelivery:
    """Lives for one SQS batch. Not thread-safe: one per invocation."""

    def __init__(
        self,
        services: Services,
        *,
        correlation_key: bytes,
        logger: Logger,
        metrics: Metrics,
        pool: SmtpPool | None = None,
        clock: Callable[[], float] = time.time,
        remaining_seconds: Callable[[], float] | None = None,
    ) -> None:
        self._services = services
        self._remaining = remaining_seconds
        self._settings = services.settings
        self._logger = logger
        self._metrics = metrics
        self._clock = clock
        self._correlation_key = correlation_key
        allowlist = parse_allowlist(self._settings.smtp_host_allowlist)
        self.pool = pool or SmtpPool(addresses=guarded_addresses(self._settings.mode, allowlist))
        self._accounts: dict[tuple[str, str], _Account | None] = {}
        self._reservations: dict[tuple[str, str], Reservation] = {}
        self._contents: dict[tuple[str, str], dict[str, Any]] = {}
        self._attempted: Counter[tuple[str, str]] = Counter()
        self._unreachable: dict[tuple[str, str], str] = {}
        self._fetcher = AttachmentFetcher(services, policy=HttpPolicy(mode=self._settings.mode, allowlist=allowlist))
        self._large_files = LargeFiles(services, logger=logger, metrics=metrics)
        self.outcomes: Counter[str] = Counter()
        # /metrics counters of the batch, written once per account at the end (close): no write per message.
        self._tally = Tally()
        self._tagged: Counter[tuple[str, str]] = Counter()  # (tag, status) -> this batch's outcomes
        self._rate_limited: set[tuple[str, str]] = set()
        # Connection slots (dal/connections.py) held by this batch, None where every slot was held by others.
        self._connection_slots: dict[tuple[str, str], ConnectionSlot | None] = {}
        self._suppression = SendTimeSuppression(services, lambda: self._contents.items())
        self._return_path: str | None = None  # envelope sender of messages that set none (docs/bounces.md)

    # -- batch scope ---------------------------------------------------------------------------------
    def prepare(self, entries: list[QueueEntry]) -> None:
        """Read what the whole batch needs at once: accounts, quota slots, contents."""
        now = int(self._clock())
        self._return_path = self._deployment_return_path()
        wanted: Counter[tuple[str, str]] = Counter((e.tenant_id, e.account_id) for e in entries)
        for key, count in wanted.items():
            account = self._account(key)
            if account and account.limits:
                self._reservations[key] = self._services.rate_limits.reserve(*key, account.limits, count, now)
        try:
            self._contents = self._services.messages.contents.get_many([(e.tenant_id, e.message_id) for e in entries])
        except Exception:
            # A throttled batch read: each record then reads its own content, and fails alone if it must.
            self._logger.warning("batch read of contents failed; reading per message", exc_info=True)

    def _deployment_return_path(self) -> str | None:
        """The bounce mailbox's return path (set through the API), else GMP_BOUNCE_RETURN_PATH. A failed read
        costs the batch its return path, never its mail: bounces then go to each message's From."""
        try:
            configured = self._services.bounce_config.get().return_path
        except Exception:
            self._logger.warning("bounce configuration not read; no return path this batch", exc_info=True)
            configured = None
        return configured or self._settings.bounce_return_path

    def close(self) -> None:
        """Give back what the batch holds; the connection slots on every path, after their connections closed."""
        try:
            self._flush_counters()
            for reservation in self._reservations.values():
                self._services.rate_limits.release(reservation)
        finally:
            try:
                self.pool.close()
            finally:
                self._release_connection_slots()

    def _release_connection_slots(self) -> None:
        slots, self._connection_slots = self._connection_slots, {}
        for slot in slots.values():
            if slot is None:
                continue
            try:
                self._services.connections.release(slot)
            except Exception:  # its lease runs out by itself
                self._logger.warning(
                    "connection slot not released", extra={"account_id": slot.account_id}, exc_info=True
                )

    def _flush_counters(self) -> None:
        """Best effort (dal/counters.py): a failed update is logged there and counted here, the mail stays sent.
        The batch's outcomes per tag go out as one EMF metric per tag and status (`TaggedSent`, dimension `tag`)."""
        failed = self._services.counters.add(self._tally)
        self._tally = Tally()
        if failed:
            self._metrics.add_metric(name="MetricCounterFailures", unit=MetricUnit.Count, value=failed)
        tagged, self._tagged = self._tagged, Counter()
        for (tag, status), count in sorted(tagged.items()):
            with single_metric(
                name=f"Tagged{status.capitalize()}",
                unit=MetricUnit.Count,
                value=count,
                namespace=self._metrics.namespace,
                default_dimensions={"service": str(self._metrics.service)},
            ) as metric:
                metric.add_dimension(name="tag", value=tag)

    def __enter__(self) -> BatchDelivery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _account(self, key: tuple[str, str]) -> _Account | None:
        if key not in self._accounts:
            self._accounts[key] = self._read_account(key)
        return self._accounts[key]

    def _read_account(self, key: tuple[str, str]) -> _Account | None:
        stored = self._services.accounts.get(*key)
        if stored is None:
            return None
        password, problem = None, None
        try:
            password = self._services.accounts.password(stored)
        except Exception as exc:  # one account's bad secret must not fail the other accounts' mail
            problem = f"the account's password cannot be decrypted ({type(exc).__name__})"
        limits = {"minute": stored.limit_per_minute, "hour": stored.limit_per_hour, "day": stored.limit_per_day}
        return _Account(
            smtp=SmtpAccount.of(stored, password, max_timeout=self._settings.max_account_timeout),
            problem=problem,
            limits={window: limit for window, limit in limits.items() if limit},
            reject_over_limit=stored.limit_behavior == "reject",
            batch_size=stored.batch_size,
            limit_per_second=stored.limit_per_second,
            max_concurrent=stored.max_concurrent,
            sandbox=stored.sandbox,
            keep_raw_seconds=stored.keep_raw_seconds,
            suppression=stored.suppression,
            is_pec=stored.is_pec_account,
            ses_configuration_set=stored.ses_configuration_set,
        )

    # -- one record ----------------------------------------------------------------------------------
    def deliver(self, entry: QueueEntry, record: ReceivedRecord | None = None) -> str:
        """Deliver one queued message; returns what happened. Raises only when the record must be retried
        (a failing read or write before the claim or of the outcome: the message is untouched or its lease
        runs out, and SQS or the sweep brings it back; a record that arrived before its message was stored).
        `record`: the SQS record's age and handle, for a record whose message is not stored."""
        now = int(self._clock())
        if self._must_wait(entry):
            return self._hand_on(entry)
        self._read_content(entry)
        claim = self._services.messages.attempt_claim(
            entry.tenant_id, entry.message_id, now=now, lease_seconds=self._settings.claim_lease_seconds
        )
        claimed = claim.message
        if claimed is None:
            refused = refused_claim(
                self._services, entry, claim, record, now=self._clock(), logger=self._logger, metrics=self._metrics
            )
            self.outcomes[refused] += 1
            return refused
        outcome = self._deliver_guarded(claimed, now)
        # Outside the guard: a failing outcome write after a 250 must not become a deferral (a second send).
        return self._record(claimed, outcome)

    def _must_wait(self, entry: QueueEntry) -> bool:
        account = self._account((entry.tenant_id, entry.account_id))
        if account is None:
            return False
        if account.batch_size and self._attempted[(entry.tenant_id, entry.account_id)] >= account.batch_size:
            return True
        return self._time_to_spare(account) < 0

    def _time_to_spare(self, account: _Account) -> float:
        """What the invocation can spend before it must start the account's last attempt."""
        if self._remaining is None:
            return math.inf
        return self._remaining() - account.smtp.timeout - SENDER_SAFETY_SECONDS

    def _hand_on(self, entry: QueueEntry) -> str:
        """The account's share of this invocation, or the invocation's time, is used up: hand the record to
        a later invocation, untouched."""
        self._services.queues.enqueue(
            [QueueEntry(entry.tenant_id, entry.message_id, entry.account_id, entry.priority, delay=1)]
        )
        self.outcomes["requeued"] += 1
        return "requeued"

    def _read_content(self, entry: QueueEntry) -> None:
        """Not in the batch read (or it failed): read it alone before claiming, so that a failing read
        leaves the message untouched for SQS to redeliver."""
        content_key = (entry.tenant_id, entry.message_id)
        if content_key not in self._contents:
            self._contents.update(self._services.messages.contents.get_many([content_key]))

    def _deliver_guarded(self, claimed: ClaimedMessage, now: int) -> Outcome:
        """Whatever goes wrong between the claim and the outcome costs this message one attempt, never its
        batch-mates. Only the type is logged: an exception's text can carry a credential."""
        try:
            return self._deliver_claimed(claimed, now)
        except Exception as exc:
            self._logger.warning(
                "delivery failed unexpectedly; deferred",
                extra={"message_id": claimed.id, "tenant_id": claimed.tenant_id, "error": type(exc).__name__},
            )
            return self._retry_outcome(claimed, now, f"delivery failed unexpectedly ({type(exc).__name__})")

    def _deliver_claimed(self, claimed: ClaimedMessage, now: int) -> Outcome:
        """The steps after the claim, each of which may end the message; the last one is the SMTP attempt."""
        unfinished = _unfinished_claims(claimed)
        if unfinished >= self._settings.max_attempts:
            return _ended_unsent(now, f"gave up after {unfinished} attempts without an outcome")
        key = (claimed.tenant_id, claimed.account_id)
        account = self._account(key)
        if account is None:
            return _ended_unsent(now, f"account {claimed.account_id!r} was deleted")
        self._attempted[key] += 1
        held_back = self._held_back(claimed, key, account, now)
        if held_back is not None:
            return held_back
        built = self._message(claimed, account, now)
        if isinstance(built, Outcome):
            return built
        if key in self._unreachable:
            # One timeout per account per batch, not one per message: the rest wait for the next attempt.
            return self._retry_outcome(claimed, now, f"not tried: {self._unreachable[key]} (earlier in this batch)")
        message, envelope = built
        refused = self._provider_refusal(claimed, key, account, now)
        if refused is not None:
            return refused
        if account.sandbox:
            # Built and checked as for a real send; kept for /raw; a failing put must not fail the message.
            self._keep_raw(claimed, message, now + RETENTION_SECONDS)
            return Outcome(MessageStatus.SENT, now, reason=SANDBOX_REASON, smtp_attempt=False, sandbox=True)
        outcome = self._send(claimed, key, account, message, envelope)
        if outcome.status is MessageStatus.SENT:
            self._after_sent(claimed, account, message, outcome.ts)
        return outcome

    def _after_sent(self, claimed: ClaimedMessage, account: _Account, message: EmailMessage, sent_ts: int) -> None:
        if account.keep_raw_seconds:
            self._keep_raw(claimed, message, sent_ts + account.keep_raw_seconds)
        if account.is_pec:
            try:
                self._services.mailbox_state.await_acceptance(
                    claimed.tenant_id, claimed.id, sent_ts=sent_ts, message_id_header=claimed.message_id_header
                )
            except Exception:  # the message is sent; only its `pec_timeout` is lost, never a second send
                self._logger.warning(
                    "PEC acceptance wait not recorded", exc_info=True, extra={"message_id": claimed.id}
                )

    def _keep_raw(self, claimed: ClaimedMessage, message: EmailMessage, keep_until: int) -> None:
        try:
            self._services.messages.contents.put_raw(claimed.tenant_id, claimed.id, message.as_bytes(), keep_until)
        except Exception:  # a debugging copy: its loss never turns a sent message into a retry
            self._logger.warning("raw message not kept", exc_info=True, extra={"message_id": claimed.id})

    def _held_back(self, claimed: ClaimedMessage, key: tuple[str, str], account: _Account, now: int) -> Outcome | None:
        """The account cannot be used now (its password does not decrypt), or its rate limit is reached."""
        if account.problem:
            return self._retry_outcome(claimed, now, account.problem)
        limited = self._over_rate_limit(key, account, now)
        if limited is not None:
            self._rate_limited.add(claimed.key)
        return limited

    def _message(self, claimed: ClaimedMessage, account: _Account, now: int) -> tuple[EmailMessage, Envelope] | Outcome:
        """The message to send, built from the stored content with its attachments, without the recipients
        suppressed since it was queued; or why it cannot be."""
        content = self._contents.get(claimed.key)
        if content is None:
            return _ended_unsent(now, "message content is missing")
        suppressed = self._suppression.suppressed(claimed.tenant_id, content, account.suppression)
        if suppressed:
            self._metrics.add_metric(name=SUPPRESSED_METRIC, unit=MetricUnit.Count, value=len(suppressed))
            content = without(content, suppressed)
            if not any(content.get(name) for name in RECIPIENT_FIELDS):
                return _ended_unsent(now, "suppressed: every recipient is on the tenant's suppression list")
        try:
            mail = self._mail(claimed.tenant_id, claimed.id, content)
        except FetchFailed as failure:
            if failure.temporary:
                return self._retry_outcome(claimed, now, failure.reason)
            return Outcome(MessageStatus.ERROR, now, error=failure.reason)
        try:
            correlation = correlation_id(claimed.tenant_id, claimed.id, key=self._correlation_key)
            built, envelope = build_message(mail, message_id=claimed.message_id_header, correlation=correlation)
        except ValueError as exc:
            return _ended_unsent(now, f"message cannot be built: {exc}")
        if account.ses_configuration_set is not None:  # the account's, not a client's header of that name
            del built[SES_CONFIGURATION_SET_HEADER]
            built[SES_CONFIGURATION_SET_HEADER] = account.ses_configuration_set
        return built, envelope

    def _over_rate_limit(self, key: tuple[str, str], account: _Account, now: int) -> Outcome | None:
        reservation = self._reservations.get(key)
        if reservation is None or reservation.take():
            return None
        return _rate_limited(account, now, reservation)

    def _provider_refusal(
        self, claimed: ClaimedMessage, key: tuple[str, str], account: _Account, now: int
    ) -> Outcome | None:
        """The provider's own limits, checked right before the send: a connection slot of the account's
        `max_concurrent` (held for the rest of the batch), then a slot of its per-second rate. A refused
        message gives its batch slot back and waits without consuming an attempt."""
        refused: Outcome | None = None
        if not self._has_connection_slot(key, account):
            refused = Outcome(
                MessageStatus.DEFERRED,
                now,
                not_before=now + CONNECTION_WAIT_SECONDS,
                reason="max_concurrent",
                smtp_attempt=False,
            )
        elif account.limit_per_second:
            paced = self._paced(key, account, account.limit_per_second)
            if paced is not None:
                refused = _rate_limited(account, now, paced)
                self._rate_limited.add(claimed.key)
        if refused is not None and key in self._reservations:
            self._reservations[key].put_back()
        return refused

    def _has_connection_slot(self, key: tuple[str, str], account: _Account) -> bool:
        """Acquired before the account's connection is opened, once per batch; a refusal holds for the batch."""
        if not account.max_concurrent:
            return True
        if key not in self._connection_slots:
            self._connection_slots[key] = self._services.connections.acquire(
                *key,
                account.max_concurrent,
                now=self._clock(),
                lease_seconds=self._settings.claim_lease_seconds,
            )
        return self._connection_slots[key] is not None

    def _paced(self, key: tuple[str, str], account: _Account, limit: int) -> Reservation | None:
        """One slot of the per-second rate, reserved across every sender; waits in the batch for one while the
        wait is short and the invocation has time. Returns the last refused reservation if none came."""
        for _ in range(PACING_TRIES):
            reservation = self._services.rate_limits.reserve(*key, {"second": limit}, 1, self._clock())
            if reservation.granted:
                return None
            wait = (reservation.retry_at_ms or 0) / 1000 - self._clock()
            if wait > min(MAX_PACING_SECONDS, self._time_to_spare(account)):
                return reservation
            time.sleep(max(wait, 0.0))
        return reservation

    def _mail(self, tenant_id: str, message_id: str, content: dict[str, Any]) -> OutgoingMail:
        """The stored content with its attachments fetched, within the caps that ingestion checked too; an
        attachment the tenant's large-file `rewrite` uploaded is a link in the body, and counts in no cap."""
        try:
            check_headers_size(content.get("headers") or {})
        except ValueError as exc:
            raise FetchFailed(f"message cannot be built: {exc}", temporary=False) from None
        budget = self._settings.message_max_bytes - sum(
            len((content.get(text) or "").encode("utf-8", "surrogatepass")) for text in ("body", "html")
        )
        attachments: list[MailAttachment] = []
        downloads: list[Download] = []
        for attachment in content.get("attachments", []):
            data = self._fetcher.content(tenant_id, attachment)
            download = self._large_files.offload(tenant_id, message_id, attachment["filename"], data)
            if download is not None:
                downloads.append(download)
                continue
            budget -= len(data)
            if budget < 0:
                limit = self._settings.message_max_bytes
                raise FetchFailed(f"message larger than {limit} bytes with its attachments", temporary=False)
            attachments.append(
                MailAttachment(
                    filename=attachment["filename"],
                    content=data,
                    mime_type=attachment.get("mime_type"),
                    content_id=attachment.get("content_id"),
                    inline=attachment.get("disposition") == "inline",
                )
            )
        mail = OutgoingMail(**{**content, "attachments": attachments})
        if (content.get("list_unsubscribe") or {}).get("hosted"):
            mail = self._with_hosted_unsubscribe(tenant_id, message_id, mail)
        if mail.return_path is None and self._return_path:
            mail = mail.model_copy(update={"return_path": self._return_path})
        if downloads:
            body = with_download_links(mail.body, downloads, html=mail.content_type == "html" and mail.html is None)
            html = with_download_links(mail.html, downloads, html=True) if mail.html is not None else None
            mail = mail.model_copy(update={"body": body, "html": html})
        return mail

    def _with_hosted_unsubscribe(self, tenant_id: str, message_id: str, mail: OutgoingMail) -> OutgoingMail:
        """The one-click URL of the proxy's own endpoint, signed for the message's one recipient."""
        public_url = self._settings.public_url
        if not public_url:
            raise FetchFailed("list_unsubscribe.hosted: the deployment has no GMP_PUBLIC_URL", temporary=False)
        (recipient,) = (*mail.to, *mail.cc, *mail.bcc)  # ingestion allows hosted with one recipient only
        target = Unsubscription(tenant_id, parse_address(recipient).addr_spec, message_id)
        token = unsubscribe_token(target, key=unsubscribe_key(self._correlation_key))
        mailto = mail.list_unsubscribe.mailto if mail.list_unsubscribe else None
        hosted = ListUnsubscribe(url=f"{public_url.rstrip('/')}/unsubscribe/{token}", mailto=mailto)
        return mail.model_copy(update={"list_unsubscribe": hosted})

    def _send(
        self,
        claimed: ClaimedMessage,
        key: tuple[str, str],
        account: _Account,
        message: EmailMessage,
        envelope: Envelope,
    ) -> Outcome:
        budget = 4 * account.smtp.timeout
        if self._remaining is not None:
            budget = min(budget, self._remaining() - SENDER_SAFETY_SECONDS)
        started = time.perf_counter()
        result = self.pool.send(
            f"{key[0]}#{key[1]}", account.smtp, message, envelope, deadline=time.monotonic() + max(budget, 1.0)
        )
        if result.outcome is SmtpOutcome.DEFERRED and result.code is None and "(connect," in result.detail:
            self._unreachable[key] = result.detail  # could not reach the server: refused, timed out, DNS
        try:
            self._smtp_activity(claimed, key, account, result, (time.perf_counter() - started) * 1000)
        except Exception:  # bookkeeping must never turn a 250 into a deferral (and a second send)
            self._logger.warning("smtp activity not recorded", exc_info=True)
        done = int(self._clock())
        if result.outcome is SmtpOutcome.SENT:
            return Outcome(MessageStatus.SENT, done)
        reply = f"{result.code} {result.detail}" if result.code else result.detail
        if result.outcome is SmtpOutcome.ERROR:
            return Outcome(MessageStatus.ERROR, done, error=reply)
        return self._retry_outcome(claimed, done, reply)

    def _smtp_activity(
        self, claimed: ClaimedMessage, key: tuple[str, str], account: _Account, result: SendResult, latency_ms: float
    ) -> None:
        self._metrics.add_metric(name="SmtpLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
        if self._settings.log_delivery_activity:
            self._logger.info(
                "smtp attempt",
                extra={
                    "message_id": claimed.id,
                    "tenant_id": claimed.tenant_id,
                    "account_id": key[1],
                    "smtp_host": account.smtp.host,
                    "outcome": result.outcome.value,
                    "smtp_code": result.code,
                    "detail": result.detail,
                    "latency_ms": round(latency_ms, 1),
                    "attempt": claimed.attempts + 1,
                },
            )

    def _retry_outcome(self, claimed: ClaimedMessage, now: int, reason: str) -> Outcome:
        """Deferred with backoff, or error once the attempts are used up (claims that ended without an
        outcome, a crash or a timeout, count as attempts)."""
        attempt = claimed.attempts + _unfinished_claims(claimed) + 1
        if attempt >= self._settings.max_attempts:
            return Outcome(MessageStatus.ERROR, now, error=f"gave up after {attempt} attempts: {reason}")
        delay = retry_delay(attempt, base=self._settings.backoff_base, cap=self._settings.backoff_cap)
        # From the next whole second after this attempt (`now` is the floor of its start): a backoff of one
        # second is never cut to a fraction of one by the rounding.
        not_before = math.ceil(self._clock()) + delay
        return Outcome(MessageStatus.DEFERRED, now, not_before=not_before, reason=reason)

    def _record(self, claimed: ClaimedMessage, outcome: Outcome) -> str:
        if not self._services.messages.record(claimed, outcome):
            self._logger.warning(
                "claim lost before the outcome was written",
                extra={"message_id": claimed.id, "tenant_id": claimed.tenant_id},
            )
            self.outcomes["claim_lost"] += 1
            return "claim_lost"
        status = outcome.status.value
        if outcome.status.is_final:
            self._content_ended(claimed, outcome)
        self.outcomes[status] += 1
        self._metrics.add_metric(name=status.capitalize(), unit=MetricUnit.Count, value=1)
        self._tagged.update((tag, status) for tag in claimed.tags)
        self._count(claimed, outcome)
        if outcome.status is MessageStatus.DEFERRED and outcome.not_before is not None:
            self._enqueue_retry(claimed, outcome.not_before)
        self._log_outcome(claimed, outcome)
        return status

    def _count(self, claimed: ClaimedMessage, outcome: Outcome) -> None:
        self._tally.count(claimed.tenant_id, claimed.account_id, _COUNTER_OF_STATUS[outcome.status])
        if claimed.key in self._rate_limited:  # deferred or rejected by the account's rate limit
            self._tally.count(claimed.tenant_id, claimed.account_id, "rate_limited")
            self._metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)

    def _content_ended(self, claimed: ClaimedMessage, outcome: Outcome) -> None:
        try:
            expires_at = outcome.ts + RETENTION_SECONDS
            self._services.messages.contents.ended(claimed.tenant_id, claimed.id, expires_at)
        except Exception:  # best effort: the outcome is written; an orphaned copy expires by the lifecycle rule
            self._logger.warning("content clean-up failed", extra={"message_id": claimed.id}, exc_info=True)

    def _enqueue_retry(self, claimed: ClaimedMessage, not_before: int) -> None:
        delay = not_before - int(self._clock())
        if delay <= MAX_DELAY_SECONDS:
            # Best effort: if this enqueue is lost, the sweep enqueues the message once it is due.
            self._services.queues.enqueue(
                [
                    QueueEntry(
                        claimed.tenant_id,
                        claimed.id,
                        claimed.account_id,
                        claimed.priority,
                        delay=delay,
                    )
                ]
            )

    def _log_outcome(self, claimed: ClaimedMessage, outcome: Outcome) -> None:
        extra: dict[str, str | None] = {
            "message_id": claimed.id,
            "tenant_id": claimed.tenant_id,
            "account_id": claimed.account_id,
            "status": outcome.status.value,
        }
        if outcome.error or outcome.reason:
            extra["reason"] = outcome.error or outcome.reason
        self._logger.info("message outcome", extra=extra)


def _rate_limited(account: _Account, now: int, reservation: Reservation) -> Outcome:
    """Over a rate limit: wait for a free slot without consuming an attempt, or end ("reject")."""
    if account.reject_over_limit:
        return Outcome(MessageStatus.ERROR, now, error="rate_limit_exceeded", smtp_attempt=False)
    return Outcome(
        MessageStatus.DEFERRED,
        now,
        not_before=reservation.retry_at or now + 60,
        reason=f"rate limit: {reservation.limited_by}",
        smtp_attempt=False,
    )


def _ended_unsent(now: int, reason: str) -> Outcome:
    """An error without an SMTP transaction: trying again would end the same way."""
    return Outcome(MessageStatus.ERROR, now, error=reason, smtp_attempt=False)
