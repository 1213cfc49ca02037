"""Secrets: a generated API token long enough for aws mode; the client-sync secret; the rotating KMS key."""

from __future__ import annotations

import json

from tests.infrastructure.conftest import Synthesis


def test_api_token_and_correlation_key_are_generated_as_plain_strings_of_at_least_32_chars(synth: Synthesis) -> None:
    secrets = list(synth.resources("AWS::SecretsManager::Secret").values())
    assert len(secrets) == 3  # the API token, the correlation key, the client-sync credentials
    generated = [s["Properties"]["GenerateSecretString"] for s in secrets if "GenerateSecretString" in s["Properties"]]
    assert len(generated) == 2
    for spec in generated:
        assert spec["PasswordLength"] >= 32
        assert "SecretStringTemplate" not in spec  # a plain string: the key itself


def test_client_sync_secret_starts_as_an_empty_json_object(synth: Synthesis) -> None:
    literal = [
        s["Properties"]["SecretString"]
        for s in synth.resources("AWS::SecretsManager::Secret").values()
        if "SecretString" in s["Properties"]
    ]
    assert len(literal) == 1
    assert json.loads(literal[0]) == {}


def test_smtp_password_key_rotates_and_is_retained(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::KMS::Key", 1)
    synth.template.has_resource(
        "AWS::KMS::Key", {"DeletionPolicy": "Retain", "Properties": {"EnableKeyRotation": True, "KeyPolicy": {}}}
    )
