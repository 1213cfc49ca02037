"""Creates the tables, queues and bucket of local mode and of the tests, as the CDK stack declares them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailproxy.dal.keys import DUE_INDEX, PENDING_REPORTS_INDEX

LOCAL_MAX_RECEIVE_COUNT = 5


def _gsi(name: str, pk: str, sk: str, projection: dict[str, Any]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
        "Projection": projection,
    }


MESSAGES_TABLE_DEFINITION: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [
        {"AttributeName": name, "AttributeType": kind}
        for name, kind in [
            ("pk", "S"),
            ("sk", "S"),
            ("rpt_pk", "S"),
            ("rpt_sk", "S"),
            ("due_pk", "S"),
            ("due_ts", "N"),
        ]
    ],
    "GlobalSecondaryIndexes": [
        _gsi(PENDING_REPORTS_INDEX, "rpt_pk", "rpt_sk", {"ProjectionType": "ALL"}),
        _gsi(
            DUE_INDEX,
            "due_pk",
            "due_ts",
            {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["tenant_id", "id", "account_id", "priority"]},
        ),
    ],
    "BillingMode": "PAY_PER_REQUEST",
    # The stream reporter reads outcomes from it (mailproxy/logic/stream_reports.py)
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
}

CONFIG_TABLE_DEFINITION: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


@dataclass(frozen=True)
class LocalResources:
    messages_table: str
    config_table: str
    urgent_queue_url: str
    bulk_queue_url: str
    urgent_dlq_url: str
    bulk_dlq_url: str
    body_bucket: str
    jobs_queue_url: str
    jobs_dlq_arn: str

    def environment(self) -> dict[str, str]:
        return {
            "GMP_MESSAGES_TABLE": self.messages_table,
            "GMP_CONFIG_TABLE": self.config_table,
            "GMP_URGENT_QUEUE_URL": self.urgent_queue_url,
            "GMP_BULK_QUEUE_URL": self.bulk_queue_url,
            "GMP_BODY_BUCKET": self.body_bucket,
            "GMP_JOBS_QUEUE_URL": self.jobs_queue_url,
            "GMP_JOBS_DLQ_ARN": self.jobs_dlq_arn,
        }


def create_resources(session: Any, prefix: str = "gmp", visibility_timeout: int = 60) -> LocalResources:
    """Tables, urgent and bulk queues with their DLQs, the jobs queue, and the contents bucket."""
    dynamodb = session.client("dynamodb")
    sqs = session.client("sqs")
    s3 = session.client("s3")
    messages, config = f"{prefix}-messages", f"{prefix}-config"
    dynamodb.create_table(TableName=messages, **MESSAGES_TABLE_DEFINITION)
    dynamodb.create_table(TableName=config, **CONFIG_TABLE_DEFINITION)
    for table in (messages, config):
        dynamodb.get_waiter("table_exists").wait(TableName=table)
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    urls, arns = {}, {}
    # Bulk jobs' continuations (mailproxy/logic/jobs.py) too: one that reaches the jobs DLQ ends its job failed.
    for name in ("urgent", "bulk", "jobs"):
        dlq_url = sqs.create_queue(QueueName=f"{prefix}-{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{LOCAL_MAX_RECEIVE_COUNT}"}}'
        urls[name] = sqs.create_queue(
            QueueName=f"{prefix}-{name}",
            Attributes={"VisibilityTimeout": str(visibility_timeout), "RedrivePolicy": redrive},
        )["QueueUrl"]
        urls[f"{name}-dlq"], arns[f"{name}-dlq"] = dlq_url, dlq_arn
    bucket = f"{prefix}-contents"
    s3.create_bucket(Bucket=bucket)
    return LocalResources(
        messages_table=messages,
        config_table=config,
        urgent_queue_url=urls["urgent"],
        bulk_queue_url=urls["bulk"],
        urgent_dlq_url=urls["urgent-dlq"],
        bulk_dlq_url=urls["bulk-dlq"],
        body_bucket=bucket,
        jobs_queue_url=urls["jobs"],
        jobs_dlq_arn=arns["jobs-dlq"],
    )
