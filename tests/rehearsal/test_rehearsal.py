"""The deploy rehearsal, short form (make rehearse runs the long one): the synthesized stack in moto, one
message end to end under the functions' own roles, and the stack broken on purpose three ways."""

from __future__ import annotations

from typing import Any

import pytest

from rehearsal.rehearse import SCENARIO_FUNCTIONS, Result, rehearse
from rehearsal.template import StackTemplate


def _problems(result: Result) -> str:
    return "\n".join(result.problems)


def test_the_stack_runs_end_to_end_under_its_own_roles(rehearsal: Result) -> None:
    assert rehearsal.ok, rehearsal.render()
    assert rehearsal.smtp_messages == 2
    assert {item["id"] for item in rehearsal.reports} == {"REHEARSAL-1", "REHEARSAL-2"}
    assert set(rehearsal.functions) >= {*SCENARIO_FUNCTIONS, "jobs"}
    for name in SCENARIO_FUNCTIONS:
        assert rehearsal.functions[name].calls, f"{name} made no AWS call"
    for run in rehearsal.functions.values():
        assert all(call.error is None for call in run.calls), [c for c in run.calls if c.error]
        assert all(item.reason for item in run.unused)


def test_the_sent_reports_come_from_the_stream_under_the_stream_reporters_role(rehearsal: Result) -> None:
    stream_reporter = rehearsal.functions["stream_reporter"]
    read = {call.action for call in stream_reporter.calls if call.origin == "event source mapping"}
    assert {"dynamodb:GetShardIterator", "dynamodb:GetRecords"} <= read
    assert any(
        call.action == "secretsmanager:GetSecretValue" and call.origin == "code" for call in stream_reporter.calls
    )
    assert "stream_reporter <- stream batch of 2: 0 failed" in rehearsal.steps


def test_every_call_was_made_with_the_functions_own_credentials(rehearsal: Result) -> None:
    sender = rehearsal.functions["sender"]
    origins = {call.origin for call in sender.calls}
    assert origins == {"code", "event source mapping"}
    assert any(call.action == "kms:Decrypt" for call in sender.calls)
    api = rehearsal.functions["api"]
    assert any(call.action == "kms:Encrypt" for call in api.calls)
    assert not any(call.action == "kms:Decrypt" for call in api.calls)


def test_the_report_shows_calls_environment_and_unused_statements(rehearsal: Result) -> None:
    text = rehearsal.render()
    assert "calls made" in text and "statements unused" in text and "cloudformation (moto)" in text
    for run in rehearsal.functions.values():
        for name, value in run.declared.items():
            assert f"{name}=" in text
            if "TOKEN" in name and not name.endswith("_ARN") and value:
                assert value not in text


def _statements_of(template: StackTemplate, function: str) -> list[dict[str, Any]]:
    spec = template.function(function)
    statements: list[dict[str, Any]] = []
    for _, document in template.role_policies(spec.role_id):
        statements.extend(document["Statement"])
    return statements


@pytest.fixture(scope="module")
def broken(stack_template: StackTemplate, report_url: str) -> tuple[Result, dict[str, str]]:
    """One run of a copy of the template broken three ways (one run: the rehearsal takes seconds):
    the stream reporter's grant on its secret removed, an api variable renamed, the sender's bucket read
    scoped to another prefix."""
    template = stack_template.copy()
    for _, document in template.role_policies(template.function("stream_reporter").role_id):
        document["Statement"] = [s for s in document["Statement"] if "secretsmanager:GetSecretValue" not in s["Action"]]
    api = template.function("api")
    variables = template.properties(api.logical_id)["Environment"]["Variables"]
    (function_variable,) = [
        name
        for name, value in variables.items()
        if isinstance(value, dict)
        and template.resources.get(value.get("Ref", ""), {}).get("Type") == "AWS::Lambda::Function"
    ]
    variables[function_variable + "_RENAMED"] = variables.pop(function_variable)
    for statement in _statements_of(template, "sender"):
        if statement.get("Sid") == "BodyContentsRead":
            statement["Resource"]["Fn::Join"][1][-1] = "/elsewhere/*"
    return rehearse(template, report_url_placeholder=report_url), {"renamed": function_variable}


def test_a_removed_grant_fails_with_the_function_action_and_resource(broken: tuple[Result, dict[str, str]]) -> None:
    result, _ = broken
    problem = next(p for p in result.problems if p.startswith("stream_reporter: secretsmanager:GetSecretValue on "))
    assert "arn:aws:secretsmanager:" in problem
    assert "is allowed by no statement of its role (moto answered AccessDenied" in problem
    assert "stream_reporter: no 'sent' report for REHEARSAL-1 reached the endpoint" in _problems(result)


def test_a_resource_scoped_elsewhere_fails_although_moto_allows_it(broken: tuple[Result, dict[str, str]]) -> None:
    result, _ = broken
    assert result.smtp_messages == 2  # moto enforces actions only: the read went through
    problem = next(p for p in result.problems if p.startswith("sender: s3:GetObject on arn:aws:s3:::"))
    assert "/contents/" in problem and "is allowed by no statement of its role" in problem
    assert "moto answered" not in problem


def test_a_renamed_environment_variable_fails_naming_it(broken: tuple[Result, dict[str, str]]) -> None:
    result, names = broken
    renamed = names["renamed"] + "_RENAMED"
    assert f"api: the template sets {renamed}, which the code never reads" in _problems(result)
    # ... and the code, missing the variable it does read, never invoked the reporter on run-now
    assert not any(call.action == "lambda:InvokeFunction" for call in result.functions["api"].calls)
