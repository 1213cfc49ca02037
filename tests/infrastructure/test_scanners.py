"""What the deploy rehearsal's scanner pass added to the stack: the reporter runs one at a time, and each
checkov finding the stack does not fix is acknowledged with a reason (stacks/scanners.py)."""

from __future__ import annotations

from stacks.scanners import CHECKOV_SKIPS
from tests.infrastructure.conftest import REPORTER_HANDLER, Synthesis


def test_the_reporter_runs_one_at_a_time(synth: Synthesis) -> None:
    _, reporter = synth.function(REPORTER_HANDLER)
    assert reporter["Properties"]["ReservedConcurrentExecutions"] == 1


def test_every_acknowledged_scanner_finding_carries_its_reason(
    synth: Synthesis, synth_nat_instance: Synthesis, synth_nat_none: Synthesis
) -> None:
    """Checked in every `nat` option's template: the EC2 instance of nat=instance exists only there."""
    syntheses = (synth, synth_nat_instance, synth_nat_none)
    for resource_type, skips in CHECKOV_SKIPS.items():
        resources = {k: v for s in syntheses for k, v in s.resources(resource_type).items()}
        assert resources, f"no {resource_type} in any template: drop its acknowledgements"
        for logical_id, resource in resources.items():
            skipped = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
            assert [s["id"] for s in skipped] == [i for i, _ in skips], logical_id
            assert all(len(s["comment"]) > 40 for s in skipped), logical_id
