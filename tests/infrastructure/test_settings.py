"""Context settings: cdk.json documents the defaults, bad values fail with the key named."""

from __future__ import annotations

import pytest

from stacks.settings import Settings, SettingsError
from tests.infrastructure.conftest import cdk_json_context


def test_cdk_json_context_is_valid_and_equals_the_defaults() -> None:
    context = cdk_json_context()
    settings = Settings.parse(context)
    defaults = Settings()
    for key in context:
        if key in Settings.model_fields:
            assert getattr(settings, key) == getattr(defaults, key), key


def test_cdk_json_names_only_known_settings_or_cdk_feature_flags() -> None:
    unknown = {k for k in cdk_json_context() if k not in Settings.model_fields and not k.startswith("@aws-cdk/")}
    assert not unknown


def test_defaults_are_one_nat_gateway_arm64_and_a_one_minute_report_schedule() -> None:
    settings = Settings()
    assert settings.nat == "gateway" and settings.in_vpc
    assert settings.nat_gateways == 1
    assert settings.architecture == "arm64"
    assert settings.sender_max_concurrency == 10
    assert settings.report_schedule == "rate(1 minute)"
    assert settings.sender_reserved_concurrency is None
    assert settings.alarm_email is None


def test_cli_strings_are_coerced() -> None:
    settings = Settings.parse(
        {"nat_gateways": "2", "log_delivery_activity": "true", "sender_reserved_concurrency": "", "alarm_email": ""}
    )
    assert settings.nat_gateways == 2
    assert settings.log_delivery_activity is True
    assert settings.sender_reserved_concurrency is None
    assert settings.alarm_email is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("nat_gateways", 0),
        ("nat_gateways", 3),
        ("nat", "natgw"),
        ("sender_max_concurrency", 1),
        ("sender_max_concurrency", 1001),
        ("architecture", "sparc"),
        ("report_schedule", "every minute"),
        ("report_schedule", "rate(5 minute)"),
        ("report_schedule", "cron(* * *)"),
        ("log_retention_days", 31),
        ("alarm_email", "not-an-address"),
        ("client_sync_url", "ftp://client"),
        ("sender_timeout_seconds", 901),
        ("api_throttle_burst_limit", 1),
    ],
)
def test_bad_context_value_fails_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(SettingsError, match=key if key != "api_throttle_burst_limit" else "burst"):
        Settings.parse({key: value})


@pytest.mark.parametrize("expression", ["rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "cron(0/2 * * * ? *)"])
def test_eventbridge_schedule_expressions_are_accepted(expression: str) -> None:
    assert Settings.parse({"report_schedule": expression}).report_schedule == expression


def test_visibility_timeout_follows_the_sender_timeout() -> None:
    settings = Settings.parse({"sender_timeout_seconds": 100, "sender_batching_window_seconds": 5})
    assert settings.queue_visibility_timeout_seconds == 605


def test_default_layer_directory_is_per_architecture() -> None:
    assert Settings.parse({"architecture": "x86_64"}).resolved_layer_dir().name == "layer-x86_64"
    assert Settings().resolved_layer_dir().parts[-2:] == ("build", "layer-arm64")
