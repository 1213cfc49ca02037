"""cdk-nag's AwsSolutions pack runs during synthesis: no unacknowledged finding, every one explained."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.conftest import Synthesis


def _plugin(synth: Synthesis) -> dict[str, Any]:
    assert synth.validation_report is not None, "no validation report: the cdk-nag plugin did not run"
    (plugin,) = [p for p in synth.validation_report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    return plugin


def test_synthesis_with_aws_solutions_checks_succeeds(synth: Synthesis) -> None:
    assert synth.validation_error is None, synth.validation_error
    for plugin in synth.validation_report["pluginReports"] if synth.validation_report else []:
        assert plugin["conclusion"] == "success", plugin["pluginName"]


def test_no_unacknowledged_aws_solutions_findings(synth: Synthesis) -> None:
    violations = _plugin(synth)["violations"]
    assert violations == [], [
        (v["ruleName"], [c["constructPath"] for c in v["violatingConstructs"]]) for v in violations
    ]


def test_every_acknowledged_finding_carries_a_reason(synth: Synthesis) -> None:
    suppressed = _plugin(synth)["suppressedViolations"]
    assert suppressed
    for finding in suppressed:
        assert len(finding["reason"].strip()) >= 40, finding["ruleName"]


def test_every_acknowledgement_is_used(synth: Synthesis) -> None:
    """A stale acknowledgement hides nothing today but would silently hide a future finding."""
    used = {(f["acknowledgedAt"], f["acknowledgedId"]) for f in _plugin(synth)["suppressedViolations"]}
    declared = {
        (path.lstrip("/"), rule_id)
        for path, entries in synth.metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule_id in entry["data"]
        if rule_id.startswith("AwsSolutions::")
    }
    assert declared == used
