"""`add-messages`: validate each message on its own, store the good ones durably, enqueue them."""

from __future__ import annotations

import uuid
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from mailproxy.dal.messages import NewMessage
from mailproxy.dal.queues import MAX_DELAY_SECONDS, QueueEntry
from mailproxy.dal.suspensions import is_suspended
from mailproxy.logic.attachments import seal_credentials
from mailproxy.logic.suppression import filter_recipients
from mailproxy.models import (
    AddMessagesRequest,
    AddMessagesResponse,
    MessageIn,
    Rejection,
    RejectionCode,
    describe_errors,
)
from mailproxy.services import Services

logger = Logger(child=True)

# Messages enqueued, then written, together: a queue record waits for its status item one chunk at most.
WRITE_CHUNK = 25


def _message_id_header(message: MessageIn) -> str:
    if message.message_id:
        return f"<{message.message_id.strip('<>')}>"
    domain = message.from_addr.rsplit("@", 1)[-1].rstrip(">").strip() or "mail-proxy.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def add_messages(
    services: Services, request: AddMessagesRequest, *, now_ms: int, tenant_id: str | None = None
) -> AddMessagesResponse:
    """Store and enqueue the valid messages. `tenant_id` (a tenant key's own tenant) applies to messages
    that name none; the API has already refused messages naming another tenant."""
    rejected: list[Rejection] = []
    valid: list[MessageIn] = []
    seen: set[tuple[str, str]] = set()
    for position, raw in enumerate(request.messages):
        message = _validate(raw, position, request, rejected, tenant_id)
        if message is None:
            continue
        if (message.tenant_id, message.id) in seen:
            rejected.append(
                Rejection(id=message.id, reason="id: appears twice in this request", code=RejectionCode.INVALID)
            )
            continue
        seen.add((message.tenant_id, message.id))
        valid.append(message)

    suspensions = {t: services.suspensions.suspended(t) for t in {m.tenant_id for m in valid}}
    new: list[NewMessage] = []
    now = now_ms // 1000
    for (message_tenant, account_id), group in _by_account(valid).items():
        account = services.accounts.get(message_tenant, account_id)
        if account is None:
            reason = f"account_id: unknown account {account_id!r}"
            rejected.extend(Rejection(id=m.id, reason=reason, code=RejectionCode.UNKNOWN_ACCOUNT) for m in group)
            continue
        kept, suppressed = filter_recipients(services, message_tenant, account, group)
        rejected.extend(suppressed)
        new.extend(_new_message(services, message, now_ms, suspensions[message_tenant]) for message in kept)

    created, replaced = _store_and_enqueue(services, new, now=now)
    queued_keys = {m.key for m in [*created, *replaced]}
    rejected.extend(
        Rejection(id=m.id, reason="id: already known; not queued again", code=RejectionCode.DUPLICATE)
        for m in new
        if m.key not in queued_keys
    )
    services.counters.count_each("queued", ((m.tenant_id, m.account_id) for m in created))  # /metrics, best effort
    return AddMessagesResponse(queued=len(queued_keys), rejected=rejected)


def _by_account(messages: list[MessageIn]) -> dict[tuple[str, str], list[MessageIn]]:
    groups: dict[tuple[str, str], list[MessageIn]] = {}
    for message in messages:
        groups.setdefault((message.tenant_id, message.account_id), []).append(message)
    return groups


def _new_message(services: Services, message: MessageIn, now_ms: int, suspensions: set[str]) -> NewMessage:
    now = now_ms // 1000
    return NewMessage(
        tenant_id=message.tenant_id,
        id=message.id,
        account_id=message.account_id,
        priority=int(message.priority),
        created_ms=now_ms,
        not_before=message.deferred_ts if message.deferred_ts and message.deferred_ts > now else None,
        batch_code=message.batch_code,
        message_id_header=_message_id_header(message),
        content=seal_credentials(services.secret_box, message.tenant_id, message.content()),
        suspended=is_suspended(suspensions, message.batch_code),
        metadata=message.metadata or None,
        tags=message.tags or None,
    )


def _store_and_enqueue(
    services: Services, new: list[NewMessage], *, now: int
) -> tuple[list[NewMessage], list[NewMessage]]:
    """Enqueue first, then write, chunk by chunk: a new message sent at once needs no due entry, since its
    queue record exists before its status item does (docs/reliability.md, "Lost enqueue"); the chunks keep
    the time a record can arrive before its item short. A record whose enqueue failed is written with a due
    entry (the sweep enqueues it later). A replaced message is enqueued after its write, as its record
    could otherwise arrive while it is held: it keeps a due entry. Returns (created, replaced)."""
    known = services.messages.known(new)
    grace = services.settings.enqueue_grace
    created: list[NewMessage] = []
    replaced: list[NewMessage] = []
    for start in range(0, len(new), WRITE_CHUNK):
        chunk = new[start : start + WRITE_CHUNK]
        entries = [_queue_entry(m, now) for m in chunk if m.key not in known and _sent_at_once(m, now)]
        unqueued = _enqueue(services, entries)
        enqueued = {(e.tenant_id, e.message_id) for e in entries} - unqueued
        stored = services.messages.put_batch(chunk, now=now, enqueue_grace=grace, known=known, enqueued=enqueued)
        created.extend(stored.created)
        replaced.extend(stored.replaced)
        # A replaced message is enqueued again: its schedule may have changed.
        _enqueue(services, [_queue_entry(m, now) for m in stored.replaced if _sent_at_once(m, now)])
    return created, replaced


def _sent_at_once(message: NewMessage, now: int) -> bool:
    """Enqueued at ingestion: not suspended, and due within the longest SQS delay (later ones: the sweep)."""
    return not message.suspended and (message.not_before or now) - now <= MAX_DELAY_SECONDS


def _queue_entry(message: NewMessage, now: int) -> QueueEntry:
    delay = max(0, (message.not_before or now) - now)
    return QueueEntry(message.tenant_id, message.id, message.account_id, message.priority, delay=delay)


def _enqueue(services: Services, entries: list[QueueEntry]) -> set[tuple[str, str]]:
    """The keys of the entries SQS did not take; they are stored with a due entry, so the sweep enqueues them."""
    failed = services.queues.enqueue(entries)
    if failed:
        logger.warning("enqueue failed; the sweep will enqueue these later", extra={"count": len(failed)})
    return {(e.tenant_id, e.message_id) for e in failed}


def _validate(
    raw: Any, position: int, request: AddMessagesRequest, rejected: list[Rejection], tenant_id: str | None
) -> MessageIn | None:
    if not isinstance(raw, dict):
        rejected.append(
            Rejection(id=None, reason=f"messages.{position}: must be a JSON object", code=RejectionCode.INVALID)
        )
        return None
    raw_id = raw.get("id")
    if request.default_priority is not None and raw.get("priority") is None:
        raw = {**raw, "priority": int(request.default_priority)}
    if tenant_id is not None and raw.get("tenant_id") is None:
        raw = {**raw, "tenant_id": tenant_id}
    try:
        return MessageIn.model_validate(raw)
    except ValidationError as exc:
        rejected.append(
            Rejection(
                id=raw_id if isinstance(raw_id, str) else None,
                reason=describe_errors(exc.errors()),
                code=RejectionCode.INVALID,
            )
        )
        return None
