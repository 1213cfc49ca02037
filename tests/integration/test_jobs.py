"""Bulk tenant operations as jobs (docs/operations.md, "Jobs"): a large suspend answers 202 and the jobs
worker (functions/jobs) completes it from the jobs queue with growing progress; a worker that dies after a
page resumes from its checkpoint; a small tenant's suspend answers 200 as before; jobs are tenant-scoped.

The large suspend runs with GMP_JOBS_VOLUME messages: 400 by default (in-process moto costs ~20 ms a call
here, four calls a message for a suspend and its activation: 2,000 would take minutes), 20,000 under
`make soak`."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from fastapi.testclient import TestClient

from functions.api.app import ApiContext, create_app
from functions.jobs import handler as jobs_handler
from mailproxy import runtime
from mailproxy.config import JOB_RUN_MARGIN_SECONDS
from mailproxy.dal.messages import NewMessage
from mailproxy.dal.schema import LOCAL_MAX_RECEIVE_COUNT, LocalResources
from mailproxy.logic import jobs
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from tests.conftest import API_TOKEN, AUTH, account_payload, make_settings, message_payload

VOLUME = int(os.environ.get("GMP_JOBS_VOLUME", "400"))  # read at import: tests/conftest.py clears GMP_*
THROUGH_THE_API = 300  # of VOLUME, ingested by add-messages; the rest written straight by the store


@pytest.fixture
def job_services(aws: LocalResources) -> Services:
    """Services with the jobs queue and an inline budget spent by the first page: any job over one page
    answers 202 and goes on in the worker."""
    return Services.create(
        make_settings(aws, jobs_queue_url=aws.jobs_queue_url, jobs_dlq_arn=aws.jobs_dlq_arn, job_inline_budget=0.001)
    )


@pytest.fixture
def job_api(job_services: Services, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(runtime, "services", lambda: job_services)  # the worker's services are the API's
    app = create_app(
        ApiContext(services=lambda: job_services, api_token=lambda: API_TOKEN, trigger_report=lambda: None)
    )
    return TestClient(app, raise_server_exceptions=False)


def add_through_api(api: TestClient, ids: list[str], **fields: Any) -> None:
    for start in range(0, len(ids), 100):
        chunk = [message_payload(i, **fields) for i in ids[start : start + 100]]
        answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": chunk})
        assert answer.status_code == 200 and answer.json()["queued"] == len(chunk), answer.text


def add_in_bulk(services: Services, ids: list[str], tenant_id: str = "default", account_id: str = "smtp-main") -> None:
    """Stored as ingestion stores them (contents in batches), without the API's per-call checks; created
    one millisecond apart, in the order of `ids`."""
    now, created_ms = int(time.time()), int(time.time() * 1000)
    messages = [
        NewMessage(tenant_id, i, account_id, 2, created_ms + n, None, None, f"<{i}@x>", {"subject": "s"})
        for n, i in enumerate(ids)
    ]
    for start in range(0, len(messages), 500):
        services.messages.put_batch(messages[start : start + 500], now=now, enqueue_grace=900, known={})


def continuations(services: Services) -> Iterator[dict[str, Any]]:
    """The jobs queue's messages, one at a time, as Lambda's event source hands them to the worker."""
    url = services.settings.jobs_queue_url
    assert url is not None
    arn = services.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    while True:
        messages = services.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if not messages:
            return
        services.sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        yield _as_lambda_record(messages[0], arn)


def run_worker(api: TestClient, services: Services, job_id: str, tenant_id: str = "default") -> list[int]:
    """Invoke the worker on every continuation, each run with a budget of one page; the job's progress
    after each run."""
    progress = []
    for event in continuations(services):
        context = LocalLambdaContext("gmp-jobs", timeout_seconds=JOB_RUN_MARGIN_SECONDS + 0.001)
        assert jobs_handler.handler(event, context) == {"batchItemFailures": []}
        progress.append(api.get(f"/jobs/{job_id}?tenant_id={tenant_id}", headers=AUTH).json()["processed"])
    return progress


def status_items(services: Services) -> list[dict[str, Any]]:
    return list(services.queries.tenant_messages("default"))


def queued_records(services: Services) -> int:
    attributes = services.sqs.get_queue_attributes(
        QueueUrl=services.settings.bulk_queue_url or "", AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_large_suspend_answers_202_and_completes_in_the_worker_then_activation_likewise(
    job_api: TestClient, job_services: Services
) -> None:
    job_api.post("/account", headers=AUTH, json=account_payload())
    ids = [f"m-{n:05d}" for n in range(VOLUME)]
    add_through_api(job_api, ids[:THROUGH_THE_API])
    add_in_bulk(job_services, ids[THROUGH_THE_API:])
    job_services.sqs.purge_queue(QueueUrl=job_services.settings.bulk_queue_url or "")

    answer = job_api.post("/commands/suspend", headers=AUTH, json={})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status"] == "running" and 0 < accepted["processed"] < VOLUME
    progress = run_worker(job_api, job_services, accepted["job_id"])
    assert progress == sorted(progress) and len(set(progress)) == len(progress)  # grows with every run
    job = job_api.get(f"/jobs/{accepted['job_id']}", headers=AUTH).json()
    assert job["status"] == "done" and job["processed"] == VOLUME and job["result"] == {"suspended": VOLUME}
    items = status_items(job_services)
    assert len(items) == VOLUME and all(item.get("suspended") for item in items)

    answer = job_api.post("/commands/activate", headers=AUTH, json={})
    assert answer.status_code == 202, answer.text
    activation = answer.json()["job_id"]
    run_worker(job_api, job_services, activation)
    job = job_api.get(f"/jobs/{activation}", headers=AUTH).json()
    assert job["status"] == "done" and job["result"] == {"activated": VOLUME}
    assert not any(item.get("suspended") for item in status_items(job_services))
    assert queued_records(job_services) == VOLUME  # every released message is on its way


class WorkerKilled(RuntimeError):
    pass


def test_a_worker_killed_after_a_page_resumes_from_its_checkpoint_without_redoing_or_skipping(
    job_api: TestClient, job_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"k-{n:04d}" for n in range(250)]
    add_in_bulk(job_services, ids)
    held: Counter[str] = Counter()
    set_suspended = job_services.messages.set_suspended

    def counting(item: dict[str, Any], suspended: bool, *, now: int) -> bool:
        held[item["id"]] += 1
        return set_suspended(item, suspended, now=now)

    monkeypatch.setattr(job_services.messages, "set_suspended", counting)
    job = jobs.start(job_services, "default", "suspend", {"batch_code": None}, now=time.time())
    [message] = job_services.sqs.receive_message(QueueUrl=job_services.settings.jobs_queue_url or "")["Messages"]
    pages = 0
    tenant_page = job_services.queries.tenant_page

    def dies_after_one_page(*args: Any, **kwargs: Any) -> Any:
        # 250 messages are three pages: the API's inline run took the first, this run takes one and dies on
        # the last (the walk knows the last page ends it, so there is no further call to die on).
        nonlocal pages
        pages += 1
        if pages == 2:
            raise WorkerKilled
        return tenant_page(*args, **kwargs)

    monkeypatch.setattr(job_services.queries, "tenant_page", dies_after_one_page)
    body = json.loads(message["Body"])
    with pytest.raises(WorkerKilled):
        jobs.continue_job(job_services, "default", job.id, body["checkpoint"], budget_seconds=60)
    stopped = job_services.jobs.get("default", job.id)
    assert stopped is not None and stopped.status == "running" and stopped.checkpoint != body["checkpoint"]
    assert stopped.processed == sum(held.values())  # the pages done are recorded, nothing more

    # The redelivered continuation is stale now (its checkpoint moved on): dropped. The job's own resumes it.
    assert jobs.continue_job(job_services, "default", job.id, body["checkpoint"], budget_seconds=60) is None
    finished = jobs.continue_job(job_services, "default", job.id, stopped.checkpoint, budget_seconds=60)
    assert finished is not None and finished.status == "done"
    assert finished.processed == len(ids) and finished.result == {"suspended": len(ids)}
    assert set(held) == set(ids) and set(held.values()) == {1}


def _as_lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
            }
        ]
    }


def test_a_job_whose_continuation_keeps_failing_ends_failed_when_it_reaches_the_dlq_and_stays_so(
    job_api: TestClient, job_services: Services, aws: LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_in_bulk(job_services, [f"f-{n:04d}" for n in range(250)])
    answer = job_api.post("/commands/suspend", headers=AUTH, json={})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    processed = answer.json()["processed"]

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ProvisionedThroughputExceededException")

    working = job_services.queries.tenant_page
    monkeypatch.setattr(job_services.queries, "tenant_page", throttled)
    sqs, url = job_services.sqs, aws.jobs_queue_url
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    context = LocalLambdaContext("gmp-jobs", timeout_seconds=30)
    failures = 0
    while messages := sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages", []):
        with pytest.raises(BatchProcessingError):  # the record returns to the queue, as with Lambda
            jobs_handler.handler(_as_lambda_record(messages[0], queue_arn), context)
        failures += 1
    assert failures == LOCAL_MAX_RECEIVE_COUNT  # then SQS moved it to the DLQ
    assert job_api.get(f"/jobs/{job_id}", headers=AUTH).json()["status"] == "running"

    dlq_url = sqs.get_queue_url(QueueName=aws.jobs_dlq_arn.rsplit(":", 1)[-1])["QueueUrl"]
    [dead] = sqs.receive_message(QueueUrl=dlq_url)["Messages"]
    assert jobs_handler.handler(_as_lambda_record(dead, aws.jobs_dlq_arn), context) == {"batchItemFailures": []}
    job = job_api.get(f"/jobs/{job_id}", headers=AUTH).json()
    assert job["status"] == "failed" and job["processed"] == processed
    assert "re-issue the same call" in job["result"]["error"]

    # A redriven continuation finds the job ended: it is dropped, and the job stays as it is.
    monkeypatch.setattr(job_services.queries, "tenant_page", working)
    assert (
        jobs.continue_job(job_services, "default", job_id, json.loads(dead["Body"])["checkpoint"], budget_seconds=60)
        is None
    )
    assert job_api.get(f"/jobs/{job_id}", headers=AUTH).json() == job
    again = job_api.post("/commands/suspend", headers=AUTH, json={})  # the documented recovery
    run_worker(job_api, job_services, again.json()["job_id"])
    assert job_api.get(f"/jobs/{again.json()['job_id']}", headers=AUTH).json()["status"] == "done"
    assert all(item.get("suspended") for item in status_items(job_services))


def test_a_small_tenants_suspend_and_activate_answer_200_as_before(api: TestClient, services: Services) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    add_through_api(api, ["s-1", "s-2", "s-3"], batch_code="spring")
    answer = api.post("/commands/suspend", headers=AUTH, json={"batch_code": "spring"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["suspended"] == 3 and body["suspended_batches"] == ["spring"] and body["job_id"]
    job = api.get(f"/jobs/{body['job_id']}", headers=AUTH).json()
    assert job["kind"] == "suspend" and job["status"] == "done" and job["parameters"] == {"batch_code": "spring"}
    answer = api.post("/commands/activate", headers=AUTH, json={"batch_code": "spring"})
    assert answer.status_code == 200 and answer.json()["activated"] == 3


def test_a_tenant_key_reads_its_own_jobs_only(api: TestClient) -> None:
    keys = {}
    for tenant in ("acme", "other"):
        assert api.post("/tenant", headers=AUTH, json={"id": tenant}).status_code == 200
        keys[tenant] = {"X-API-Token": api.post(f"/tenant/{tenant}/api-key", headers=AUTH).json()["api_key"]}
    job_id = api.post("/commands/suspend", headers=keys["acme"], json={}).json()["job_id"]
    assert api.get(f"/jobs/{job_id}", headers=keys["acme"]).status_code == 200
    assert api.get(f"/jobs/{job_id}", headers=keys["other"]).status_code == 404
    assert api.get(f"/jobs/{job_id}?tenant_id=acme", headers=keys["other"]).status_code == 403
    assert api.get("/jobs?tenant_id=acme", headers=keys["other"]).status_code == 403
    assert [j["id"] for j in api.get("/jobs", headers=keys["acme"]).json()["jobs"]] == [job_id]
    assert api.get("/jobs", headers=keys["other"]).json()["jobs"] == []
    assert [j["id"] for j in api.get("/jobs", headers=AUTH).json()["jobs"]] == [job_id]  # the admin sees all
    assert api.get(f"/jobs/{job_id}", headers=AUTH).json()["tenant_id"] == "acme"
    assert api.get("/jobs/not-a-job", headers=AUTH).status_code == 422


def test_deleting_a_large_tenant_answers_202_and_the_worker_removes_its_mail_then_the_tenant(
    job_api: TestClient, job_services: Services
) -> None:
    assert job_api.post("/tenant", headers=AUTH, json={"id": "acme"}).status_code == 200
    job_api.post("/account", headers=AUTH, json=account_payload(tenant_id="acme"))
    add_in_bulk(job_services, [f"d-{n:03d}" for n in range(40)], tenant_id="acme")
    answer = job_api.delete("/tenant/acme", headers=AUTH)
    assert answer.status_code == 202, answer.text
    assert job_services.accounts.list("acme") == []  # the accounts go at once
    run_worker(job_api, job_services, answer.json()["job_id"], "acme")
    job = job_api.get(f"/jobs/{answer.json()['job_id']}?tenant_id=acme", headers=AUTH).json()
    assert job["status"] == "done" and job["result"] == {"accounts": 1, "messages": 40}
    assert job_api.get("/tenant/acme", headers=AUTH).status_code == 404
    assert list(job_services.queries.tenant_messages("acme")) == []
