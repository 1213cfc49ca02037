"""The REST API: proxy integration for every path, throttled stage, regional endpoint."""

from __future__ import annotations

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


def test_stack_does_not_set_the_account_wide_api_gateway_logging_role(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::ApiGateway::Account", 0)
