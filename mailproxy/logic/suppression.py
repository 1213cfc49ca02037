"""The suppression list applied to mail: at ingestion (`filter_recipients`: suppressed recipients dropped, a
message left with none rejected `suppressed`) and again at send time (`SendTimeSuppression`: an address added
while the message waited). A tenant or an account with `suppression` false (transactional mail that must always
be tried) is not filtered."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mailproxy.dal.records import StoredAccount, StoredTenant
from mailproxy.dal.suppressions import normalize_address
from mailproxy.models import MessageIn, Rejection, RejectionCode
from mailproxy.services import Services

RECIPIENT_FIELDS = ("to", "cc", "bcc")
# The EMF metric of recipients dropped because they are on the suppression list (at ingestion and at send time).
SUPPRESSED_METRIC = "SuppressedRecipients"


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


class SendTimeSuppression:
    """The suppression list at send time, for one sender batch: an address added while the message waited is
    dropped from it. One tenant read and one batch read of the list per tenant per batch (the recipients of
    every content the batch holds), not one per message."""

    def __init__(self, services: Services, contents: Callable[[], Iterable[tuple[tuple[str, str], dict[str, Any]]]]):
        self._services = services
        self._contents = contents  # (tenant, id) -> content of the batch, as read so far
        self._tenant_applies: dict[str, bool] = {}
        self._listed: dict[str, dict[str, bool]] = {}  # tenant -> normalized address -> on the list

    def suppressed(self, tenant_id: str, content: dict[str, Any], account_suppression: bool) -> set[str]:
        """The recipients of `content` (as written there) on the tenant's list now; empty when the tenant or
        the account turned suppression off."""
        if not account_suppression or not self._applies(tenant_id):
            return set()
        listed = self._listed.setdefault(tenant_id, {})
        unknown = {
            normalize_address(address)
            for (tenant, _), batch_content in [*self._contents(), ((tenant_id, ""), content)]
            if tenant == tenant_id
            for address in _recipients(batch_content)
        } - listed.keys()
        if unknown:
            found = self._services.suppressions.suppressed(tenant_id, unknown)
            listed.update({address: address in found for address in unknown})
        return {address for address in _recipients(content) if listed[normalize_address(address)]}

    def _applies(self, tenant_id: str) -> bool:
        if tenant_id not in self._tenant_applies:
            self._tenant_applies[tenant_id] = suppression_applies(self._services.tenants.get(tenant_id), None)
        return self._tenant_applies[tenant_id]


def without(content: dict[str, Any], suppressed: set[str]) -> dict[str, Any]:
    """`content` with the `suppressed` recipients (as written there) left out of to/cc/bcc."""
    return {
        **content,
        **{name: [a for a in content.get(name) or () if a not in suppressed] for name in RECIPIENT_FIELDS},
    }
