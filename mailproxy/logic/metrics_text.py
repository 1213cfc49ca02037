"""Prometheus text exposition (format 0.0.4) of stored state, for scrapers of the original service."""

from __future__ import annotations

from collections import Counter


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(status_counts: Counter[tuple[str, str, str]], queue_depth: dict[str, int]) -> str:
    lines = [
        "# HELP gmp_messages Messages stored, by tenant, account and status.",
        "# TYPE gmp_messages gauge",
    ]
    for (tenant, account, status), count in sorted(status_counts.items()):
        lines.append(
            f'gmp_messages{{tenant="{_label(tenant)}",account="{_label(account)}",status="{_label(status)}"}} {count}'
        )
    lines += ["# HELP gmp_queue_depth Records waiting in each delivery queue.", "# TYPE gmp_queue_depth gauge"]
    for queue, depth in sorted(queue_depth.items()):
        lines.append(f'gmp_queue_depth{{queue="{_label(queue)}"}} {depth}')
    return "\n".join(lines) + "\n"
