"""Key layout of the two tables (docs/design.md). The tenant is part of every message and account key.

Index partitions (and the tenant index's listing items) are sharded to spread write load (~1,000 writes/s
per partition); readers query every shard 0..count-1. The counts come from the settings (GMP_DUE_SHARDS,
GMP_REPORT_SHARDS, GMP_TENANT_INDEX_SHARDS) and may only grow: an item written under a larger count than the readers use
would never be read again (docs/operations.md, "Shard counts")."""

from __future__ import annotations

import zlib

from mailproxy.config import settings

STATUS_SK = "STATUS"
CONTENT_SK = "CONTENT"
PENDING_REPORTS_INDEX = "pending_reports"
DUE_INDEX = "due"


def message_pk(tenant_id: str, message_id: str) -> str:
    return f"MSG#{tenant_id}#{message_id}"


def _message_hash(tenant_id: str, message_id: str) -> int:
    return zlib.crc32(f"{tenant_id}\x00{message_id}".encode())


def due_shards() -> range:
    return range(settings().due_shards)


def due_shard(tenant_id: str, message_id: str) -> int:
    return _message_hash(tenant_id, message_id) % settings().due_shards


def due_pk(shard: int) -> str:
    return f"DUE#{shard}"


def report_shards() -> range:
    return range(settings().report_shards)


def report_shard(tenant_id: str, message_id: str) -> int:
    return _message_hash(tenant_id, message_id) % settings().report_shards


def report_pk(tenant_id: str, shard: int) -> str:
    """The report outbox is partitioned per tenant (docs/reliability.md, "Poison reports and tenants"), so that
    the reporter reads each tenant's reports on their own and no tenant's backlog fills the head of another's
    read."""
    return f"RPT#{tenant_id}#{shard}"


def report_sk(outcome_ts_ms: int, tenant_id: str, message_id: str) -> str:
    return f"{outcome_ts_ms:013d}#{tenant_id}#{message_id}"


def tenant_index_shards() -> range:
    return range(settings().tenant_index_shards)


TENANT_INDEX_PREFIX = "LIST#"


def tenant_index_partition(tenant_id: str, shard: int) -> str:
    """A partition of a tenant's index (mailproxy/dal/tenant_index.py): its listing items are spread over
    several, so that a tenant's ingestion is not capped by one partition's write rate."""
    return f"{TENANT_INDEX_PREFIX}{tenant_id}#{shard}"


def account_pk(tenant_id: str) -> str:
    return f"ACCOUNT#{tenant_id}"


def rate_pk(tenant_id: str, account_id: str) -> str:
    return f"RATE#{tenant_id}#{account_id}"


def connection_pk(tenant_id: str, account_id: str) -> str:
    return f"CONN#{tenant_id}#{account_id}"


def job_pk(tenant_id: str) -> str:
    return f"JOB#{tenant_id}"
