"""Wires settings to AWS clients and stores; one instance per process (Lambda container or local runner)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from mailproxy.config import ConfigError, Settings
from mailproxy.crypto import KmsSecretBox, LocalSecretBox, SecretBox
from mailproxy.dal.accounts import AccountStore
from mailproxy.dal.audit import AuditLog
from mailproxy.dal.bounce_config import BounceConfigStore
from mailproxy.dal.connections import ConnectionSlots
from mailproxy.dal.contents import ContentStore
from mailproxy.dal.counters import MetricCounters
from mailproxy.dal.due import DueIndex
from mailproxy.dal.jobs import JobQueue, JobStore
from mailproxy.dal.mailbox_state import MailboxStateStore
from mailproxy.dal.message_queries import MessageQueries
from mailproxy.dal.messages import MessageStore
from mailproxy.dal.outbox import ReportOutbox
from mailproxy.dal.queues import DeliveryQueues
from mailproxy.dal.ratelimits import RateLimiter
from mailproxy.dal.suppressions import SuppressionStore
from mailproxy.dal.suspensions import SuspensionStore
from mailproxy.dal.sync_state import SyncStateStore
from mailproxy.dal.tenants import TenantStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient

BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    max_pool_connections=32,
    connect_timeout=5,
    read_timeout=20,
)


@dataclass
class Services:
    settings: Settings
    dynamodb: DynamoDBClient
    sqs: SQSClient
    s3: S3Client
    messages: MessageStore
    outbox: ReportOutbox
    due: DueIndex
    queries: MessageQueries
    accounts: AccountStore
    queues: DeliveryQueues
    rate_limits: RateLimiter
    connections: ConnectionSlots
    tenants: TenantStore
    suspensions: SuspensionStore
    suppressions: SuppressionStore
    bounce_config: BounceConfigStore
    mailbox_state: MailboxStateStore
    audit: AuditLog
    counters: MetricCounters
    sync_state: SyncStateStore
    jobs: JobStore
    job_queue: JobQueue
    secret_box: Callable[[], SecretBox]

    @classmethod
    def create(cls, settings: Settings, session: boto3.session.Session | None = None) -> Services:
        session = session or boto3.session.Session()
        dynamodb = session.client("dynamodb", config=BOTO_CONFIG)
        sqs = session.client("sqs", config=BOTO_CONFIG)
        # SigV4 for presigned download links too (dal/contents.py): botocore would presign SigV2 in us-east-1.
        s3 = session.client("s3", config=BOTO_CONFIG.merge(Config(signature_version="s3v4")))
        if not settings.urgent_queue_url or not settings.bulk_queue_url:
            raise ConfigError("GMP_URGENT_QUEUE_URL and GMP_BULK_QUEUE_URL: both queues must be set")
        contents = ContentStore(
            dynamodb, s3, settings.messages_table, settings.body_bucket, settings.inline_content_limit
        )
        secret_box = cache(lambda: _secret_box(settings, session))
        return cls(
            settings=settings,
            dynamodb=dynamodb,
            sqs=sqs,
            s3=s3,
            messages=MessageStore(dynamodb, settings.messages_table, contents),
            outbox=ReportOutbox(dynamodb, settings.messages_table),
            due=DueIndex(dynamodb, settings.messages_table),
            queries=MessageQueries(dynamodb, settings.messages_table),
            accounts=AccountStore(dynamodb, settings.config_table, secret_box),
            queues=DeliveryQueues(sqs, settings.urgent_queue_url, settings.bulk_queue_url),
            rate_limits=RateLimiter(dynamodb, settings.config_table),
            connections=ConnectionSlots(dynamodb, settings.config_table),
            tenants=TenantStore(dynamodb, settings.config_table, secret_box),
            suspensions=SuspensionStore(dynamodb, settings.config_table),
            suppressions=SuppressionStore(dynamodb, settings.config_table),
            bounce_config=BounceConfigStore(dynamodb, settings.config_table, secret_box),
            mailbox_state=MailboxStateStore(dynamodb, settings.config_table),
            audit=AuditLog(dynamodb, settings.config_table, settings.audit_retention_days),
            counters=MetricCounters(dynamodb, settings.config_table),
            sync_state=SyncStateStore(dynamodb, settings.config_table),
            jobs=JobStore(dynamodb, settings.config_table),
            job_queue=JobQueue(sqs, settings.jobs_queue_url),
            secret_box=secret_box,
        )


def _secret_box(settings: Settings, session: boto3.session.Session) -> SecretBox:
    if settings.kms_key_id:
        return KmsSecretBox(session.client("kms", config=BOTO_CONFIG), settings.kms_key_id)
    if settings.mode == "aws":
        raise ConfigError("GMP_KMS_KEY_ID: required in aws mode to encrypt SMTP passwords")
    if settings.local_key is None:
        raise ConfigError("GMP_LOCAL_KEY: required in local mode to encrypt SMTP passwords (make run sets one)")
    return LocalSecretBox(settings.local_key.get_secret_value())
