"""Network: the sender's private subnets, NAT egress with fixed public IPs, and a tight security group.

Seed document flow ➌ (SMTP 25/465/587 to any server) and ➋ (HTTPS to the client endpoint), plus HTTPS
to the AWS APIs the sender calls and DNS. Nothing else leaves, nothing comes in.

The `nat` setting picks the egress (docs/deploy.md, idle cost in docs/cost.md): `gateway` (managed NAT
gateways, each with its Elastic IP) or `instance` (a t4g.nano NAT instance per AZ, each with its Elastic
IP). With `none` this construct is not built at all: the sender runs outside any VPC. DynamoDB and S3 are
reached through free gateway endpoints, so the sender's table and bucket traffic never crosses the NAT.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from stacks.settings import Settings, acknowledge

SMTP_PORTS = (25, 465, 587)
HTTPS_PORT = 443
DNS_PORT = 53
NAT_INSTANCE_TYPE = "t4g.nano"  # the smallest Graviton instance: ~$3/month, up to 5 Gbit/s burst
ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023's root device name


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        assert settings.in_vpc, "no Network without NAT: the sender then runs outside any VPC"

        self.nat_instances: list[ec2.Instance] = []
        nat_provider = self._nat_instance_provider() if settings.nat == "instance" else ec2.NatProvider.gateway()
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=settings.nat_gateways,
            nat_gateway_provider=nat_provider,
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
        # Free, and the sender's DynamoDB/S3 calls then skip the NAT's per-GB processing charge.
        self.vpc.add_gateway_endpoint(
            "DynamoDbEndpoint", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[self.sender_subnets]
        )
        self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.sender_subnets]
        )
        if isinstance(nat_provider, ec2.NatInstanceProviderV2):
            self._finish_nat_instances(nat_provider)

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

    @staticmethod
    def _nat_instance_provider() -> ec2.NatInstanceProviderV2:
        return ec2.NatProvider.instance_v2(
            instance_type=ec2.InstanceType(NAT_INSTANCE_TYPE),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.ARM_64),
            # Inbound is opened below to the sender's subnets only, on the sender's own ports.
            default_allowed_traffic=ec2.NatTrafficDirection.OUTBOUND_ONLY,
        )

    def _finish_nat_instances(self, provider: ec2.NatInstanceProviderV2) -> None:
        """Let the private subnets out through the instances, and give each instance a fixed Elastic IP."""
        for subnet in self.vpc.private_subnets:
            for port in (*SMTP_PORTS, HTTPS_PORT):
                provider.connections.allow_from(
                    ec2.Peer.ipv4(subnet.ipv4_cidr_block), ec2.Port.tcp(port), f"sender subnet out on {port}"
                )
        self.nat_instances = list(provider.gateway_instances)
        for number, instance in enumerate(self.nat_instances, start=1):
            ec2.CfnEIP(self, f"NatInstanceEip{number}", domain="vpc", instance_id=instance.instance_id)
            cfn = instance.instance
            cfn.monitoring = True  # 1-minute metrics, to see a saturated instance before mail waits
            cfn.block_device_mappings = [  # the AMI's root volume, encrypted with the account's EBS key
                ec2.CfnInstance.BlockDeviceMappingProperty(
                    device_name=ROOT_DEVICE, ebs=ec2.CfnInstance.EbsProperty(encrypted=True, volume_type="gp3")
                )
            ]
            acknowledge(
                instance,
                "AwsSolutions-EC29",
                "A NAT instance is replaced by redeploying; nat=gateway is the managed, self-healing "
                "choice (docs/deploy.md, docs/cost.md).",
            )

    @property
    def nat_public_ips(self) -> list[str]:
        """The Elastic IPs of the NAT gateways or instances: what SMTP providers must allowlist."""
        ips: list[str] = []
        for subnet in self.vpc.public_subnets:
            eip = subnet.node.try_find_child("EIP")
            if isinstance(eip, ec2.CfnEIP):
                ips.append(eip.ref)
        for child in self.node.children:
            if isinstance(child, ec2.CfnEIP):
                ips.append(child.ref)
        return ips
