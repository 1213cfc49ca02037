"""Queues: urgent (priorities 0-1) and bulk (2-3), each with its own dead-letter queue; the jobs queue of bulk
tenant operations' continuations (stacks/jobs.py), with its own; the SES events queue subscribed to the SES
events topic (stacks/ses_events.py), with its own."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.settings import Settings, acknowledge

SES_EVENTS_TIMEOUT_SECONDS = 30  # the SES events function's timeout (stacks/ses_events.py)


def _queue(
    scope: Construct,
    construct_id: str,
    *,
    retention: Duration,
    visibility: Duration | None = None,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=retention,
        visibility_timeout=visibility,
        dead_letter_queue=dead_letter_queue,
    )


class Queues(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        visibility = Duration.seconds(settings.queue_visibility_timeout_seconds)

        # A DLQ keeps its messages for the maximum (14 days), longer than the source queue (4 days).
        self.urgent_dlq = _queue(self, "UrgentDlq", retention=Duration.days(14))
        self.bulk_dlq = _queue(self, "BulkDlq", retention=Duration.days(14))
        self.urgent_queue = _queue(
            self,
            "UrgentQueue",
            retention=Duration.days(4),
            visibility=visibility,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=settings.max_receive_count, queue=self.urgent_dlq),
        )
        self.bulk_queue = _queue(
            self,
            "BulkQueue",
            retention=Duration.days(4),
            visibility=visibility,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=settings.max_receive_count, queue=self.bulk_dlq),
        )

        # The jobs worker reads its DLQ too (a continuation there ends its job failed): the same visibility.
        jobs_visibility = Duration.seconds(6 * settings.jobs_timeout_seconds)  # AWS guidance, as the work queues
        self.jobs_dlq = _queue(self, "JobsDlq", retention=Duration.days(14), visibility=jobs_visibility)
        self.jobs_queue = _queue(
            self,
            "JobsQueue",
            retention=Duration.days(4),
            visibility=jobs_visibility,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=settings.max_receive_count, queue=self.jobs_dlq),
        )

        # Where Lambda describes the stream batches it gave up on (stacks/stream_reporter.py); the reporter
        # reads them again (mailproxy/logic/stream_repair.py). 14 days: the longest SQS keeps a message.
        self.stream_failures = _queue(self, "StreamFailures", retention=Duration.days(14))
        acknowledge(
            self.stream_failures,
            "AwsSolutions-SQS3",
            "It is itself a failure destination (the stream reporter's on-failure destination): the reporter reads "
            "each description and deletes it once handled; the StreamFailuresWaiting alarm watches its age.",
        )

        # SSE-SQS, not a KMS key: SNS delivers to it with no key policy to keep (stacks/ses_events.py).
        self.ses_events_dlq = _queue(self, "SesEventsDlq", retention=Duration.days(14))
        self.ses_events_queue = _queue(
            self,
            "SesEventsQueue",
            retention=Duration.days(4),
            visibility=Duration.seconds(6 * SES_EVENTS_TIMEOUT_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=settings.max_receive_count, queue=self.ses_events_dlq
            ),
        )

    @property
    def work_queues(self) -> list[sqs.Queue]:
        return [self.urgent_queue, self.bulk_queue]

    @property
    def dead_letter_queues(self) -> list[sqs.Queue]:
        return [self.urgent_dlq, self.bulk_dlq, self.jobs_dlq, self.ses_events_dlq]
