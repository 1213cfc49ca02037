"""The rehearsal itself: the synthesized stack in moto, its functions in-process under their own roles, one
message from add-messages through SMTP to a delivery report, and every AWS call checked against the role.

`rehearse(template)` returns a `Result`; `Result.problems` lists what would break a real deployment (empty
when the rehearsal passed) and `Result.render()` is the report `make rehearse` prints.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from mailproxy.logic.stream_reports import STREAM_FILTER
from mailproxy_local.stream_poller import StreamPoller
from rehearsal.policy import Statement, decide, statements_of
from rehearsal.reasons import reason_for
from rehearsal.recorder import Call, Recorder
from rehearsal.resources import ACCOUNT_ID, Deployment, stand_up
from rehearsal.runtime import (
    Container,
    RoutedStream,
    api_gateway_event,
    lambda_runtime_environment,
    scheduled_event,
    sqs_event,
)
from rehearsal.template import FunctionSpec, StackTemplate, Unresolvable, label

REGION = "eu-west-1"
SCENARIO_FUNCTIONS = ("api", "sender", "stream_reporter", "reporter", "bouncer", "ses_events")
# The functions that post delivery reports to the client (the report URL and the client-sync secret): a
# "sent" report reaches the client from the stream reporter, the scheduled reporter posts the outbox.
REPORTING_FUNCTIONS = ("stream_reporter", "reporter")
SECRET_HINTS = ("TOKEN", "SECRET", "PASSWORD", "KEY")
# Variables the rehearsal adds to the template's, because its SMTP server and report endpoint are on
# loopback with a private CA (a real deployment talks to public hosts with public certificates).
# No X-Ray daemon here, and an enabled X-Ray SDK would patch botocore for the whole process.
XRAY_SWITCH = "AWS_XRAY_SDK_ENABLED"
# botocore sends a call naming a stream ARN to the account's endpoint (<account>.streams-ddb...), which moto
# in-process does not serve: the regional one it does.
STREAMS_ENDPOINT = f"https://streams.dynamodb.{REGION}.amazonaws.com"
STREAM_POLLS = 10  # reads of the stream per drain: the scenario's few records, or a failing batch's retries


class RehearsalFailed(AssertionError):
    def __init__(self, result: Result) -> None:
        self.result = result
        super().__init__("the rehearsal failed:\n" + "\n".join(f"- {p}" for p in result.problems))


@dataclass
class Unused:
    statement: Statement
    action: str
    resource_label: str
    reason: str | None


@dataclass
class FunctionRun:
    spec: FunctionSpec
    container: Container
    declared: dict[str, str]  # the template's variables, resolved
    additions: dict[str, str]  # what the rehearsal added or replaced (see module docstring)
    statements: list[Statement]
    labels: dict[str, str]  # resolved resource ARN -> its template spelling
    calls: list[Call] = field(default_factory=list)
    unused: list[Unused] = field(default_factory=list)


@dataclass
class Result:
    deployment: Deployment | None = None
    functions: dict[str, FunctionRun] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    smtp_messages: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)
    stream: RoutedStream | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, *, logs: bool = False) -> str:
        out: list[str] = []
        if self.deployment is not None:
            out.append(f"Resources in moto (stack {self.deployment.template.stack_name}, {self.deployment.region}):")
            out.extend(self.deployment.summary_lines())
        out.append("Scenario:")
        out.extend(f"  {step}" for step in self.steps)
        for name, run in sorted(self.functions.items()):
            out.append(f"Function {name} ({run.spec.logical_id}, handler {run.spec.handler}):")
            out.append("  environment (template, resolved; secrets masked):")
            out.extend(f"    {k}={_masked(k, v)}" for k, v in sorted(run.declared.items()))
            if run.additions:
                out.append("  added or replaced by the rehearsal (loopback servers, private CA, no X-Ray daemon):")
                out.extend(f"    {k}={_masked(k, v)}" for k, v in sorted(run.additions.items()))
            counts: dict[tuple[str, str, str, str], int] = {}
            for call in run.calls:
                for action, resource in call.permissions:
                    key = (call.origin, action, _spelled(resource, run.labels), call.error or "")
                    counts[key] = counts.get(key, 0) + 1
            out.append(f"  calls made ({len(run.calls)}):")
            for (origin, action, resource, error), n in sorted(counts.items()):
                via = "" if origin == "code" else f" [{origin}]"
                failed = f" -> {error}" if error else ""
                out.append(f"    {n:4d} x {action} on {resource}{via}{failed}")
            used = sum(1 for s in run.statements if _statement_used(s, run))
            out.append(f"  statements used: {used} of {len(run.statements)}")
            out.append(f"  statements unused (action x resource): {len(run.unused)}")
            for item in run.unused:
                reason = item.reason or "NO REASON: remove it from the stack or give it a reason (rehearsal/reasons.py)"
                out.append(f"    {item.action} on {item.resource_label} [{item.statement.label}]: {reason}")
            if logs and self.stream is not None:
                out.append("  log (tail):")
                out.extend(f"    {line}" for line in self.stream.tail(name, 15).splitlines())
        out.append("PASSED" if self.ok else "FAILED:")
        out.extend(f"  - {p}" for p in self.problems)
        return "\n".join(out)


def _masked(name: str, value: str) -> str:
    upper = name.upper()
    if any(h in upper for h in SECRET_HINTS) and not upper.endswith(("_ARN", "_KEY_ID", "_ID")):
        return "****" if value else ""
    return value


def _spelled(resource: str, labels: dict[str, str]) -> str:
    """A concrete ARN in the template's spelling: the longest statement ARN it starts with, then the rest."""
    best, spelling = "", ""
    for arn, spelled in labels.items():
        prefix, star, _ = arn.partition("*")
        spelled_prefix = spelled.partition("*")[0] if star else spelled
        if resource.startswith(prefix) and len(prefix) > len(best):
            best, spelling = prefix, spelled_prefix
    return spelling + resource[len(best) :] if best else resource


def _statement_used(statement: Statement, run: FunctionRun) -> bool:
    return any(
        statement.effect == "Allow" and statement.matches(action, resource)
        for call in run.calls
        for action, resource in call.permissions
    )


# -- setting up ---------------------------------------------------------------------------------------------


def _code_settings() -> tuple[str, set[str]]:
    """The environment prefix and variable names the code reads (mailproxy.config.Settings)."""
    from mailproxy.config import Settings

    prefix = str(Settings.model_config.get("env_prefix", ""))
    return prefix, {f"{prefix}{name}".upper() for name in Settings.model_fields}


def _resolved_statements(
    template: StackTemplate, deployment: Deployment, spec: FunctionSpec, iam: Any
) -> tuple[list[Statement], dict[str, str]]:
    references = deployment.references
    statements: list[Statement] = []
    labels: dict[str, str] = {}
    for origin, document in template.role_policies(spec.role_id):
        raw_statements = document.get("Statement", [])
        for raw in raw_statements if isinstance(raw_statements, list) else [raw_statements]:
            for key in ("Resource", "NotResource"):
                elements = raw.get(key)
                for element in elements if isinstance(elements, list) else [elements] if elements else []:
                    labels[str(references.resolve(element))] = label(element)
        statements.extend(statements_of(references.resolve(document), origin=origin))
    for raw_arn in template.managed_policy_arns(spec.role_id):
        arn = references.resolve(raw_arn)
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
        document = version["Document"]
        if isinstance(document, str):
            document = json.loads(document)
        statements.extend(statements_of(document, origin=arn.rsplit("/", 1)[-1]))
    return statements, labels


# -- the run ------------------------------------------------------------------------------------------------


class Scenario:
    """The steps of the rehearsal, with the handles they need."""

    def __init__(self, result: Result, deployment: Deployment, admin: Any, sink: Any, receiver: Any) -> None:
        self.result = result
        self.deployment = deployment
        self.template = deployment.template
        self.admin = admin
        self.sink = sink
        self.receiver = receiver
        self.token = ""

    def fail(self, message: str) -> None:
        self.result.problems.append(message)

    def step(self, text: str) -> None:
        self.result.steps.append(text)

    def run_fn(self, name: str) -> FunctionRun:
        return self.result.functions[name]

    def api(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
        run = self.run_fn("api")
        event = api_gateway_event(
            method,
            path,
            stage=self.template.stage_name(),
            region=REGION,
            account=ACCOUNT_ID,
            body=body,
            headers={"X-API-Token": self.token},
            query=query,
        )
        answer = run.container.invoke(event)
        status = answer.get("statusCode") if isinstance(answer, dict) else None
        try:
            payload = json.loads(answer.get("body") or "null") if isinstance(answer, dict) else None
        except ValueError:
            payload = answer.get("body")
        self.step(f"api {method} {path} -> {status}")
        if status != 200:
            self.fail(f"api: {method} {path} answered {status}: {json.dumps(payload)[:300]}{self._log('api')}")
        return payload if isinstance(payload, dict) else {}

    def _log(self, name: str) -> str:
        stream = self.result.stream
        if stream is None:
            return ""
        tail = [line for line in stream.tail(name, 200).splitlines() if '"level":"ERROR"' in line or "Error" in line]
        return ("\n    log: " + "\n    log: ".join(tail[-3:])) if tail else ""

    def queues_of(self, spec: FunctionSpec) -> list[tuple[str, str, int]]:
        """(queue URL, queue ARN, batch size) of each SQS event source of the function."""
        found = []
        for source in self.template.event_sources_of(spec.logical_id):
            arn_ref = source.get("EventSourceArn", {})
            queue_id = arn_ref.get("Fn::GetAtt", [""])[0] if isinstance(arn_ref, dict) else ""
            if self.template.resources.get(queue_id, {}).get("Type") != "AWS::SQS::Queue":
                continue
            found.append(
                (
                    self.deployment.references.ref(queue_id),
                    self.deployment.references.resolve(arn_ref),
                    int(source.get("BatchSize", 10)),
                )
            )
        return found

    def event_source_mapping(self, name: str, esm_sqs: Any, rounds: int = 6) -> None:
        """Play Lambda's SQS event source mapping: receive under the function's role, invoke, delete."""
        run = self.run_fn(name)
        queues = self.queues_of(run.spec)
        if not queues:
            self.fail(f"{name}: the template gives it no SQS event source")
            return
        for _ in range(rounds):
            delivered = 0
            for url, arn, batch in queues:
                messages = esm_sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=batch,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                    WaitTimeSeconds=0,
                ).get("Messages", [])
                if not messages:
                    continue
                delivered += len(messages)
                answer = run.container.invoke(sqs_event(messages, queue_arn=arn, region=REGION))
                failures = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])}
                self.step(
                    f"{name} <- SQS batch of {len(messages)} from {arn.rsplit(':', 1)[-1]}: {len(failures)} failed"
                )
                if failures:
                    self.fail(f"{name}: {len(failures)} of {len(messages)} records failed{self._log(name)}")
                done = [m for m in messages if m["MessageId"] not in failures]
                if done:
                    esm_sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                    )
            if not delivered:
                return

    def scheduled(self, name: str) -> Any:
        run = self.run_fn(name)
        rules = self.template.schedules_of(run.spec.logical_id)
        if not rules:
            self.fail(f"{name}: no EventBridge schedule targets it in the template")
            return None
        rule_id, props = rules[0]
        rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.template.stack_name}-{rule_id}"[:128]
        try:
            answer = run.container.invoke(scheduled_event(rule_arn=rule_arn, region=REGION, account=ACCOUNT_ID))
        except Exception as exc:  # as Lambda would: the run fails, the next schedule comes anyway
            self.fail(f"{name}: the scheduled run raised {type(exc).__name__}: {exc}")
            return None
        self.step(f"{name} <- scheduled event ({props.get('ScheduleExpression')}): {json.dumps(answer)[:160]}")
        if not (isinstance(answer, dict) and answer.get("ok")):
            self.fail(f"{name}: the scheduled run did not answer ok: {answer!r}{self._log(name)}")
        return answer

    def stream_event_source(self, name: str, streams: Any) -> StreamPoller | None:
        """Lambda's DynamoDB Stream event source mapping of the function, under its role: its stream, starting
        position and batch size from the template, its filter the code's (checked equal), created before the
        first write as the deployed mapping is."""
        run = self.run_fn(name)
        found = [s for s in self.template.event_sources_of(run.spec.logical_id) if _is_stream_source(s)]
        if not found:
            self.fail(f"{name}: the template gives it no DynamoDB Stream event source")
            return None
        (source,) = found
        patterns = [json.loads(f["Pattern"]) for f in source.get("FilterCriteria", {}).get("Filters", [])]
        if patterns != [STREAM_FILTER]:
            self.fail(f"{name}: the template's stream filter {patterns} is not the code's STREAM_FILTER")
        container = run.container

        def invoke(event: dict[str, Any], _: Any) -> dict[str, Any]:
            answer: dict[str, Any] = container.invoke(event)
            failures = answer.get("batchItemFailures", []) if isinstance(answer, dict) else []
            self.step(f"{name} <- stream batch of {len(event['Records'])}: {len(failures)} failed")
            if failures:
                self.fail(f"{name}: {len(failures)} of {len(event['Records'])} records failed{self._log(name)}")
            return answer

        return StreamPoller(
            streams,
            self.deployment.references.resolve(source["EventSourceArn"]),
            invoke,
            starting_position=str(source.get("StartingPosition", "LATEST")),
            batch_size=int(source.get("BatchSize", 100)),
            function_timeout=run.spec.timeout,
        )

    def drain_stream(self, name: str, poller: StreamPoller) -> None:
        """Everything the stream holds so far through the function (a failing batch is retried a few times
        only: its failure is already a finding)."""
        read = poller.drain(max_polls=STREAM_POLLS)
        self.step(f"{name} <- DynamoDB stream: {read} record(s) read, {poller.batches} batch(es) passed the filter")

    def play(self, esm_sessions: dict[str, Any]) -> None:
        """One account, two messages (one small, one stored in S3) through SMTP, their 'sent' reports to the
        endpoint from the messages table's stream; then the scheduled reporter and the bouncer on schedule."""
        report_token = self._set_tokens()
        if report_token is None:
            return
        streams = esm_sessions["stream_reporter"].client("dynamodbstreams", endpoint_url=STREAMS_ENDPOINT)
        stream = self.stream_event_source("stream_reporter", streams)
        self.api("GET", "/status")
        user, password = self.sink.auth
        self.api(
            "POST",
            "/account",
            {
                "id": "rehearsal",
                "host": self.sink.host,
                "port": self.sink.port,
                "user": user,
                "password": password,
                "use_tls": False,
            },
        )
        big_body = self._add_messages()
        self.event_source_mapping("sender", esm_sessions["sender"].client("sqs"))
        self._check_delivered(big_body, user)
        if stream is not None:
            self.drain_stream("stream_reporter", stream)
        self._check_reports(report_token)
        self._ses_bounce(esm_sessions["ses_events"])
        self.api("GET", "/messages")
        self.api("POST", "/commands/run-now")
        self.scheduled("reporter")
        self.scheduled("bouncer")
        listed = self.api("GET", "/messages")
        states = {m.get("id"): m.get("status") for m in listed.get("messages", [])}
        self.step(f"api GET /messages: {states}")
        self.api("DELETE", "/account/rehearsal")

    def _ses_bounce(self, esm_session: Any) -> None:
        """SES's Bounce event for REHEARSAL-1, around the headers the SMTP server received, put on the SES
        events queue as the topic's raw delivery would; the function records it on the message."""
        queues = self.queues_of(self.run_fn("ses_events").spec)
        sent = [m for m in self.sink.messages if str(m.message["Subject"]) == "Rehearsal"]
        if not queues or not sent:
            self.fail("ses_events: no SES events queue in the template, or no REHEARSAL-1 at the SMTP server")
            return
        url = queues[0][0]
        event = ses_bounce_event([(name, str(value)) for name, value in sent[0].message.items()], sent[0].rcpt_tos)
        self.admin.client("sqs", region_name=REGION).send_message(QueueUrl=url, MessageBody=json.dumps(event))
        self.event_source_mapping("ses_events", esm_session.client("sqs"))
        bounced = self.api("GET", "/messages", query={"bounced": "true"}).get("messages", [])
        self.step(f"api GET /messages?bounced=true: {[(m.get('id'), m.get('bounce_type')) for m in bounced]}")
        if [(m.get("id"), m.get("bounce_type")) for m in bounced] != [("REHEARSAL-1", "hard")]:
            self.fail(f"ses_events: REHEARSAL-1 was not recorded as a hard bounce{self._log('ses_events')}")

    def _set_tokens(self) -> str | None:
        """Read the API token from the api's secret and write the report token into the reporting functions'
        client-sync secret (the operator's step after deploy, docs/deploy.md); the report token, or None
        without an API token."""
        api_run = self.run_fn("api")
        token_secret = next((v for v in api_run.declared.values() if v.startswith("arn:aws:secretsmanager:")), None)
        if token_secret is None:
            self.fail("api: the template gives it no Secrets Manager secret (the API token)")
            return None
        self.token = self.admin.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=token_secret)[
            "SecretString"
        ]
        report_token = secrets.token_hex(16)
        client_sync_secrets = {
            value
            for name in REPORTING_FUNCTIONS
            for value in self.run_fn(name).declared.values()
            if value.startswith("arn:aws:secretsmanager:")
        }
        for secret_arn in sorted(client_sync_secrets):
            self.admin.client("secretsmanager", region_name=REGION).put_secret_value(
                SecretId=secret_arn, SecretString=json.dumps({"token": report_token})
            )
        return report_token

    def _add_messages(self) -> str:
        """Queue REHEARSAL-1 (small) and REHEARSAL-2 (large); the large one's body, to compare on arrival."""
        # ~150 KB that does not compress: stored in S3, above the table's inline limit.
        noise = base64.b64encode(secrets.token_bytes(110_000)).decode()
        big_body = "\n".join(noise[i : i + 76] for i in range(0, len(noise), 76))
        added = self.api(
            "POST",
            "/commands/add-messages",
            {
                "messages": [
                    {
                        "id": "REHEARSAL-1",
                        "account_id": "rehearsal",
                        "from": "app@example.com",
                        "to": ["someone@example.com"],
                        "subject": "Rehearsal",
                        "body": "Hello from the rehearsal",
                        "priority": 1,
                    },
                    {
                        "id": "REHEARSAL-2",
                        "account_id": "rehearsal",
                        "from": "app@example.com",
                        "to": ["someone@example.com"],
                        "subject": "Rehearsal, large",
                        "body": big_body,
                        "priority": 3,
                    },
                ]
            },
        )
        if added.get("rejected"):
            self.fail(f"api: add-messages rejected {added['rejected']}")
        return big_body

    def _check_delivered(self, big_body: str, user: str) -> None:
        """Both messages at the SMTP server, over STARTTLS with AUTH, the large one's body intact."""
        try:
            received = self.sink.wait_for_messages(2, timeout=2)
        except TimeoutError as exc:
            self.fail(f"sender: {exc} at the SMTP server{self._log('sender')}")
            received = self.sink.messages
        self.result.smtp_messages = len(received)
        subjects = sorted(str(m.message["Subject"]) for m in received)
        self.step(f"SMTP server received {len(received)} message(s): {subjects}")
        for message in received:
            if message.message["Subject"] == "Rehearsal, large":
                content = message.message.get_body(("plain",))
                text = content.get_content() if content is not None else ""
                if text.replace("\r\n", "\n").strip() != big_body.strip():
                    self.fail("sender: the large message's body did not arrive intact")
            if not message.tls or message.auth_user != user:
                self.fail("sender: the message was not sent over STARTTLS with AUTH")

    def _check_reports(self, report_token: str) -> None:
        """A 'sent' report of each message at the endpoint, posted by the stream reporter (before the scheduled
        reporter runs: that one posts only what the stream reporter put in the outbox) with the client-sync
        secret's token."""
        items = self.receiver.items()
        self.result.reports = items
        statuses = {item.get("id"): "sent" if item.get("sent_ts") else "not sent" for item in items}
        self.step(f"report endpoint received {len(items)} report(s): {statuses}")
        for message_id in ("REHEARSAL-1", "REHEARSAL-2"):
            if statuses.get(message_id) != "sent":
                self.fail(
                    f"stream_reporter: no 'sent' report for {message_id} reached the endpoint"
                    f"{self._log('stream_reporter')}"
                )
        if self.receiver.requests and self.receiver.requests[0].get("authorization") != f"Bearer {report_token}":
            self.fail("stream_reporter: the report was not posted with the client-sync secret's token")


def ses_bounce_event(headers: list[tuple[str, str]], recipients: list[str]) -> dict[str, Any]:
    """A permanent bounce as SES publishes it to SNS (event publishing), about the mail with `headers`."""
    return {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": "rehearsal-feedback",
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": r, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 unknown"}
                for r in recipients
            ],
            "timestamp": "2030-01-01T10:00:05.000Z",
        },
        "mail": {
            "timestamp": "2030-01-01T10:00:00.000Z",
            "messageId": "rehearsal-ses-message",
            "destination": recipients,
            "headersTruncated": False,
            "headers": [{"name": name, "value": value} for name, value in headers],
        },
    }


def _is_stream_source(source: dict[str, Any]) -> bool:
    arn = source.get("EventSourceArn")
    return isinstance(arn, dict) and arn.get("Fn::GetAtt", ["", ""])[1] == "StreamArn"


def _check_calls(result: Result) -> None:
    for name, run in sorted(result.functions.items()):
        for call in run.calls:
            for action, resource in call.permissions:
                decision = decide(run.statements, action, resource)
                if not decision.allowed:
                    answered = f" (moto answered {call.error})" if call.error else ""
                    message = (
                        f"{name}: {action} on {resource} is allowed by no statement of its role{answered}"
                        if decision.denied_by is None
                        else f"{name}: {action} on {resource} is denied by {decision.denied_by.label}{answered}"
                    )
                    if message not in result.problems:
                        result.problems.append(message)
            if call.error and "AccessDenied" in call.error and not any(call.action in p for p in result.problems):
                result.problems.append(
                    f"{name}: {call.action} on {', '.join(call.resources)}: moto answered {call.error}"
                )


def _find_unused(result: Result) -> None:
    for name, run in sorted(result.functions.items()):
        used_pairs = [pair for call in run.calls for pair in call.permissions]
        for statement in run.statements:
            if statement.effect != "Allow":
                continue
            for action in statement.actions or statement.not_actions:
                for resource in statement.resources or statement.not_resources:
                    if any(Statement("Allow", (action,), (resource,)).matches(a, r) for a, r in used_pairs):
                        continue
                    resource_label = run.labels.get(resource, resource)
                    reason = reason_for(name, action, resource_label)
                    run.unused.append(Unused(statement, action, resource_label, reason))
                    if reason is None:
                        result.problems.append(
                            f"{name}: {action} on {resource_label} ({statement.label}) was never used and has no "
                            "reason: remove it from the stack or give the reason in rehearsal/reasons.py"
                        )


def rehearse(
    template: StackTemplate,
    *,
    report_url_placeholder: str | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Result:
    """Run the whole rehearsal on `template` (the dict is not changed). Never raises for a failed check:
    see `Result.problems` (`RehearsalFailed(result)` is the exception to raise with it)."""
    from moto import mock_aws
    from moto.core import set_initial_no_auth_action_count

    from tests.smtp_servers import CertAuthority, SmtpSink

    result = Result()
    template = template.copy()
    stream = RoutedStream(sys.__stdout__ or sys.stdout)
    result.stream = stream
    recorder = Recorder(region=REGION, account=ACCOUNT_ID)
    certs = CertAuthority()
    missing = [name for name in SCENARIO_FUNCTIONS if name not in {s.name for s in template.functions()}]
    if missing:
        result.problems.append(f"the template has no function(s) {missing} (handler functions.<name>.handler.handler)")
        return result

    from rehearsal.receivers import report_receiver

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rehearsal-")))
        ca_bundle = certs.write_ca_bundle(workdir / "ca.pem")
        stack.enter_context(
            mock_aws(config={"iam": {"load_aws_managed_policies": True}, "lambda": {"use_docker": False}})
        )
        stack.enter_context(recorder.installed())
        stack.enter_context(_redirected(stream))
        sink = stack.enter_context(SmtpSink("starttls", auth=("rehearsal", secrets.token_hex(12)), certs=certs))
        receiver = stack.enter_context(report_receiver(certs))

        setup = boto3.session.Session(
            aws_access_key_id="rehearsal",
            aws_secret_access_key="rehearsal",  # noqa: S106 (moto, before IAM is enforced)
            region_name=REGION,
        )
        started = time.monotonic()
        try:
            deployment = stand_up(template, setup, region=REGION)
        except Exception as exc:
            result.problems.append(f"standing the stack up in moto failed: {type(exc).__name__}: {exc}")
            return result
        result.deployment = deployment
        log(f"resources created in moto in {time.monotonic() - started:.1f} s")

        iam = setup.client("iam")
        admin = _admin_session(iam, recorder)
        wiring = _Wiring(
            deployment=deployment,
            sts=admin.client("sts"),
            iam=iam,
            recorder=recorder,
            stream=stream,
            problems=result.problems,
            report_url_placeholder=report_url_placeholder,
            receiver_url=receiver.url,
            ca_bundle=ca_bundle,
        )
        for spec in template.functions():
            result.functions[spec.name] = wiring.function_run(spec)

        scenario = Scenario(result, deployment, admin, sink, receiver)

        def play() -> None:
            try:
                scenario.play(wiring.esm_sessions)
            except Exception as exc:  # a crash is a finding like any other; the calls made so far are kept
                result.problems.append(f"the scenario stopped: {type(exc).__name__}: {exc}")

        started = time.monotonic()
        set_initial_no_auth_action_count(0)(play)()  # IAM enforced from here on: every call is signed and checked
        log(f"scenario played in {time.monotonic() - started:.1f} s")

    for name, run in result.functions.items():
        run.calls = recorder.of(name)
    _check_calls(result)
    _find_unused(result)
    return result


def _admin_session(iam: Any, recorder: Recorder) -> Any:
    """A session of an admin user, for the rehearsal's own calls once IAM is enforced (moto then refuses a
    key that belongs to no user or role); recorded as the rehearsal's set-up, not as any function's."""
    iam.create_user(UserName="rehearsal-admin")
    iam.put_user_policy(
        UserName="rehearsal-admin",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="rehearsal-admin")["AccessKey"]
    recorder.identify(key["AccessKeyId"], "rehearsal", "set-up")
    return boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )


@dataclass
class _Wiring:
    """What it takes to run each function in-process as Lambda would: its role's credentials, its template
    environment resolved against the deployment, the rehearsal's additions (loopback servers, private CA, no
    X-Ray daemon: see XRAY_SWITCH)."""

    deployment: Deployment
    sts: Any
    iam: Any
    recorder: Recorder
    stream: RoutedStream
    problems: list[str]
    report_url_placeholder: str | None
    receiver_url: str
    ca_bundle: Path
    esm_sessions: dict[str, Any] = field(default_factory=dict)  # function name -> session of its event sources

    def function_run(self, spec: FunctionSpec) -> FunctionRun:
        deployment = self.deployment
        credentials = self._assume_role(spec)
        declared = self._declared(spec)
        additions = self._additions(spec, declared)
        log_group = spec.properties.get("LoggingConfig", {}).get("LogGroup")
        environment = {
            **lambda_runtime_environment(
                function_name=deployment.references.ref(spec.logical_id),
                region=REGION,
                memory=spec.memory,
                handler=spec.handler,
                log_group=str(deployment.references.resolve(log_group)) if log_group else "",
                credentials=credentials,
            ),
            **declared,
            **additions,
        }
        statements, labels = _resolved_statements(deployment.template, deployment, spec, self.iam)
        container = Container(
            name=spec.name,
            handler_path=spec.handler,
            environment=environment,
            function_arn=deployment.references.get_att(spec.logical_id, "Arn"),
            memory=spec.memory,
            timeout=spec.timeout,
            stream=self.stream,
        )
        return FunctionRun(spec, container, declared, additions, statements, labels)

    def _assume_role(self, spec: FunctionSpec) -> dict[str, Any]:
        """The role's credentials for the function's code; a function with event sources also gets a second
        session of the same role for the event source mapping, so that its calls are told apart."""
        role_arn = self.deployment.references.get_att(spec.role_id, "Arn")
        credentials: dict[str, Any] = self.sts.assume_role(RoleArn=role_arn, RoleSessionName=spec.name)["Credentials"]
        self.recorder.identify(credentials["AccessKeyId"], spec.name)
        if self.deployment.template.event_sources_of(spec.logical_id):
            esm = self.sts.assume_role(RoleArn=role_arn, RoleSessionName=f"{spec.name}-event-source")["Credentials"]
            self.recorder.identify(esm["AccessKeyId"], spec.name, "event source mapping")
            self.esm_sessions[spec.name] = boto3.session.Session(
                aws_access_key_id=esm["AccessKeyId"],
                aws_secret_access_key=esm["SecretAccessKey"],
                aws_session_token=esm["SessionToken"],
                region_name=REGION,
            )
        return credentials

    def _declared(self, spec: FunctionSpec) -> dict[str, str]:
        """The template's variables, resolved; a problem for each one that refers to what was not created or
        that the code never reads."""
        prefix, known = _code_settings()
        declared: dict[str, str] = {}
        for name, raw in spec.environment.items():
            try:
                declared[name] = str(self.deployment.references.resolve(raw))
            except Unresolvable as exc:
                kind = self.deployment.template.resources.get(exc.logical_id, {}).get("Type", "no such resource")
                self.problems.append(
                    f"{spec.name}: environment variable {name} refers to {exc} ({kind}), which the rehearsal "
                    "did not create"
                )
            if name.startswith(prefix) and name.upper() not in known:
                self.problems.append(
                    f"{spec.name}: the template sets {name}, which the code never reads (no setting of that "
                    "name in mailproxy.config.Settings): a renamed or misspelt variable?"
                )
        return declared

    def _additions(self, spec: FunctionSpec, declared: dict[str, str]) -> dict[str, str]:
        from mailproxy.logic.ssrf import ALLOWLIST_VARIABLE

        placeholder = self.report_url_placeholder
        additions = {ALLOWLIST_VARIABLE: "127.0.0.1", "SSL_CERT_FILE": str(self.ca_bundle), XRAY_SWITCH: "false"}
        for name, value in declared.items():
            if placeholder and value == placeholder:  # the report URL given at synthesis
                additions[name] = self.receiver_url
        if spec.name in REPORTING_FUNCTIONS and not (placeholder and placeholder in declared.values()):
            self.problems.append(
                f"{spec.name}: no variable of its template environment holds the report URL the rehearsal "
                f"synthesized ({placeholder}): synthesize with -c client_sync_url=<that URL> "
                "(python -m rehearsal does), or no report can reach the endpoint"
            )
        return additions


@contextlib.contextmanager
def _redirected(stream: RoutedStream) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
