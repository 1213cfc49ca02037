"""Network: the sender's private subnets, NAT egress with fixed public IPs, and a tight security group.

Seed document flow ➌ (SMTP 25/465/587 to any server) and ➋ (HTTPS to the client endpoint), plus HTTPS
to the AWS APIs the sender calls and DNS. Nothing else leaves, nothing comes in.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.settings import Settings, acknowledge

SMTP_PORTS = (25, 465, 587)
HTTPS_PORT = 443
DNS_PORT = 53


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)

        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=settings.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="sender", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24),
            ],
        )
        acknowledge(
            self.vpc,
            "AwsSolutions-VPC7",
            "The VPC carries only the sender function's outbound SMTP/HTTPS; each delivery attempt is "
            "logged by the application (GMP_LOG_DELIVERY_ACTIVITY). Flow logs would add cost without "
            "new information; enable them if your policy requires.",
        )

        self.sender_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

        self.sender_security_group = ec2.SecurityGroup(
            self,
            "SenderSecurityGroup",
            vpc=self.vpc,
            description="genro-mail-proxy sender: egress SMTP 25/465/587, HTTPS 443, DNS 53 only",
            allow_all_outbound=False,
        )
        sg = self.sender_security_group
        for port in SMTP_PORTS:
            sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), f"SMTP {port} to any mail server")
        sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "HTTPS to AWS APIs and the client endpoint")
        resolver = ec2.Peer.ipv4(self.vpc.vpc_cidr_block)
        sg.add_egress_rule(resolver, ec2.Port.udp(DNS_PORT), "DNS to the VPC resolver")
        sg.add_egress_rule(resolver, ec2.Port.tcp(DNS_PORT), "DNS over TCP to the VPC resolver")

    @property
    def nat_public_ips(self) -> list[str]:
        """The Elastic IPs of the NAT gateways: what SMTP providers must allowlist."""
        ips: list[str] = []
        for subnet in self.vpc.public_subnets:
            eip = subnet.node.try_find_child("EIP")
            if isinstance(eip, ec2.CfnEIP):
                ips.append(eip.ref)
        return ips
