"""Campaign control (docs/tenants.md, "Campaign control"): remove unsent mail, clean up old mail, suspend and
activate sending, delete a tenant with its accounts and queued mail."""

from __future__ import annotations

from typing import Any

from mailproxy.dal.queues import QueueEntry
from mailproxy.dal.suspensions import is_suspended
from mailproxy.logic.reports import STREAM_MAX_LAG_SECONDS, reported_at
from mailproxy.models import UNSENT_STATUSES, MessageStatus
from mailproxy.services import Services


def delete_messages(services: Services, tenant_id: str, ids: list[str]) -> dict[str, Any]:
    removed: list[str] = []
    not_found: list[str] = []
    not_removed: list[dict[str, str]] = []
    for message_id in dict.fromkeys(ids):
        result = services.messages.delete_unsent(tenant_id, message_id)
        if result == "removed":
            removed.append(message_id)
        elif result == "not_found":
            not_found.append(message_id)
        else:
            not_removed.append({"id": message_id, "status": result, "reason": f"already {result}; not removed"})
    services.counters.count_each("removed", ((tenant_id, None) for _ in removed))  # unsent: out of the pending gauge
    return {"ok": True, "removed": removed, "not_found": not_found, "unauthorized": [], "not_removed": not_removed}


def cleanup_messages(services: Services, tenant_id: str, *, older_than_seconds: int, now: float) -> int:
    """Remove finished messages created over `older_than_seconds` ago whose FINAL outcome the client
    acknowledged (`is_acknowledged_final`). A message whose deferral was reported and whose final outcome
    is still owed keeps its place (docs/reliability.md, "Poison reports and tenants")."""
    done = [
        item
        for item in services.queries.tenant_messages(
            tenant_id, created_before_ms=int((now - older_than_seconds) * 1000)
        )
        if is_acknowledged_final(item, now)
    ]
    return services.messages.delete_acknowledged(done, settled_before=int(now - STREAM_MAX_LAG_SECONDS))


def is_acknowledged_final(item: dict[str, Any], now: float) -> bool:
    return MessageStatus(item["status"]).is_final and reported_at(item, now) is not None


def _matching(services: Services, tenant_id: str, batch_code: str | None) -> list[dict[str, Any]]:
    return [
        item
        for item in services.queries.tenant_messages(tenant_id)
        if item["status"] in UNSENT_STATUSES and (batch_code is None or item.get("batch_code") == batch_code)
    ]


def suspended_batches(services: Services, tenant_id: str) -> list[str]:
    """The tenant's suspensions, sorted: batch codes, or `*` when all its mail is held."""
    return sorted(services.suspensions.suspended(tenant_id))


def suspend(services: Services, tenant_id: str, batch_code: str | None, *, now: int) -> int:
    """Hold back the tenant's unsent mail (of one batch, or all); mail added later to it is held too."""
    services.suspensions.suspend(tenant_id, batch_code)
    return sum(
        services.messages.set_suspended(item, True, now=now)
        for item in _matching(services, tenant_id, batch_code)
        if not item.get("suspended")
    )


def activate(services: Services, tenant_id: str, batch_code: str | None, *, now: int) -> int:
    """Lift the suspension and send the held messages, urgent priorities first."""
    services.suspensions.activate(tenant_id, batch_code)
    still_suspended = services.suspensions.suspended(tenant_id)
    released = [
        item
        for item in _matching(services, tenant_id, batch_code)
        if item.get("suspended")
        and not is_suspended(still_suspended, item.get("batch_code"))
        and services.messages.set_suspended(item, False, now=now)
    ]
    released.sort(key=lambda item: (int(item["priority"]), item["created_key"]))
    services.queues.enqueue(
        [
            QueueEntry(
                i["tenant_id"], i["id"], i["account_id"], int(i["priority"]), delay=max(0, i.get("not_before", 0) - now)
            )
            for i in released
        ]
    )
    return len(released)


def delete_tenant(services: Services, tenant_id: str) -> dict[str, int]:
    """Remove the tenant, its API key, its accounts and its unsent mail; sent history stays until its TTL."""
    accounts = services.accounts.list(tenant_id)
    for account in accounts:
        services.accounts.delete(tenant_id, account.id)
    removed = sum(
        services.messages.delete_unsent(tenant_id, item["id"]) == "removed"
        for item in services.queries.tenant_messages(tenant_id)
        if item["status"] in UNSENT_STATUSES
    )
    services.suspensions.activate(tenant_id, None)
    services.tenants.delete(tenant_id)
    services.counters.forget_tenant(tenant_id)
    return {"accounts": len(accounts), "messages": removed}
