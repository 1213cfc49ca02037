"""Idle cost by `nat` option: what a deployment that sends nothing pays a month, read from the template.

Each option (gateway, instance, none) is synthesized offline with cdk.json's context (a placeholder
dependency layer: nothing is pip-installed, no AWS account is needed), and the resources present in the
template are priced. Only resources that bill by the hour or month count here; requests are priced per
message by bench/cost.py. Prices: us-east-1 on-demand, PRICES_CHECKED, from the public price pages.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cost import MONTH_HOURS, NAT_INSTANCE_ROOT_GB, PRICES, PRICES_CHECKED, cdk_context

NAT_OPTIONS = ("gateway", "instance", "none")

# Dollars an hour or a month per resource of the template (us-east-1, PRICES_CHECKED).
IDLE_PRICES: dict[str, float] = {
    name: PRICES[name]
    for name in (
        *("nat_gateway_hour", "public_ipv4_hour", "t4g_nano_hour", "ebs_gp3_gb_month"),
        *("kms_key_month", "secret_month", "alarm_month", "dashboard_month"),
    )
}


def synthesize(nat: str, workdir: Path) -> dict[str, Any]:
    """The template of the stack with `nat` (cdk-nag runs too: an unacknowledged finding raises)."""
    from aws_cdk import App

    from stacks.mail_proxy_stack import STACK_NAME, build

    layer = workdir / f"layer-{nat}"
    (layer / "python").mkdir(parents=True)
    outdir = workdir / f"cdk.out-{nat}"
    app = App(context={**cdk_context(), "nat": nat, "layer_dir": str(layer)}, outdir=str(outdir))
    build(app)
    app.synth()
    template: dict[str, Any] = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    return template


def price(template: dict[str, Any]) -> dict[str, float]:
    """Dollars a month of the idle-billed resources in `template`, one line per kind."""
    resources = template["Resources"].values()
    count = Counter(r["Type"] for r in resources)
    instances = [r["Properties"] for r in resources if r["Type"] == "AWS::EC2::Instance"]
    unpriced = [p["InstanceType"] for p in instances if p["InstanceType"] != "t4g.nano"]
    if unpriced:
        raise ValueError(f"no price for instance types {unpriced}")
    p = IDLE_PRICES
    lines = {
        "nat_gateways": count["AWS::EC2::NatGateway"] * p["nat_gateway_hour"] * MONTH_HOURS,
        "nat_instances": len(instances)
        * (p["t4g_nano_hour"] * MONTH_HOURS + p["ebs_gp3_gb_month"] * NAT_INSTANCE_ROOT_GB),
        "elastic_ips": count["AWS::EC2::EIP"] * p["public_ipv4_hour"] * MONTH_HOURS,
        "kms_keys": count["AWS::KMS::Key"] * p["kms_key_month"],
        "secrets": count["AWS::SecretsManager::Secret"] * p["secret_month"],
        "alarms": count["AWS::CloudWatch::Alarm"] * p["alarm_month"],
        "dashboards": count["AWS::CloudWatch::Dashboard"] * p["dashboard_month"],
        "vpc_gateway_endpoints": 0.0,  # DynamoDB and S3 gateway endpoints are free
    }
    return {k: round(v, 2) for k, v in lines.items()}


def run(options: tuple[str, ...] = NAT_OPTIONS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="idle-") as workdir:
        priced = {nat: price(synthesize(nat, Path(workdir))) for nat in options}
    return {
        "prices_checked": PRICES_CHECKED,
        "region": "us-east-1",
        "prices": IDLE_PRICES,
        "nat_gateways": int(cdk_context()["nat_gateways"]),
        "options": {nat: {"lines": lines, "monthly": round(sum(lines.values()), 2)} for nat, lines in priced.items()},
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
