"""Network: two AZs, NAT count from context, the sender in private subnets behind a tight SG."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.conftest import SENDER_HANDLER, Synthesis


def _sender_security_group(synth: Synthesis) -> dict[str, Any]:
    _, sender = synth.function(SENDER_HANDLER)
    (sg_ref,) = sender["Properties"]["VpcConfig"]["SecurityGroupIds"]
    group: dict[str, Any] = synth.template_json["Resources"][sg_ref["Fn::GetAtt"][0]]
    return group


def _egress(synth: Synthesis) -> list[dict[str, Any]]:
    group = _sender_security_group(synth)
    rules: list[dict[str, Any]] = list(group["Properties"].get("SecurityGroupEgress", []))
    # rules added as separate resources would count too
    for rule in synth.resources("AWS::EC2::SecurityGroupEgress").values():
        rules.append(rule["Properties"])
    return rules


def test_vpc_spans_two_azs_with_public_and_private_subnets(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::EC2::VPC", 1)
    subnets = synth.resources("AWS::EC2::Subnet").values()
    public = [s for s in subnets if s["Properties"].get("MapPublicIpOnLaunch")]
    private = [s for s in subnets if not s["Properties"].get("MapPublicIpOnLaunch")]
    assert len(public) == 2 and len(private) == 2


def test_nat_gateway_count_comes_from_context(synth: Synthesis) -> None:
    assert synth.context["nat_gateways"] == 2  # the tests' override of cdk.json's default 1
    synth.template.resource_count_is("AWS::EC2::NatGateway", 2)
    synth.template.resource_count_is("AWS::EC2::EIP", 2)


def test_sender_runs_in_the_private_subnets_routed_through_nat(synth: Synthesis) -> None:
    _, sender = synth.function(SENDER_HANDLER)
    subnet_ids = {ref["Ref"] for ref in sender["Properties"]["VpcConfig"]["SubnetIds"]}
    assert len(subnet_ids) == 2
    resources = synth.template_json["Resources"]
    for subnet_id in subnet_ids:
        assert not resources[subnet_id]["Properties"].get("MapPublicIpOnLaunch")
    nat_routes = [r for r in synth.resources("AWS::EC2::Route").values() if "NatGatewayId" in r["Properties"]]
    routed = {
        assoc["Properties"]["SubnetId"]["Ref"]
        for assoc in synth.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if any(r["Properties"]["RouteTableId"] == assoc["Properties"]["RouteTableId"] for r in nat_routes)
    }
    assert subnet_ids <= routed


def test_sender_egress_allows_only_smtp_https_and_dns(synth: Synthesis) -> None:
    rules = _egress(synth)
    allowed = {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules}
    assert allowed == {
        ("tcp", 25, 25),
        ("tcp", 465, 465),
        ("tcp", 587, 587),
        ("tcp", 443, 443),
        ("udp", 53, 53),
        ("tcp", 53, 53),
    }


def test_sender_egress_has_no_wide_open_rule(synth: Synthesis) -> None:
    for rule in _egress(synth):
        assert rule["IpProtocol"] != "-1"
        assert rule["FromPort"] == rule["ToPort"], f"port range in {rule}"
        assert "CidrIpv6" not in rule


def test_dns_goes_only_to_the_vpc_resolver(synth: Synthesis) -> None:
    (vpc_id,) = synth.resources("AWS::EC2::VPC")
    dns = [rule for rule in _egress(synth) if rule["FromPort"] == 53]
    assert len(dns) == 2
    for rule in dns:
        assert rule["CidrIp"] == {"Fn::GetAtt": [vpc_id, "CidrBlock"]}


def test_sender_security_group_accepts_no_inbound_traffic(synth: Synthesis) -> None:
    group = _sender_security_group(synth)
    assert not group["Properties"].get("SecurityGroupIngress")
    synth.template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
