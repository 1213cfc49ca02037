"""Dollars per million messages from the measured counts, at published on-demand prices (us-east-1).

PRICES were taken from memory of the public AWS price pages on PRICES_CHECKED, without network access:
verify them before relying on the result (docs/cost.md says the same).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRICES_CHECKED = "2026-11-25"
MILLION = 1_000_000
GB = 1e9  # AWS bills data in GB of 10^9 bytes for transfer; close enough for storage (GiB) here

PRICES: dict[str, float] = {
    "lambda_request": 0.20 / MILLION,
    "lambda_gb_second_x86_64": 0.0000166667,
    "lambda_gb_second_arm64": 0.0000133334,
    "sqs_request": 0.40 / MILLION,  # standard queue, per 64 KB chunk, after the first million a month
    "dynamodb_wru": 0.625 / MILLION,  # on-demand, standard table class
    "dynamodb_rru": 0.125 / MILLION,
    "dynamodb_storage_gb_month": 0.25,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "s3_storage_gb_month": 0.023,
    "api_gateway_rest_request": 3.50 / MILLION,  # first 333 million a month
    "api_gateway_http_request": 1.00 / MILLION,
    "logs_ingest_gb": 0.50,
    "logs_storage_gb_month": 0.03,
    "kms_request": 0.03 / 10_000,
    "xray_trace": 5.00 / MILLION,
    "nat_gateway_hour": 0.045,
    "nat_gateway_gb": 0.045,
    "public_ipv4_hour": 0.005,  # every public IPv4 address, Elastic IPs included (since February 2024)
    "t4g_nano_hour": 0.0042,  # the NAT instance of `nat: instance`
    "ebs_gp3_gb_month": 0.08,
    "internet_egress_gb": 0.09,  # first 10 TB a month
    "secret_month": 0.40,
    "kms_key_month": 1.00,
    "custom_metric_month": 0.30,
    "alarm_month": 0.10,
    "dashboard_month": 3.00,
}

# List prices of hosted sending services, per 1,000 messages, approximate (from memory, same date).
HOSTED_PER_1000: dict[str, tuple[float, str]] = {
    "Amazon SES (outbound e-mail)": (0.10, "$0.10 per 1,000 e-mails, plus $0.12 per GB of attachments"),
    "SendGrid (Pro, 100k/month)": (0.90, "about $90 a month for 100,000 e-mails"),
    "Mailgun (Scale, 100k/month)": (0.90, "about $90 a month for 100,000 e-mails"),
    "Postmark (125k/month tier)": (1.10, "about $138 a month for 125,000 e-mails"),
}

LAMBDA_PLATFORM_LOG_BYTES = 400  # START, END and REPORT lines Lambda writes per invocation
XRAY_SAMPLED = 0.05  # default sampling rule: 1 request a second, then 5 %
HTTP_OVERHEAD_BYTES = 1024  # headers and TLS framing per AWS call (estimate, see lifecycle.py)
MONTH_HOURS = 730
NAT_INSTANCE_ROOT_GB = 8  # Amazon Linux 2023's AMI root volume


def cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def _lambda_gb_second(context: dict[str, Any]) -> float:
    return PRICES[f"lambda_gb_second_{context.get('architecture', 'arm64')}"]  # stacks/settings.py's default


def memory_mb(function: str, context: dict[str, Any]) -> int:
    """A function's memory as deployed: the stream reporter has the reporter's (stacks/stream_reporter.py)."""
    key = "reporter" if function == "stream_reporter" else function
    return int(context[f"{key}_memory_mb"])


def per_million(
    scenario: dict[str, Any],
    *,
    extra_ms: dict[str, float] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cost lines in dollars per million messages for one lifecycle scenario.

    `extra_ms` adds milliseconds per message to a function's duration (the network-latency model)."""
    context = context or cdk_context()
    m = scenario["per_message"]
    functions = scenario["functions"]
    memory_gb = {name: memory_mb(name, context) / 1024 for name in functions}
    invocations = sum(f["invocations_per_message"] for f in functions.values())
    gb_seconds = sum(
        memory_gb[name] * (f["ms_per_message"] + (extra_ms or {}).get(name, 0.0)) / 1000
        for name, f in functions.items()
    )
    per_request = scenario["scenario"]["per_request"]
    log_bytes = m["log_bytes"] + LAMBDA_PLATFORM_LOG_BYTES * invocations
    stored = scenario.get("dynamodb_stored_bytes_per_message", {})
    retention_months = 30 / (MONTH_HOURS / 24)  # kept 30 days (TTL, S3 lifecycle, log retention)
    lines = {
        "api_gateway_rest": PRICES["api_gateway_rest_request"] / per_request,
        "lambda_requests": PRICES["lambda_request"] * invocations,
        "lambda_duration": _lambda_gb_second(context) * gb_seconds,
        "sqs": PRICES["sqs_request"] * m["sqs_requests"],
        "dynamodb_writes": PRICES["dynamodb_wru"] * m["wru"],
        "dynamodb_reads": PRICES["dynamodb_rru"] * m["rru"],
        "dynamodb_storage": PRICES["dynamodb_storage_gb_month"] * sum(stored.values()) / GB * retention_months,
        "s3_requests": PRICES["s3_put"] * m["s3_put"] + PRICES["s3_get"] * m["s3_get"],
        "s3_storage": PRICES["s3_storage_gb_month"] * m["s3_bytes_stored"] / GB * retention_months,
        "kms_decrypt": PRICES["kms_request"] * m["kms_decrypts"],
        "cloudwatch_logs": (PRICES["logs_ingest_gb"] + PRICES["logs_storage_gb_month"] * retention_months)
        * log_bytes
        / GB,
        "xray": PRICES["xray_trace"] * XRAY_SAMPLED * invocations,
    }
    egress = {
        "internet_egress_smtp": PRICES["internet_egress_gb"] * scenario["smtp_bytes_per_message"] / GB,
        "nat_gateway_gb": PRICES["nat_gateway_gb"]
        * (scenario["smtp_bytes_per_message"] + scenario["sender_aws_bytes_per_message"])
        / GB,
    }
    dollars = {k: v * MILLION for k, v in lines.items()}
    egress_dollars = {k: v * MILLION for k, v in egress.items()}
    return {
        "lines": dollars,
        "egress": egress_dollars,
        "total_besides_nat": sum(dollars.values()) + egress_dollars["internet_egress_smtp"],
        "total_besides_egress": sum(dollars.values()),
        "total_with_nat_gb": sum(dollars.values()) + sum(egress_dollars.values()),
        "gb_seconds_per_message": gb_seconds,
        "invocations_per_message": invocations,
        "log_bytes_per_message": log_bytes,
    }


def latency_model(scenario: dict[str, Any]) -> dict[str, float]:
    """Extra milliseconds per message per function if AWS calls and SMTP took real network time:
    8 ms per DynamoDB/SQS/KMS call, 20 ms per S3 call, 60 ms per message to a real SMTP server (MAIL, RCPT,
    DATA, end of data at ~15 ms each) and 150 ms per SMTP connection (TCP, TLS, EHLO, AUTH)."""
    extra = {name: 0.0 for name in scenario["functions"]}
    phase_function = {"ingest": "api", "send": "sender", "report": "reporter"}
    for row in scenario["operations"]:
        if row["actor"] != "function" or row["phase"] not in phase_function:
            continue
        per_call = 20.0 if row["service"] == "s3" else 8.0
        extra[phase_function[row["phase"]]] += row["calls_per_message"] * per_call
    connections_per_message = scenario["sender_batches"] / scenario["scenario"]["messages"]  # one per batch
    extra["sender"] += 60.0 + 150.0 * connections_per_message
    extra["sender"] += 8.0 * scenario["per_message"]["kms_decrypts"]  # the KMS Decrypt itself
    return extra


def nat_monthly(nat: str, count: int) -> float:
    """Hours of the NAT of each `nat` option (stacks/settings.py), with the fixed public IPv4 address of each
    NAT; `none` has neither (the sender runs outside the VPC)."""
    if nat == "none":
        return 0.0
    if nat == "instance":
        hourly = PRICES["t4g_nano_hour"] + PRICES["public_ipv4_hour"]
        return count * (hourly * MONTH_HOURS + PRICES["ebs_gp3_gb_month"] * NAT_INSTANCE_ROOT_GB)
    return count * (PRICES["nat_gateway_hour"] + PRICES["public_ipv4_hour"]) * MONTH_HOURS


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def fixed_monthly(context: dict[str, Any] | None = None) -> dict[str, float]:
    """What the deployment costs a month with no mail at all, at cdk.json's `nat` option and architecture
    (estimates, see docs/cost.md; bench/idle.py prices each `nat` option from the synthesized template)."""
    context = context or cdk_context()
    schedule_runs = 30 * 24 * 60  # rate(1 minute)
    # Lambda's SQS event source mapping long-polls each queue with 5 pollers, one 20 s receive at a time;
    # the jobs queue (bulk tenant operations) is one more when its worker exists. DynamoDB Streams reads by
    # an event source mapping are free.
    queues = 3 if _has_module("functions.jobs.handler") else 2
    idle_receives = queues * 5 * 30 * 24 * 3600 / 20
    return {
        "nat": nat_monthly(str(context.get("nat", "gateway")), int(context.get("nat_gateways", 1))),
        "sqs_idle_polling_by_lambda": PRICES["sqs_request"] * idle_receives,
        "reporter_schedule": schedule_runs
        * (PRICES["lambda_request"] + 0.05 * context["reporter_memory_mb"] / 1024 * _lambda_gb_second(context)),
        "secrets_manager": 2 * PRICES["secret_month"],
        "kms_key": PRICES["kms_key_month"],
        "custom_metrics": 10 * PRICES["custom_metric_month"],
        "alarms_and_dashboard": 6 * PRICES["alarm_month"] + PRICES["dashboard_month"],
    }


def hosted_per_million() -> dict[str, dict[str, Any]]:
    return {name: {"per_million": price * 1000, "basis": basis} for name, (price, basis) in HOSTED_PER_1000.items()}
