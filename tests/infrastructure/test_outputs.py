"""Stack outputs: what the operator needs after `cdk deploy`."""

from __future__ import annotations

from tests.infrastructure.conftest import Synthesis


def test_outputs_name_the_url_nat_ips_queues_tables_and_secrets(synth: Synthesis) -> None:
    outputs = synth.template_json["Outputs"]
    assert set(outputs) == {
        "ApiUrl",
        "NatPublicIp1",
        "NatPublicIp2",
        "UrgentQueueUrl",
        "BulkQueueUrl",
        "UrgentDlqUrl",
        "BulkDlqUrl",
        "MessagesTableName",
        "ConfigTableName",
        "ApiTokenSecretArn",
        "ClientSyncSecretArn",
        "SesEventsTopicArn",
    }


def test_nat_public_ip_outputs_are_the_nat_gateways_elastic_ips(synth: Synthesis) -> None:
    outputs = synth.template_json["Outputs"]
    nat_eips = {
        nat["Properties"]["AllocationId"]["Fn::GetAtt"][0] for nat in synth.resources("AWS::EC2::NatGateway").values()
    }
    assert {outputs[f"NatPublicIp{n}"]["Value"]["Ref"] for n in (1, 2)} == nat_eips


def test_api_url_is_the_stage_invoke_url(synth: Synthesis) -> None:
    (rest_api_id,) = synth.resources("AWS::ApiGateway::RestApi")
    url = str(synth.template_json["Outputs"]["ApiUrl"]["Value"])
    assert rest_api_id in url and "execute-api" in url
