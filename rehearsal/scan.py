"""checkov and cfn-lint on the synthesized template, from their own virtualenv (.venv-scan: checkov's pins
conflict with the project's). `make rehearse` creates it."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from stacks.settings import PROJECT_ROOT

SCAN_VENV = PROJECT_ROOT / ".venv-scan"


def scan(template: Path, *, log: Callable[[str], None], venv: Path = SCAN_VENV) -> list[str]:
    problems: list[str] = []
    checkov = venv / "bin" / "checkov"
    if not checkov.is_file():
        return [f"{checkov} is missing: `make rehearse` creates {venv} with checkov and cfn-lint"]
    answer = subprocess.run(  # noqa: S603 (the scan venv's own checkov)
        [str(checkov), "-f", str(template), "--framework", "cloudformation", "-o", "json", "--quiet", "--compact"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(answer.stdout or "{}")
    report = report[0] if isinstance(report, list) else report
    summary = report.get("summary", {})
    failed = report.get("results", {}).get("failed_checks", [])
    skipped = report.get("results", {}).get("skipped_checks", [])
    log(
        f"  checkov {summary.get('checkov_version', '?')}: {summary.get('failed', '?')} failed, "
        f"{summary.get('passed', '?')} passed, {summary.get('skipped', '?')} skipped with a reason "
        "(stacks/scanners.py)"
    )
    for (check, name), count in sorted(Counter((f["check_id"], f["check_name"]) for f in failed).items()):
        problems.append(f"checkov {check} failed on {count} resource(s): {name}")
    for (check,), count in sorted(Counter((s["check_id"],) for s in skipped).items()):
        log(f"    skipped {check} x {count}")
    lint = venv / "bin" / "cfn-lint"
    command = [str(lint), "--format", "parseable", str(template)]
    answer = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    lines = [line for line in answer.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if ":E" in line]
    log(f"  cfn-lint: {len(errors)} error(s), {len(lines) - len(errors)} warning(s)")
    problems.extend(f"cfn-lint: {line}" for line in errors)
    return problems
