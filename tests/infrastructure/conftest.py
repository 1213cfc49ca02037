"""Synthesize the CDK app once per session (with cdk-nag), and share the template with every test.

The context is cdk.json's, with a few values changed on purpose so the tests can see that context
reaches the template (two NAT gateways, a 45 s sender timeout, reserved and event-source concurrency, an alarm e-mail,
a client-sync URL). The dependency layer is a tiny temporary directory: nothing is pip-installed.
The other `nat` options (instance, none) get one synthesis each, made on first use and shared likewise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from stacks.mail_proxy_stack import STACK_NAME, build
from stacks.settings import PROJECT_ROOT

CONTEXT_OVERRIDES: dict[str, Any] = {
    "nat_gateways": 2,
    "sender_timeout_seconds": 45,
    "sender_reserved_concurrency": 7,
    "sender_max_concurrency": 6,
    "alarm_email": "ops@example.com",
    "client_sync_url": "https://client.example.com/email/mailproxy/mp_endpoint/proxy_sync",
}


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass(frozen=True)
class Synthesis:
    context: dict[str, Any]
    outdir: Path
    template_json: dict[str, Any]
    template: Template
    validation_error: str | None  # the exception synth raised, if any (cdk-nag errors raise)
    validation_report: dict[str, Any] | None  # outdir/validation-report.json, written on failure
    metadata: dict[str, list[dict[str, Any]]]  # <stack>.metadata.json: construct path -> entries

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def function(self, handler: str) -> tuple[str, dict[str, Any]]:
        matches = [
            (logical_id, resource)
            for logical_id, resource in self.resources("AWS::Lambda::Function").items()
            if resource["Properties"].get("Handler") == handler
        ]
        assert len(matches) == 1, f"expected one function with handler {handler}, found {len(matches)}"
        return matches[0]

    def event_source_mappings(self, handler: str) -> list[dict[str, Any]]:
        """The properties of the event source mappings that trigger the function with `handler`."""
        function_id, _ = self.function(handler)
        return [
            mapping["Properties"]
            for mapping in self.resources("AWS::Lambda::EventSourceMapping").values()
            if mapping["Properties"]["FunctionName"] == {"Ref": function_id}
        ]

    def work_queues(self) -> set[str]:
        """Logical ids of the work queues (urgent, bulk): the queues the sender consumes. The jobs queue has a
        dead-letter queue too, but is no work queue."""
        return {m["EventSourceArn"]["Fn::GetAtt"][0] for m in self.event_source_mappings(SENDER_HANDLER)}

    def jobs_dlq(self) -> str:
        """The jobs queue's DLQ (the queue every function's GMP_JOBS_QUEUE_URL names redrives to it)."""
        _, api = self.function(API_HANDLER)
        jobs_queue = api["Properties"]["Environment"]["Variables"]["GMP_JOBS_QUEUE_URL"]["Ref"]
        policy = self.resources("AWS::SQS::Queue")[jobs_queue]["Properties"]["RedrivePolicy"]
        return str(policy["deadLetterTargetArn"]["Fn::GetAtt"][0])

    def dead_letter_queues(self) -> set[str]:
        """Logical ids of the queues that some queue's redrive policy names."""
        return {
            queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for queue in self.resources("AWS::SQS::Queue").values()
            if "RedrivePolicy" in queue["Properties"]
        }

    def role_statements(self, handler: str) -> list[dict[str, Any]]:
        """Every IAM statement attached (inline) to the role of the function with `handler`."""
        _, function = self.function(handler)
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        statements: list[dict[str, Any]] = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if {"Ref": role_id} in policy["Properties"]["Roles"]:
                statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        return statements

    def role_managed_policies(self, handler: str) -> list[Any]:
        _, function = self.function(handler)
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        managed: list[Any] = self.template_json["Resources"][role_id]["Properties"].get("ManagedPolicyArns", [])
        return managed


def _synthesize(tmp_path_factory: pytest.TempPathFactory, extra: dict[str, Any]) -> Synthesis:
    layer = tmp_path_factory.mktemp("layer")
    (layer / "python").mkdir()
    (layer / "python" / "placeholder.py").write_text("# stands in for the dependency layer in tests\n")
    outdir = tmp_path_factory.mktemp("cdk.out")
    context = {**cdk_json_context(), **CONTEXT_OVERRIDES, **extra, "layer_dir": str(layer)}

    app = App(context=context, outdir=str(outdir))
    build(app)
    error: str | None = None
    try:
        app.synth()
    except Exception as exc:  # cdk-nag findings make synth raise after the assembly is written
        error = f"{type(exc).__name__}: {exc}"

    template_path = outdir / f"{STACK_NAME}.template.json"
    assert template_path.is_file(), f"synthesis wrote no template: {error}"
    template_json = json.loads(template_path.read_text())
    report_path = outdir / "validation-report.json"
    metadata_path = outdir / f"{STACK_NAME}.metadata.json"
    return Synthesis(
        context=context,
        outdir=outdir,
        template_json=template_json,
        template=Template.from_json(template_json),
        validation_error=error,
        validation_report=json.loads(report_path.read_text()) if report_path.is_file() else None,
        metadata=json.loads(metadata_path.read_text()) if metadata_path.is_file() else {},
    )


_synthesized: dict[str, Synthesis] = {}  # the run's syntheses, by `nat` option


def synthesis_for(tmp_path_factory: pytest.TempPathFactory, nat: str) -> Synthesis:
    if nat not in _synthesized:
        extra = {} if nat == cdk_json_context()["nat"] else {"nat": nat}
        _synthesized[nat] = _synthesize(tmp_path_factory, extra)
    return _synthesized[nat]


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The synthesis of the run (cdk.json's `nat`: gateway). A module that imports this fixture
    (tests/client/test_docs.py) gets a second session fixture of the same name in pytest's eyes: both
    return the one synthesis made here."""
    return synthesis_for(tmp_path_factory, cdk_json_context()["nat"])


@pytest.fixture(scope="session")
def synth_nat_instance(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The same context with nat=instance: NAT instances instead of NAT gateways."""
    return synthesis_for(tmp_path_factory, "instance")


@pytest.fixture(scope="session")
def synth_nat_none(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The same context with nat=none: no VPC, the sender outside it."""
    return synthesis_for(tmp_path_factory, "none")


API_HANDLER = "functions.api.handler.handler"
SENDER_HANDLER = "functions.sender.handler.handler"
REPORTER_HANDLER = "functions.reporter.handler.handler"


def actions_of(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def statements_with(statements: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The statements that grant at least one action starting with `prefix` (e.g. "s3:")."""
    return [s for s in statements if any(a.startswith(prefix) for a in actions_of([s]))]
