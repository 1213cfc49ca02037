"""The audit (command) log of state-changing calls (admin only): list, export as JSON lines, purge.
Entries are written by `functions.api.middleware.AuditTrail`, never by a route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from functions.api.dependencies import Caller, ServicesDep, TenantQuery
from mailproxy.dal.audit import MAX_PAGE
from mailproxy.models import MAX_TIMESTAMP, CommandLogPurgeRequest
from mailproxy.views import AuditEntryView, CommandLogPage, CommandLogPurged

router = APIRouter(tags=["audit"])

Since = Annotated[int | None, Query(ge=0, le=MAX_TIMESTAMP, description="unix seconds: entries at or after it")]
Until = Annotated[int | None, Query(ge=0, le=MAX_TIMESTAMP, description="unix seconds: entries at or before it")]
EndpointFilter = Annotated[
    str | None, Query(max_length=200, description='a substring of "<METHOD> <route>", e.g. "/commands/"')
]


class CommandLogFilter:
    """The query parameters that select entries, shared by the list and the export."""

    def __init__(
        self,
        tenant_id: TenantQuery = None,
        since_ts: Since = None,
        until_ts: Until = None,
        endpoint_filter: EndpointFilter = None,
    ) -> None:
        self.selection: dict[str, Any] = {
            "tenant_id": tenant_id,
            "since_ts": since_ts,
            "until_ts": until_ts,
            "endpoint_filter": endpoint_filter,
        }


Selection = Annotated[CommandLogFilter, Depends()]


@router.get("/command-log")
def command_log(
    caller: Caller,
    services: ServicesDep,
    selected: Selection,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> CommandLogPage:
    """The state-changing calls, oldest first, a page at a time (admin token only)."""
    caller.require_admin()
    entries, after = services.audit.list(**selected.selection, limit=limit, cursor=cursor)
    return CommandLogPage(commands=[AuditEntryView.from_entry(e) for e in entries], total=len(entries), cursor=after)


@router.get(
    "/command-log/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one entry (JSON) per line"}},
)
def export_command_log(caller: Caller, services: ServicesDep, selected: Selection) -> StreamingResponse:
    """Every matching entry, oldest first, as JSON lines, streamed as the log is read (admin token only)."""
    caller.require_admin()
    entries = services.audit.export(**selected.selection)

    def lines() -> Iterator[str]:
        for entry in entries:
            yield AuditEntryView.from_entry(entry).model_dump_json() + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/command-log/purge")
def purge_command_log(request: CommandLogPurgeRequest, caller: Caller, services: ServicesDep) -> CommandLogPurged:
    """Delete the entries older than `threshold_ts` now, before their TTL would (admin token only; the purge
    itself is logged)."""
    caller.require_admin()
    return CommandLogPurged(deleted=services.audit.purge(request.threshold_ts))
