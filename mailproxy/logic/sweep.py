"""Brings back messages whose queue record is gone or whose time has come: deferred ones now due,
claims whose lease expired (a crashed sender), and stored messages whose enqueue failed."""

from __future__ import annotations

from mailproxy.dal.queues import QueueEntry
from mailproxy.services import Services


def sweep_due(services: Services, *, now: int, lookahead: int = 0, limit: int = 500) -> int:
    """Enqueue every non-final message due by `now + lookahead`; returns how many were enqueued."""
    due = services.due.due(now + lookahead, limit=limit)
    if not due:
        return 0
    entries = [QueueEntry(i["tenant_id"], i["id"], i["account_id"], int(i["priority"])) for i in due]
    failed = {(e.tenant_id, e.message_id) for e in services.queues.enqueue(entries)}
    enqueued = 0
    for item in due:
        if (item["tenant_id"], item["id"]) in failed:
            continue
        enqueued += 1
        services.due.postpone(item, until=now + services.settings.enqueue_grace)
    return enqueued
