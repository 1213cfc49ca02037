"""Monitoring: alarms to an SNS topic (optional e-mail subscription) and a CloudWatch dashboard."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from mailproxy.config import METRICS_NAMESPACE, SERVICE_NAME
from stacks.queues import Queues
from stacks.settings import Settings

FIVE_MINUTES = Duration.minutes(5)
# The stream reporter posts within seconds; records it has not read in 15 minutes mean it is stuck or failing,
# long before the stream's 24 h retention would drop them.
STREAM_ITERATOR_AGE_ALARM_SECONDS = 900
# The reporter reads the stream-failures queue every minute: a description older than this is not being read.
STREAM_FAILURES_ALARM_SECONDS = 900


def emf_metric(name: str, statistic: str) -> cloudwatch.Metric:
    """A metric the functions emit as EMF (Powertools Metrics: the namespace and the `service` dimension):
    `ReportFailures` (the reporters), `HighestComplaintRate` (the bouncer, percent, after each run),
    `JobsFailed` (the jobs worker, for a continuation that reached the jobs DLQ)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE_NAME},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        queues: Queues,
        api_function: lambda_.IFunction,
        sender_function: lambda_.IFunction,
        reporter_function: lambda_.IFunction,
        rest_api: apigw.RestApi,
        stream_reporter_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)

        self.topic = sns.Topic(self, "AlarmTopic", display_name="genro-mail-proxy alarms", enforce_ssl=True)
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        action = cw_actions.SnsAction(self.topic)
        stage = rest_api.deployment_stage
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(
            construct_id: str,
            metric: cloudwatch.Metric,
            *,
            threshold: float,
            description: str,
            evaluation_periods: int = 1,
        ) -> cloudwatch.Alarm:
            created = metric.create_alarm(
                self,
                construct_id,
                alarm_description=description,
                threshold=threshold,
                evaluation_periods=evaluation_periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms.append(created)
            return created

        named = {
            "Urgent": (queues.urgent_queue, queues.urgent_dlq),
            "Bulk": (queues.bulk_queue, queues.bulk_dlq),
        }
        for name, (queue, dlq) in named.items():
            alarm(
                f"{name}DlqDepth",
                dlq.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
                threshold=1,
                description=f"{name} DLQ holds messages the sender failed to process "
                f"{settings.max_receive_count} times: inspect and redrive.",
            )
            alarm(
                f"{name}OldestMessageAge",
                queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum"),
                threshold=settings.oldest_message_alarm_seconds,
                description=f"The {name.lower()} queue is not being drained: oldest message older than "
                f"{settings.oldest_message_alarm_seconds} s.",
            )
        alarm(
            "JobsFailed",
            emf_metric("JobsFailed", cloudwatch.Stats.SUM),
            threshold=1,
            description=f"A bulk job's continuation failed {settings.max_receive_count} times: the job ended "
            "failed (GET /jobs/{job_id}); fix the cause and re-issue the call.",
        )
        alarm(
            "SesEventsDlqDepth",
            queues.ses_events_dlq.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            threshold=1,
            description=f"A SES notification could not be recorded {settings.max_receive_count} times (not a SES "
            "event, or a failing write): inspect it in the SES events DLQ and redrive.",
        )
        alarm(
            "StreamFailuresWaiting",
            queues.stream_failures.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum"),
            threshold=STREAM_FAILURES_ALARM_SECONDS,
            description="A stream batch the stream reporter gave up on has waited "
            f"{STREAM_FAILURES_ALARM_SECONDS} s for the reporter to read it again: its reports are late, and "
            "lost if it waits past the stream's 24 h.",
        )
        alarm(
            "SenderErrors",
            sender_function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            threshold=1,
            description="The sender function failed (unhandled error or timeout), not a single message.",
        )
        alarm(
            "ReportFailures",
            emf_metric("ReportFailures", cloudwatch.Stats.SUM),
            threshold=1,
            evaluation_periods=3,
            description="Delivery reports could not be posted to the client endpoint for 15 minutes.",
        )
        alarm(
            "StreamReporterIteratorAge",
            stream_reporter_function.metric("IteratorAge", period=FIVE_MINUTES, statistic="Maximum"),  # ms
            threshold=STREAM_ITERATOR_AGE_ALARM_SECONDS * 1000,
            description="The stream reporter lags the messages table's stream by "
            f"{STREAM_ITERATOR_AGE_ALARM_SECONDS} s or more: delivery reports are late.",
        )
        alarm(
            "StreamReporterErrors",
            stream_reporter_function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            threshold=1,
            description="A stream reporter invocation failed (an outbox write, a timeout): its batch is retried.",
        )
        alarm(
            "ComplaintRate",
            emf_metric("HighestComplaintRate", cloudwatch.Stats.MAXIMUM),
            threshold=settings.complaint_rate_alarm_percent,
            description=f"An SMTP account's complaint rate passed {settings.complaint_rate_alarm_percent} % (SES "
            "pauses sending at 0.5 %): the bouncer's log names the account; look at what it sends.",
        )
        alarm(
            "Api5xx",
            stage.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
            threshold=1,
            description="The REST API answered 5xx.",
        )

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard")
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24, height=4),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue depth (visible)",
                left=[q.metric_approximate_number_of_messages_visible() for q in queues.work_queues],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Oldest message age (s)",
                left=[q.metric_approximate_age_of_oldest_message(statistic="Maximum") for q in queues.work_queues],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="DLQ depth",
                left=[q.metric_approximate_number_of_messages_visible() for q in queues.dead_letter_queues],
                width=8,
            ),
        )
        functions = {"api": api_function, "sender": sender_function, "reporter": reporter_function}
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Invocations",
                left=[f.metric_invocations(label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Errors",
                left=[f.metric_errors(label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Duration p99 (ms)",
                left=[f.metric_duration(label=n, statistic="p99") for n, f in functions.items()],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[
                    stage.metric_count(),
                    stage.metric_client_error(),
                    stage.metric_server_error(),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Report failures", left=[emf_metric("ReportFailures", cloudwatch.Stats.SUM)], width=12
            ),
        )
