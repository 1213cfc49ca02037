"""What the deploy rehearsal's scanner pass added to the stack: the reporter runs one at a time, and each
checkov finding the stack does not fix is acknowledged with a reason (stacks/scanners.py)."""

from __future__ import annotations

from stacks.scanners import CHECKOV_SKIPS
from tests.infrastructure.conftest import REPORTER_HANDLER, Synthesis


def test_the_reporter_runs_one_at_a_time(synth: Synthesis) -> None:
    _, reporter = synth.function(REPORTER_HANDLER)
    assert reporter["Properties"]["ReservedConcurrentExecutions"] == 1


def test_every_acknowledged_scanner_finding_carries_its_reason(synth: Synthesis) -> None:
    for resource_type, skips in CHECKOV_SKIPS.items():
        resources = synth.resources(resource_type)
        assert resources, f"no {resource_type} in the template: drop its acknowledgements"
        for logical_id, resource in resources.items():
            skipped = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
            assert [s["id"] for s in skipped] == [i for i, _ in skips], logical_id
            assert all(len(s["comment"]) > 40 for s in skipped), logical_id
