"""Smoke test of the benchmarks (docs/cost.md): the request counting of `make bench` for one message, the
report latency on the local stack for a few, and the table's new sections.

No timing is asserted: performance is shown by `make bench`, which prints figures.
"""

from __future__ import annotations

from typing import Any

from bench import coldstart, cost
from bench.counting import item_size, read_units, write_units
from bench.lifecycle import count_one_message
from bench.run import _costs, render, targets
from bench.stack import report_latency, scaling


def test_item_size_and_units_follow_the_documented_rules() -> None:
    item = {"pk": {"S": "MSG#t#1"}, "n": {"N": "12345"}, "b": {"B": b"\x00" * 10}, "ok": {"BOOL": True}}
    assert item_size(item) == (2 + 7) + (1 + 4) + (1 + 10) + (2 + 1)
    assert write_units(1) == 1 and write_units(1024) == 1 and write_units(1025) == 2
    assert read_units(4096, consistent=True) == 1 and read_units(4097, consistent=False) == 1.0
    assert read_units(0, consistent=False) == 0.5


def test_one_message_life_counts_dynamodb_sqs_calls_and_capacity() -> None:
    result = count_one_message()

    per_message = result["per_message"]
    assert per_message["dynamodb_calls"] > 0
    assert per_message["dynamodb_item_writes"] > 0
    assert per_message["wru"] > 0 and per_message["rru"] > 0
    assert per_message["sqs_requests_function"] > 0  # the API enqueues
    assert per_message["sqs_requests_esm"] > 0  # the poller receives and deletes
    assert per_message["max_status_wru"] >= 1
    assert {row["phase"] for row in result["operations"]} >= {"ingest", "send", "report"}
    assert result["functions"]["sender"]["invocations_per_message"] > 0

    results: dict[str, Any] = {
        "meta": {
            "quick": True,
            "started": "now",
            "machine": "test",
            "python": "3",
            "git": {"commit": "test", "changed_files": []},
            "load_before": [],
        },
        "requests": {"one": result},
        "cost": _costs({"one": result}, cost),
    }
    results["targets"] = targets(results)
    assert results["cost"]["scenarios"]["one"]["total_besides_nat"] > 0
    table = render(results)
    assert "AWS requests per message" in table and "Targets" in table


def test_idle_cost_follows_the_nat_option_and_prices_the_schedule_at_the_architecture() -> None:
    context = cost.cdk_context()
    gateway = cost.fixed_monthly({**context, "nat": "gateway", "nat_gateways": 2})
    instance = cost.fixed_monthly({**context, "nat": "instance", "nat_gateways": 1})
    none = cost.fixed_monthly({**context, "nat": "none"})
    assert gateway["nat"] > instance["nat"] > none["nat"] == 0.0
    assert gateway["nat"] == 2 * cost.nat_monthly("gateway", 1)
    x86 = cost.fixed_monthly({**context, "architecture": "x86_64"})["reporter_schedule"]
    assert cost.fixed_monthly({**context, "architecture": "arm64"})["reporter_schedule"] < x86


def test_import_times_cover_the_handlers_this_tree_has() -> None:
    present, missing = coldstart.present_modules()
    assert {"api", "sender", "reporter"} <= set(present)
    assert set(present) | set(missing) == set(coldstart.MODULES)


def test_report_latency_runs_on_the_local_stack_and_shows_in_the_table() -> None:
    latency = report_latency(3)

    assert latency["delivered"] == 3 and latency["reported"] == 3
    assert latency["p50_s"] is not None and latency["p95_s"] >= latency["p50_s"]
    e2e = [
        {
            **{"messages": n, "senders": 2, "received": n, "wall_seconds": 1.0, "msg_per_s": rate},
            **{"statuses": {"sent": n}, "raw_msg_per_s": 1000.0, "ratio": rate / 1000.0},
        }
        for n, rate in ((500, 100.0), (2000, 90.0))
    ]
    meta = {"quick": True, "started": "now", "machine": "test", "python": "3", "load_before": []}
    results: dict[str, Any] = {
        "meta": {**meta, "git": {"commit": "test", "changed_files": []}},
        "e2e": e2e,
        "e2e_scaling": scaling(e2e),
        "report_latency": latency,
    }
    results["targets"] = targets(results)
    statuses = {row["target"]: row["status"] for row in results["targets"]}
    assert statuses["rate at N = 2,000 / rate at N = 500 >= 0.8"] == "PASS"
    assert statuses["local end to end / raw smtplib >= 0.08 at N = 2,000, all delivered"] == "PASS"
    table = render(results)
    assert "Report latency on the local stack" in table and "raw smtplib, same messages" in table
