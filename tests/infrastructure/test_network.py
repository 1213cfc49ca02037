"""Network: two AZs, NAT count from context, the sender in private subnets behind a tight SG; the `nat`
options (gateway, instance, none) and the free DynamoDB/S3 gateway endpoints."""

from __future__ import annotations

from typing import Any

import pytest

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


# --- the `nat` options and the gateway endpoints --------------------------------------------------


def _sender_route_tables(synth: Synthesis) -> set[str]:
    _, sender = synth.function(SENDER_HANDLER)
    subnet_ids = {ref["Ref"] for ref in sender["Properties"]["VpcConfig"]["SubnetIds"]}
    return {
        assoc["Properties"]["RouteTableId"]["Ref"]
        for assoc in synth.resources("AWS::EC2::SubnetRouteTableAssociation").values()
        if assoc["Properties"]["SubnetId"]["Ref"] in subnet_ids
    }


@pytest.mark.parametrize("nat", ["gateway", "instance"])
def test_dynamodb_and_s3_gateway_endpoints_serve_the_senders_route_tables(nat: str, request: Any) -> None:
    synth: Synthesis = request.getfixturevalue("synth" if nat == "gateway" else "synth_nat_instance")
    endpoints = synth.resources("AWS::EC2::VPCEndpoint").values()
    services = {}
    for endpoint in endpoints:
        props = endpoint["Properties"]
        assert props["VpcEndpointType"] == "Gateway"  # free, unlike interface endpoints
        service = props["ServiceName"]["Fn::Join"][1][-1]
        services[service] = {ref["Ref"] for ref in props["RouteTableIds"]}
    route_tables = _sender_route_tables(synth)
    assert len(route_tables) == 2
    assert services == {".dynamodb": route_tables, ".s3": route_tables}


def test_nat_gateway_option_has_no_nat_instance(synth: Synthesis) -> None:
    assert synth.context["nat"] == "gateway"  # cdk.json's default
    synth.template.resource_count_is("AWS::EC2::Instance", 0)


def test_nat_instance_option_routes_the_sender_through_t4g_nano_instances_with_fixed_ips(
    synth_nat_instance: Synthesis,
) -> None:
    synth = synth_nat_instance
    synth.template.resource_count_is("AWS::EC2::NatGateway", 0)
    instances = synth.resources("AWS::EC2::Instance")
    assert len(instances) == synth.context["nat_gateways"] == 2
    for props in (i["Properties"] for i in instances.values()):
        assert props["InstanceType"] == "t4g.nano"
        assert props["SourceDestCheck"] is False  # forwards the subnets' packets
        image_parameter = synth.template_json["Parameters"][props["ImageId"]["Ref"]]
        assert image_parameter["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-ami")
        assert image_parameter["Default"].endswith("-arm64")
        assert props["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    # each instance has its own Elastic IP, which is what the stack outputs for allowlisting
    eips = synth.resources("AWS::EC2::EIP")
    assert {e["Properties"]["InstanceId"]["Ref"] for e in eips.values()} == set(instances)
    outputs = synth.template_json["Outputs"]
    assert {outputs[f"NatPublicIp{n}"]["Value"]["Ref"] for n in (1, 2)} == set(eips)
    # the sender's subnets default-route to an instance
    routes = [r["Properties"] for r in synth.resources("AWS::EC2::Route").values() if "InstanceId" in r["Properties"]]
    assert {r["RouteTableId"]["Ref"] for r in routes} == _sender_route_tables(synth)
    assert all(r["DestinationCidrBlock"] == "0.0.0.0/0" for r in routes)


def test_nat_instance_accepts_only_the_senders_subnets_on_the_senders_ports(synth_nat_instance: Synthesis) -> None:
    synth = synth_nat_instance
    (instance,) = {
        sg["Fn::GetAtt"][0]
        for i in synth.resources("AWS::EC2::Instance").values()
        for sg in i["Properties"]["SecurityGroupIds"]
    }
    ingress = synth.template_json["Resources"][instance]["Properties"]["SecurityGroupIngress"]
    private_cidrs = {
        s["Properties"]["CidrBlock"]
        for s in synth.resources("AWS::EC2::Subnet").values()
        if not s["Properties"].get("MapPublicIpOnLaunch")
    }
    assert {r["CidrIp"] for r in ingress} == private_cidrs
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress} == {
        ("tcp", 25, 25),
        ("tcp", 465, 465),
        ("tcp", 587, 587),
        ("tcp", 443, 443),
    }


def test_nat_none_builds_no_vpc_and_runs_the_sender_outside_it(synth_nat_none: Synthesis) -> None:
    synth = synth_nat_none
    for resource_type in ("AWS::EC2::VPC", "AWS::EC2::NatGateway", "AWS::EC2::Instance", "AWS::EC2::EIP"):
        synth.template.resource_count_is(resource_type, 0)
    _, sender = synth.function(SENDER_HANDLER)
    assert "VpcConfig" not in sender["Properties"]
    assert not any("VPCAccess" in str(arn) for arn in synth.role_managed_policies(SENDER_HANDLER))
    assert not [name for name in synth.template_json["Outputs"] if name.startswith("NatPublicIp")]


def test_sender_in_the_vpc_has_the_vpc_access_policy(synth: Synthesis) -> None:
    assert any("AWSLambdaVPCAccessExecutionRole" in str(arn) for arn in synth.role_managed_policies(SENDER_HANDLER))
