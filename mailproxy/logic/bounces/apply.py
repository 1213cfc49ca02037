"""Applying what a notice says to the message it is about: the bounce or PEC fields on its status item, an
event in its history, the message in the report outbox (the reporter reports it, acknowledged on 2xx like
any outcome), and the address suppressed after a hard bounce or a complaint. Once per notice
(`MessageStore.record_bounce` is conditional on the notice id), so a mail polled twice changes nothing."""

from __future__ import annotations

from enum import StrEnum

from mailproxy.dal.keys import report_pk, report_shard, report_sk
from mailproxy.logic.bounces.parse import BounceNotice, PecReceipt
from mailproxy.models import SuppressionReason
from mailproxy.services import Services

PEC_TIMEOUT = "pec_timeout"
# The /metrics counter (dal/counters.py) each bounce type adds to, per tenant and account: the complaint rate
# of an account (logic/bounces/rates.py) is its complaints over its sent.
BOUNCE_COUNTERS = {"hard": "bounced_hard", "soft": "bounced_soft", "complaint": "complaints"}
# The EMF metric of each counter, published by the bouncer and the SES events handler for their applied notices.
BOUNCE_METRICS = {"bounced_hard": "BouncesHard", "bounced_soft": "BouncesSoft", "complaints": "Complaints"}


def count_bounce(totals: object, bounce_type: str) -> None:
    """Add one to the field of `totals` (a poll's or an SES batch's) that counts `bounce_type`'s counter."""
    counter = BOUNCE_COUNTERS[bounce_type]
    setattr(totals, counter, getattr(totals, counter) + 1)


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this notice was recorded before
    IGNORED = "ignored"  # another tenant's message (for this mailbox), or no such message


def apply_notice(
    services: Services,
    notice: BounceNotice | PecReceipt,
    *,
    notice_id: str,
    tenant_id: str | None,
    now: int,
) -> Applied:
    """Record `notice`. `tenant_id`: the tenant whose mailbox it came from (a PEC account's inbox); a notice
    naming another tenant's message is ignored. The deployment's bounce mailbox serves every tenant (None)."""
    if tenant_id is not None and notice.tenant_id != tenant_id:
        return Applied.IGNORED
    item = services.messages.get(notice.tenant_id, notice.message_id)
    if item is None:
        return Applied.IGNORED
    if isinstance(notice, BounceNotice):
        event = "bounced"
        fields: dict[str, object] = {
            "bounce_type": notice.bounce_type,
            "bounce_code": notice.bounce_code,
            "bounce_reason": notice.bounce_reason,
            "bounce_ts": notice.bounce_ts,
        }
    else:
        event = notice.pec_event
        fields = {"pec_event": notice.pec_event, "pec_ts": notice.pec_ts, "pec_details": notice.pec_details}
    recorded = record_notice(services, notice.tenant_id, notice.message_id, event, fields, notice_id, now)
    if not recorded:
        return Applied.DUPLICATE
    if isinstance(notice, BounceNotice):
        services.counters.count_each(BOUNCE_COUNTERS[notice.bounce_type], [(notice.tenant_id, item["account_id"])])
    if isinstance(notice, BounceNotice) and notice.recipient and notice.bounce_type != "soft":
        reason = SuppressionReason.COMPLAINT if notice.bounce_type == "complaint" else SuppressionReason.HARD_BOUNCE
        services.suppressions.add(notice.tenant_id, notice.recipient, reason.value, notice.message_id)
    if isinstance(notice, PecReceipt) and notice.pec_event in ("pec_acceptance", "pec_error") and item.get("sent_ts"):
        services.mailbox_state.accepted(notice.tenant_id, notice.message_id, sent_ts=int(item["sent_ts"]))
    return Applied.APPLIED


def record_pec_timeouts(services: Services, tenant_id: str, *, timeout: int, now: int) -> int:
    """`pec_timeout` for the tenant's PEC messages sent more than `timeout` seconds ago without an
    acceptance receipt; returns how many."""
    timed_out = 0
    for sent_ts, message_id in services.mailbox_state.overdue(tenant_id, sent_before=now - timeout):
        details = f"no acceptance receipt within {timeout} s"
        fields: dict[str, object] = {"pec_event": PEC_TIMEOUT, "pec_ts": now, "pec_details": details}
        if record_notice(services, tenant_id, message_id, PEC_TIMEOUT, fields, PEC_TIMEOUT, now):
            timed_out += 1
        services.mailbox_state.accepted(tenant_id, message_id, sent_ts=sent_ts)
    return timed_out


def record_notice(
    services: Services,
    tenant_id: str,
    message_id: str,
    event: str,
    fields: dict[str, object],
    notice_id: str,
    now: int,
) -> bool:
    """`event` in the message's history and `fields` on it, the message back in the report outbox; False when
    a notice with this id was recorded before (nothing written)."""
    keys = (report_pk(tenant_id, report_shard(tenant_id, message_id)), report_sk(now * 1000, tenant_id, message_id))
    return services.messages.record_bounce(
        tenant_id, message_id, event=event, fields=fields, notice_id=notice_id, report_keys=keys, now=now
    )
