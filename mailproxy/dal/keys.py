"""Key layout of the two tables (docs/design.md). The tenant is part of every message and account key."""

from __future__ import annotations

import zlib

SHARDS = 4  # index partitions for the sweep and the report outbox; spreads write load, queried in turn
STATUS_SK = "STATUS"
CONTENT_SK = "CONTENT"
BY_TENANT_INDEX = "by_tenant"
PENDING_REPORTS_INDEX = "pending_reports"
DUE_INDEX = "due"


def message_pk(tenant_id: str, message_id: str) -> str:
    return f"MSG#{tenant_id}#{message_id}"


def shard_of(tenant_id: str, message_id: str) -> int:
    return zlib.crc32(f"{tenant_id}\x00{message_id}".encode()) % SHARDS


def due_pk(shard: int) -> str:
    return f"DUE#{shard}"


def report_pk(tenant_id: str, shard: int) -> str:
    """The report outbox is partitioned per tenant (docs/reliability.md, "Poison reports and tenants"), so that
    the reporter reads each tenant's reports on their own and no tenant's backlog fills the head of another's
    read."""
    return f"RPT#{tenant_id}#{shard}"


def report_sk(outcome_ts_ms: int, tenant_id: str, message_id: str) -> str:
    return f"{outcome_ts_ms:013d}#{tenant_id}#{message_id}"


def created_key(created_ms: int, message_id: str) -> str:
    return f"{created_ms:013d}#{message_id}"


def account_pk(tenant_id: str) -> str:
    return f"ACCOUNT#{tenant_id}"


def rate_pk(tenant_id: str, account_id: str) -> str:
    return f"RATE#{tenant_id}#{account_id}"
