"""Tables and GSIs exactly as docs/design.md; the contents bucket locked down with a lifecycle."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from tests.infrastructure.conftest import Synthesis

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]


def _tables(synth: Synthesis) -> tuple[dict[str, Any], dict[str, Any]]:
    tables = list(synth.resources("AWS::DynamoDB::Table").values())
    assert len(tables) == 2
    with_indexes = [t for t in tables if t["Properties"].get("GlobalSecondaryIndexes")]
    without = [t for t in tables if not t["Properties"].get("GlobalSecondaryIndexes")]
    assert len(with_indexes) == 1 and len(without) == 1
    return with_indexes[0], without[0]


def test_both_tables_are_on_demand_with_pitr_ttl_and_pk_sk(synth: Synthesis) -> None:
    for table in _tables(synth):
        props = table["Properties"]
        assert props["KeySchema"] == KEYS
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        assert table["DeletionPolicy"] == "Retain"


def test_messages_table_has_the_two_design_indexes(synth: Synthesis) -> None:
    # A tenant's messages are listed from listing items in the table itself (mailproxy/dal/tenant_index.py)
    messages, _ = _tables(synth)
    indexes = {i["IndexName"]: i for i in messages["Properties"]["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"pending_reports", "due"}

    def keys(name: str) -> list[tuple[str, str]]:
        return [(k["AttributeName"], k["KeyType"]) for k in indexes[name]["KeySchema"]]

    assert keys("pending_reports") == [("rpt_pk", "HASH"), ("rpt_sk", "RANGE")]
    assert indexes["pending_reports"]["Projection"] == {"ProjectionType": "ALL"}
    assert keys("due") == [("due_pk", "HASH"), ("due_ts", "RANGE")]
    assert indexes["due"]["Projection"]["ProjectionType"] == "INCLUDE"
    assert sorted(indexes["due"]["Projection"]["NonKeyAttributes"]) == ["account_id", "id", "priority", "tenant_id"]

    types = {a["AttributeName"]: a["AttributeType"] for a in messages["Properties"]["AttributeDefinitions"]}
    assert types == {
        "pk": "S",
        "sk": "S",
        "rpt_pk": "S",
        "rpt_sk": "S",
        "due_pk": "S",
        "due_ts": "N",
    }


def test_contents_bucket_is_encrypted_private_and_expires_contents(synth: Synthesis) -> None:
    synth.template.resource_count_is("AWS::S3::Bucket", 1)
    synth.template.has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    },
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "LifecycleConfiguration": {
                        "Rules": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "Prefix": "contents/",
                                        "ExpirationInDays": synth.context["body_retention_days"],
                                        # held contents (suspended, far-deferred) are tagged "no"
                                        "TagFilters": [{"Key": "gmp-expire", "Value": "yes"}],
                                        "Status": "Enabled",
                                    }
                                )
                            ]
                        )
                    },
                }
            ),
        },
    )


def test_contents_bucket_denies_requests_without_tls(synth: Synthesis) -> None:
    synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )
