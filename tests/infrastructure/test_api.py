"""The REST API: proxy integration for every path, throttled stage, regional endpoint."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from tests.infrastructure.conftest import API_HANDLER, Synthesis


def test_rest_api_is_regional_and_proxies_every_path_to_the_api_function(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::ApiGateway::RestApi", 1)
    synth.template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}}
    )
    synth.template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "{proxy+}"})
    api_id, _ = synth.function(API_HANDLER)
    methods = synth.resources("AWS::ApiGateway::Method")
    assert len(methods) == 2  # ANY / and ANY /{proxy+}
    for method in methods.values():
        props = method["Properties"]
        assert props["HttpMethod"] == "ANY"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert api_id in str(props["Integration"]["Uri"])


def test_stage_is_throttled_with_the_context_limits(synth: Synthesis) -> None:
    synth.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "TracingEnabled": True,
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "ThrottlingRateLimit": synth.context["api_throttle_rate_limit"],
                            "ThrottlingBurstLimit": synth.context["api_throttle_burst_limit"],
                        }
                    )
                ]
            ),
        },
    )


def test_stage_writes_json_access_logs_without_headers_or_bodies(synth: Synthesis) -> None:
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    settings = stage["Properties"]["AccessLogSetting"]
    (group_id,) = synth.resources("AWS::Logs::LogGroup").keys() & {settings["DestinationArn"]["Fn::GetAtt"][0]}
    assert synth.resources("AWS::Logs::LogGroup")[group_id]["Properties"]["RetentionInDays"] > 0
    fields = json.loads(settings["Format"])
    assert {"requestId", "status", "httpMethod", "resourcePath", "requestTime"} <= set(fields)
    assert not {"caller", "user"} & set(fields)
    assert "header" not in settings["Format"].lower() and "body" not in settings["Format"].lower()


def test_the_regions_api_gateway_logging_role_is_created_and_kept_on_delete(synth: Synthesis) -> None:
    """Access logs need it (api_account_logging_role=false when the account has one managed elsewhere);
    retained, since other APIs of the region may log through it."""
    (account,) = synth.resources("AWS::ApiGateway::Account").values()
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = synth.resources("AWS::IAM::Role")[role_id]
    assert role["DeletionPolicy"] == "Retain"
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in json.dumps(role["Properties"]["ManagedPolicyArns"])
