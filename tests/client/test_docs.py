"""The documentation stays true: docs/api.md is what the generator makes of the current app, every alarm of
the synthesized stack has a runbook entry, every stack output is explained, links resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from tests.infrastructure.conftest import Synthesis, synth  # noqa: F401 - the session-scoped synthesis fixture

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_api_md", DOCS / "generate_api_md.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_md_is_up_to_date() -> None:
    expected = generator().generate()
    current = (DOCS / "api.md").read_text(encoding="utf-8")
    assert current == expected, "docs/api.md is out of date: run .venv/bin/python docs/generate_api_md.py"


def test_api_md_documents_every_route() -> None:
    module = generator()
    schema = module.openapi_schema()
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for method, path, _ in module.operations(schema):
        assert f"### `{method} {path}`" in text
    assert "### MessageIn" in text  # the add-messages item, which the schema leaves untyped


def _alarm_ids(synthesis: Synthesis) -> set[str]:
    """Construct ids of the CloudWatch alarms in the synthesized template (`…/Monitoring/<id>/Resource`)."""
    alarm_logical_ids = set(synthesis.resources("AWS::CloudWatch::Alarm"))
    ids = set()
    for path, entries in synthesis.metadata.items():
        for entry in entries:
            if entry.get("type") == "aws:cdk:logicalId" and entry.get("data") in alarm_logical_ids:
                ids.add(path.rstrip("/").split("/")[-2])
    assert len(ids) == len(alarm_logical_ids), "every alarm should be found in the construct metadata"
    return ids


def _runbook_entries() -> set[str]:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Alarms\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^### (\S+)\s*$", section, flags=re.MULTILINE))


def test_every_alarm_has_a_runbook_entry(synth: Synthesis) -> None:  # noqa: F811
    alarms = _alarm_ids(synth)
    assert {"UrgentDlqDepth", "BulkDlqDepth", "SenderErrors", "ReportFailures"} <= alarms
    entries = _runbook_entries()
    assert alarms - entries == set(), "alarms without an entry in docs/operations.md"
    assert entries - alarms == set(), "entries in docs/operations.md for alarms the stack does not have"
    # and each entry says what to do
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    for alarm in alarms:
        entry = text.split(f"### {alarm}\n", 1)[1].split("\n### ", 1)[0]
        assert "**Means**" in entry and "**Do**" in entry, alarm


def test_every_stack_output_is_explained_in_deploy_md(synth: Synthesis) -> None:  # noqa: F811
    text = (DOCS / "deploy.md").read_text(encoding="utf-8")
    outputs = set(synth.template_json["Outputs"])
    assert {"ApiUrl", "NatPublicIp1", "ApiTokenSecretArn", "ClientSyncSecretArn"} <= outputs
    missing = {name for name in outputs if f"`{name}`" not in text}
    assert missing == set(), f"outputs not explained in docs/deploy.md: {sorted(missing)}"


def test_every_context_setting_is_in_deploy_md() -> None:
    from stacks.settings import Settings

    text = (DOCS / "deploy.md").read_text(encoding="utf-8")
    missing = {name for name in Settings.model_fields if f"`{name}`" not in text}
    assert missing == set(), f"context settings not in docs/deploy.md: {sorted(missing)}"


def test_network_md_lists_the_sender_security_group_ports() -> None:
    from stacks.network import DNS_PORT, HTTPS_PORT, SMTP_PORTS

    text = (DOCS / "network.md").read_text(encoding="utf-8")
    table = text.split("### The sender's security group", 1)[1].split("\n### ", 1)[0]
    for port in (*SMTP_PORTS, HTTPS_PORT, DNS_PORT):
        assert re.search(rf"^\| (TCP|UDP) \| {port} \|", table, flags=re.MULTILINE), port
    for flow in ("➊", "➋", "➌"):
        assert f"## {flow}" in text


def test_markdown_links_resolve() -> None:
    for document in [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.glob("*.md")]:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (document.parent / target.split("#", 1)[0]).resolve()
            assert path.exists(), f"{document.name}: broken link {target}"
