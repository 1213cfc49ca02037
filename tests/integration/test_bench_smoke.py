"""Smoke test of the benchmarks (docs/cost.md): the request counting of `make bench`, for one message.

No timing is asserted: performance is shown by `make bench`, which prints figures.
"""

from __future__ import annotations

from typing import Any

from bench import cost
from bench.counting import item_size, read_units, write_units
from bench.lifecycle import count_one_message
from bench.run import _costs, render, targets


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
