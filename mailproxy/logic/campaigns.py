"""Campaign control (docs/tenants.md, "Campaign control"): remove unsent mail, and what the bulk jobs
(mailproxy/logic/jobs.py) share with the routes: which mail is acknowledged, which batches are suspended."""

from __future__ import annotations

from typing import Any

from mailproxy.logic.reports import STREAM_MAX_LAG_SECONDS, reported_at
from mailproxy.models import MessageStatus
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


def remove_acknowledged(services: Services, items: list[dict[str, Any]], now: float) -> int:
    """Remove those of `items` whose FINAL outcome the client acknowledged (`is_acknowledged_final`): the cleanup
    job's step for each page. A message whose deferral was reported and whose final outcome is still owed keeps
    its place (docs/reliability.md, "Poison reports and tenants")."""
    done = [item for item in items if is_acknowledged_final(item, now)]
    return services.messages.delete_acknowledged(done, settled_before=int(now - STREAM_MAX_LAG_SECONDS))


def is_acknowledged_final(item: dict[str, Any], now: float) -> bool:
    return MessageStatus(item["status"]).is_final and reported_at(item, now) is not None


def suspended_batches(services: Services, tenant_id: str) -> list[str]:
    """The tenant's suspensions, sorted: batch codes, or `*` when all its mail is held."""
    return sorted(services.suspensions.suspended(tenant_id))
