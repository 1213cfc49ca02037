"""Bulk jobs (suspend, activate, cleanup, tenant deletion): one config item per job, `pk = JOB#<tenant>`,
`sk = <job id>`, and the queue that carries a job's continuation to the jobs worker.

A job advances only by a conditional write on the checkpoint it started from, so two runs of the same job
(an SQS redelivery, a continuation racing the API's inline run) never both apply a page."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mailproxy.dal.dynamo import DynamoDBClient, all_items, write_if
from mailproxy.dal.items import from_item, to_item, values
from mailproxy.dal.keys import job_pk

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
else:
    SQSClient = Any

JOB_RETENTION_SECONDS = 7 * 24 * 3600  # a job's item expires (TTL) this long after its last change
JobKind = Literal["suspend", "activate", "cleanup", "delete_tenant"]
JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass(frozen=True)
class Job:
    tenant_id: str
    id: str
    kind: JobKind
    parameters: dict[str, Any]
    status: JobStatus
    processed: int  # messages looked at
    affected: int  # messages the operation changed (held, released, removed)
    checkpoint: dict[str, Any] | None  # where the walk over the tenant's index stands (message_queries.WalkPosition)
    created_ts: int
    updated_ts: int
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status == "done"

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        return cls(
            tenant_id=item["tenant_id"],
            id=item["sk"],
            kind=item["kind"],
            parameters=json.loads(item["parameters"]),
            status=item["status"],
            processed=int(item["processed"]),
            affected=int(item["affected"]),
            checkpoint=json.loads(item["checkpoint"]),
            created_ts=int(item["created_ts"]),
            updated_ts=int(item["updated_ts"]),
            result=json.loads(item.get("result", "{}")),
        )


def new_job_id(now_ms: int) -> str:
    """Time-ordered (a tenant's jobs list newest first by their key), unguessable suffix."""
    return f"{now_ms:013d}{secrets.token_hex(6)}"


class JobStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def create(self, tenant_id: str, kind: JobKind, parameters: dict[str, Any], *, now: float) -> Job:
        job = Job(
            tenant_id=tenant_id,
            id=new_job_id(int(now * 1000)),
            kind=kind,
            parameters=parameters,
            status="queued",
            processed=0,
            affected=0,
            checkpoint=None,
            created_ts=int(now),
            updated_ts=int(now),
        )
        item = {
            "pk": job_pk(tenant_id),
            "sk": job.id,
            "tenant_id": tenant_id,
            "kind": kind,
            "parameters": json.dumps(parameters),
            "status": job.status,
            "processed": 0,
            "affected": 0,
            "checkpoint": json.dumps(None),
            "created_ts": job.created_ts,
            "updated_ts": job.updated_ts,
            "expires_at": job.updated_ts + JOB_RETENTION_SECONDS,
        }
        self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        return job

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        answer = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": job_pk(tenant_id)}, "sk": {"S": job_id}}, ConsistentRead=True
        )
        return Job.from_item(from_item(answer["Item"])) if "Item" in answer else None

    def list(self, tenant_id: str) -> list[Job]:
        """The tenant's jobs still kept, newest first."""
        items = all_items(
            self._db,
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=job_pk(tenant_id)),
            ScanIndexForward=False,
        )
        return [Job.from_item(item) for item in items]

    def advance(
        self, job: Job, *, processed: int, affected: int, checkpoint: dict[str, Any] | None, now: float
    ) -> Job | None:
        """Record one page: the counts grow, the checkpoint moves. None when another run moved the job first
        (its checkpoint is no longer `job`'s) or it ended: this run must stop without applying more."""
        return self._update(
            job,
            "#c = :next, #s = :running",
            values(next=json.dumps(checkpoint)),
            processed=processed,
            affected=affected,
            now=now,
        )

    def finish(self, job: Job, *, processed: int, affected: int, result: dict[str, Any], now: float) -> Job | None:
        """Record the last page and end the job, with the route's answer in `result`."""
        named = values(done="done", result=json.dumps(result))
        return self._update(job, "#s = :done, #r = :result", named, processed=processed, affected=affected, now=now)

    def fail(self, job: Job, *, reason: str, now: float) -> Job | None:
        """End the job as failed where it stands, with `reason` in `result.error`; None when it moved on."""
        named = values(failed="failed", result=json.dumps({"error": reason}))
        return self._update(job, "#s = :failed, #r = :result", named, processed=0, affected=0, now=now)

    def _update(
        self, job: Job, sets: str, named: dict[str, Any], *, processed: int, affected: int, now: float
    ) -> Job | None:
        written = write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": job_pk(job.tenant_id)}, "sk": {"S": job.id}},
            UpdateExpression=f"SET {sets}, #p = #p + :p, #a = #a + :a, updated_ts = :now, expires_at = :exp",
            ConditionExpression="#c = :at AND #s IN (:queued, :running)",
            # Every attribute by its placeholder: several (status, result, processed) are DynamoDB reserved words.
            ExpressionAttributeNames={
                "#s": "status",
                "#c": "checkpoint",
                "#p": "processed",
                "#a": "affected",
                **({"#r": "result"} if "#r" in sets else {}),
            },
            ExpressionAttributeValues={
                **named,
                **values(
                    p=processed,
                    a=affected,
                    at=json.dumps(job.checkpoint),
                    queued="queued",
                    running="running",
                    now=int(now),
                    exp=int(now) + JOB_RETENTION_SECONDS,
                ),
            },
            ReturnValues="ALL_NEW",
        )
        return Job.from_item(written.attributes) if written.held else None


class JobQueue:
    """Continuations of jobs a run left unfinished: the jobs worker picks them up (functions/jobs)."""

    def __init__(self, sqs: SQSClient, url: str | None) -> None:
        self._sqs = sqs
        self.url = url

    def send(self, job: Job) -> None:
        if self.url is None:
            raise RuntimeError("GMP_JOBS_QUEUE_URL: not set, so an unfinished job cannot continue")
        body = {"tenant_id": job.tenant_id, "job_id": job.id, "checkpoint": job.checkpoint}
        self._sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(body))
