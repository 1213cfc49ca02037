"""SMTP passwords at rest: KMS in AWS, a local Fernet key in local mode; the context binds each secret to
its record."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mailproxy.crypto import DecryptionError, KmsSecretBox, LocalSecretBox, new_local_key

CONTEXT = {"purpose": "smtp-password", "tenant": "default", "account": "smtp-main"}


def test_local_box_round_trips_and_refuses_another_record() -> None:
    box = LocalSecretBox(new_local_key())
    sealed = box.encrypt("app-specific-password", CONTEXT)
    assert "app-specific-password" not in sealed
    assert box.decrypt(sealed, CONTEXT) == "app-specific-password"
    with pytest.raises(DecryptionError):
        box.decrypt(sealed, {**CONTEXT, "account": "other"})
    with pytest.raises(DecryptionError):
        LocalSecretBox(new_local_key()).decrypt(sealed, CONTEXT)


def test_kms_box_round_trips_binds_the_context_and_decrypts_once_per_secret() -> None:
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["Arn"]
        calls: list[str] = []

        def count(**kwargs: Any) -> None:
            calls.append(kwargs["event_name"])

        kms.meta.events.register("before-call.kms.Decrypt", count)
        box = KmsSecretBox(kms, key_id)
        sealed = box.encrypt("app-specific-password", CONTEXT)
        assert sealed.startswith("kms:") and "app-specific-password" not in sealed
        assert box.decrypt(sealed, CONTEXT) == "app-specific-password"
        assert box.decrypt(sealed, CONTEXT) == "app-specific-password"
        assert len(calls) == 1
        with pytest.raises(ClientError):
            box.decrypt(sealed, {**CONTEXT, "account": "other"})
