"""cdk-nag's AwsSolutions pack runs during synthesis: no unacknowledged finding, every one explained."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infrastructure.conftest import Synthesis

# Every `nat` option is checked: each brings resources of its own (NAT gateways, NAT instances, no VPC).
SYNTHESES = ["synth", "synth_nat_instance", "synth_nat_none"]


@pytest.fixture(params=SYNTHESES)
def any_synth(request: pytest.FixtureRequest) -> Synthesis:
    synthesis: Synthesis = request.getfixturevalue(request.param)
    return synthesis


def _plugin(synth: Synthesis) -> dict[str, Any]:
    assert synth.validation_report is not None, "no validation report: the cdk-nag plugin did not run"
    (plugin,) = [p for p in synth.validation_report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return plugin


def test_synthesis_with_aws_solutions_checks_succeeds(any_synth: Synthesis) -> None:
    assert any_synth.validation_error is None, any_synth.validation_error
    for plugin in any_synth.validation_report["pluginReports"] if any_synth.validation_report else []:
        assert plugin["conclusion"] == "success", plugin["pluginName"]


def test_no_unacknowledged_aws_solutions_findings(any_synth: Synthesis) -> None:
    violations = _plugin(any_synth)["violations"]
    assert violations == [], [
        (v["ruleName"], [c["constructPath"] for c in v["violatingConstructs"]]) for v in violations
    ]


def test_every_acknowledged_finding_carries_a_reason(any_synth: Synthesis) -> None:
    suppressed = _plugin(any_synth)["suppressedViolations"]
    assert suppressed
    for finding in suppressed:
        assert len(finding["reason"].strip()) >= 40, finding["ruleName"]


def test_every_acknowledgement_is_used(any_synth: Synthesis) -> None:
    """A stale acknowledgement hides nothing today but would silently hide a future finding."""
    used = {(f["acknowledgedAt"], f["acknowledgedId"]) for f in _plugin(any_synth)["suppressedViolations"]}
    declared = {
        (path.lstrip("/"), rule_id)
        for path, entries in any_synth.metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule_id in entry["data"]
        if rule_id.startswith("AwsSolutions::")
    }
    assert declared == used
