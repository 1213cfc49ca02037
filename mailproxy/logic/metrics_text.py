"""Prometheus text exposition (format 0.0.4) for scrapers: the original service's series (UPSTREAM-API.md §4,
the names and labels its Grafana dashboard queries) from the counters of dal/counters.py, and the delivery
queues' depth. A scrape reads a bounded number of items, whatever the number of messages: the tenants, each
tenant's accounts and the counter items (docs/operations.md, "Grafana: the original's dashboard")."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailproxy.models import DEFAULT_TENANT
from mailproxy.services import Services

# name, counter field (dal/counters.py), help text; in the original's order.
OUTCOME_COUNTERS = (
    ("gmp_sent_total", "sent", "Messages accepted by the SMTP server."),
    ("gmp_errors_total", "errors", "Messages that ended in error (permanent failure, attempts used up, or refused)."),
    ("gmp_deferred_total", "deferred", "Deferrals: a temporary failure or the account's rate limit."),
    ("gmp_rate_limited_total", "rate_limited", "Sends held back by the account's rate limit, deferred or refused."),
)
LABELS = ("tenant_id", "tenant_name", "account_id", "account_name")


@dataclass(frozen=True)
class AccountSeries:
    tenant_id: str
    tenant_name: str
    account_id: str
    counts: dict[str, int] = field(default_factory=dict)

    def labels(self) -> str:
        tenant_id, account_id = self.tenant_id or "default", self.account_id or "default"
        values = (tenant_id, self.tenant_name or tenant_id, account_id, account_id)
        return ",".join(f'{name}="{_label(value)}"' for name, value in zip(LABELS, values, strict=True))


@dataclass(frozen=True)
class Snapshot:
    accounts: list[AccountSeries]
    pending: int
    queue_depth: dict[str, int]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def snapshot(services: Services) -> Snapshot:
    """Every existing account gets its series, at 0 before its first message (as the original creates them
    at start-up), so that `rate()` has a first sample; a deleted account keeps its counts, a deleted tenant
    does not. Pending = queued - sent - errors - removed unsent, over all tenants."""
    names = {DEFAULT_TENANT: DEFAULT_TENANT} | {t.id: t.name or t.id for t in services.tenants.list()}
    counts: dict[tuple[str, str], dict[str, int]] = {
        (tenant_id, account.id): {} for tenant_id in names for account in services.accounts.list(tenant_id)
    }
    removed = 0
    for item in services.counters.read():
        if item.tenant_id not in names:
            continue  # a deleted tenant's counters, flushed by a sender after the deletion
        if item.account_id is None:
            removed += item.get("removed")
        else:
            counts[(item.tenant_id, item.account_id)] = item.counts
    pending = sum(c.get("queued", 0) - c.get("sent", 0) - c.get("errors", 0) for c in counts.values()) - removed
    return Snapshot(
        accounts=[AccountSeries(t, names[t], a, c) for (t, a), c in sorted(counts.items())],
        pending=max(0, pending),
        queue_depth=services.queues.depth(),
    )


def render(snapshot: Snapshot) -> str:
    lines: list[str] = []
    for metric, counter, help_text in OUTCOME_COUNTERS:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f"{metric}{{{series.labels()}}} {series.counts.get(counter, 0)}" for series in snapshot.accounts]
    lines += [
        "# HELP gmp_pending_messages Messages queued or deferred, not yet sent or ended (from counters).",
        "# TYPE gmp_pending_messages gauge",
        f"gmp_pending_messages {snapshot.pending}",
        "# HELP gmp_queue_depth Records waiting in each delivery queue.",
        "# TYPE gmp_queue_depth gauge",
    ]
    for queue, depth in sorted(snapshot.queue_depth.items()):
        lines.append(f'gmp_queue_depth{{queue="{_label(queue)}"}} {depth}')
    return "\n".join(lines) + "\n"
