"""The suppression list applied to mail: at ingestion (`filter_recipients`: suppressed recipients dropped, a
message left with none rejected `suppressed`) and again at send time (`suppressed_at_send`: an address added
while the message waited). A tenant or an account with `suppression` false (transactional mail that must always
be tried) is not filtered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailproxy.dal.records import ClaimedMessage, StoredAccount, StoredTenant
from mailproxy.dal.suppressions import normalize_address
from mailproxy.models import MessageIn, Rejection, RejectionCode
from mailproxy.services import Services

RECIPIENT_FIELDS = ("to", "cc", "bcc")


def suppression_applies(tenant: StoredTenant | None, account: StoredAccount | None) -> bool:
    """Neither the tenant (None: `default` without an item) nor the account turned suppression off."""
    return (tenant is None or tenant.suppression) and (account is None or account.suppression)


def _recipients(fields: dict[str, Any]) -> Iterable[str]:
    for name in RECIPIENT_FIELDS:
        yield from fields.get(name) or ()


def filter_recipients(
    services: Services, tenant_id: str, account: StoredAccount | None, messages: list[MessageIn]
) -> tuple[list[MessageIn], list[Rejection]]:
    """The messages of one tenant and account with their suppressed recipients dropped from to/cc/bcc, and a
    rejection (`suppressed`) for each message left with no recipient. One batch read for all of them."""
    if not messages or not suppression_applies(services.tenants.get(tenant_id), account):
        return messages, []
    addresses = {address for message in messages for name in RECIPIENT_FIELDS for address in getattr(message, name)}
    suppressed = services.suppressions.suppressed(tenant_id, addresses)
    if not suppressed:
        return messages, []
    kept: list[MessageIn] = []
    rejected: list[Rejection] = []
    for message in messages:
        remaining = {
            name: [address for address in getattr(message, name) if normalize_address(address) not in suppressed]
            for name in RECIPIENT_FIELDS
        }
        if not any(remaining.values()):
            count = sum(len(getattr(message, name)) for name in RECIPIENT_FIELDS)
            reason = f"to: every recipient ({count}) is on the tenant's suppression list"
            rejected.append(Rejection(id=message.id, reason=reason, code=RejectionCode.SUPPRESSED))
        else:
            kept.append(message.model_copy(update=remaining))
    return kept, rejected


def suppressed_at_send(
    services: Services, claimed: ClaimedMessage, content: dict[str, Any], account: StoredAccount
) -> set[str]:
    """The recipients of a stored content (as written there) on the tenant's list now; empty when the tenant
    or the account turned suppression off. Costs a tenant read and one batch read per message."""
    if not suppression_applies(services.tenants.get(claimed.tenant_id), account):
        return set()
    recipients = list(_recipients(content))
    suppressed = services.suppressions.suppressed(claimed.tenant_id, recipients)
    return {address for address in recipients if normalize_address(address) in suppressed}
