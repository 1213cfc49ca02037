"""The rehearsal's IAM matcher (rehearsal/policy.py): wildcards, NotAction/NotResource, explicit Deny."""

from __future__ import annotations

import pytest

from rehearsal.policy import Statement, action_matches, decide, resource_matches, statements_of

TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/Messages"


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("s3:GetObject", "s3:GetObject", True),
        ("s3:getobject", "S3:GetObject", True),  # case-insensitive
        ("s3:Get*", "s3:GetObjectTagging", True),
        ("s3:Get*", "s3:PutObject", False),
        ("s3:*", "s3:PutObject", True),
        ("*", "kms:Decrypt", True),
        ("kms:?ecrypt", "kms:Decrypt", True),
        ("kms:?ecrypt", "kms:Encrypt", False),  # ? is exactly one character
        ("sqs:SendMessage", "sqs:SendMessageBatch", False),  # no implicit prefix match
        ("dynamodb:Query", "dynamodb:QueryX", False),
    ],
)
def test_action_wildcards(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("*", "anything", True),
        (TABLE, TABLE, True),
        (TABLE, TABLE + "/index/by_tenant", False),  # the table ARN does not cover its indexes
        (TABLE + "/index/*", TABLE + "/index/by_tenant", True),
        (TABLE + "/index/*", TABLE, False),
        ("arn:aws:s3:::bucket/contents/*", "arn:aws:s3:::bucket/contents/t1/m1.json", True),
        ("arn:aws:s3:::bucket/contents/*", "arn:aws:s3:::bucket/other/m1.json", False),
        ("arn:aws:s3:::bucket/contents/*", "arn:aws:s3:::BUCKET/contents/m1.json", False),  # case-sensitive
        ("arn:aws:lambda:*:*:function:rep:*", "arn:aws:lambda:eu-west-1:1:function:rep:live", True),
        ("arn:aws:sqs:eu-west-1:1:q?", "arn:aws:sqs:eu-west-1:1:q1", True),
        ("arn:aws:sqs:eu-west-1:1:q.", "arn:aws:sqs:eu-west-1:1:qx", False),  # dots are literal
    ],
)
def test_resource_wildcards(pattern: str, resource: str, expected: bool) -> None:
    assert resource_matches(pattern, resource) is expected


def test_allow_needs_action_and_resource() -> None:
    statements = [Statement("Allow", actions=("dynamodb:GetItem",), resources=(TABLE,))]
    assert decide(statements, "dynamodb:GetItem", TABLE).allowed
    assert not decide(statements, "dynamodb:PutItem", TABLE).allowed
    assert not decide(statements, "dynamodb:GetItem", TABLE + "2").allowed
    assert not decide([], "dynamodb:GetItem", TABLE).allowed  # implicit deny


def test_explicit_deny_wins() -> None:
    statements = [
        Statement("Allow", actions=("s3:*",), resources=("*",)),
        Statement("Deny", actions=("s3:DeleteObject",), resources=("arn:aws:s3:::b/*",)),
    ]
    assert decide(statements, "s3:GetObject", "arn:aws:s3:::b/k").allowed
    decision = decide(statements, "s3:DeleteObject", "arn:aws:s3:::b/k")
    assert not decision.allowed
    assert decision.denied_by is statements[1]


def test_not_action_and_not_resource() -> None:
    everything_but_iam = Statement("Allow", not_actions=("iam:*",), resources=("*",))
    assert decide([everything_but_iam], "s3:GetObject", "x").allowed
    assert not decide([everything_but_iam], "iam:CreateUser", "x").allowed
    outside_secret = Statement("Allow", actions=("secretsmanager:*",), not_resources=("arn:secret:admin*",))
    assert decide([outside_secret], "secretsmanager:GetSecretValue", "arn:secret:app").allowed
    assert not decide([outside_secret], "secretsmanager:GetSecretValue", "arn:secret:admin-1").allowed


def test_decision_lists_every_allowing_statement() -> None:
    first = Statement("Allow", actions=("sqs:SendMessage",), resources=("*",), index=0)
    second = Statement("Allow", actions=("sqs:*",), resources=("arn:aws:sqs:r:1:q",), index=1)
    assert decide([first, second], "sqs:SendMessage", "arn:aws:sqs:r:1:q").allowed_by == (first, second)


def test_statements_of_a_document() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:key", "Sid": "Dec"},
            {"Effect": "Allow", "Action": ["a:B", "a:C"], "Resource": ["r1", "r2"], "Condition": {"x": {}}},
        ],
    }
    first, second = statements_of(document, origin="Policy1")
    assert first == Statement("Allow", ("kms:Decrypt",), ("arn:key",), sid="Dec", origin="Policy1", index=0)
    assert first.label == "Policy1[0] (Dec)"
    assert second.actions == ("a:B", "a:C") and second.resources == ("r1", "r2") and second.has_condition
    (single,) = statements_of({"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}, origin="P")
    assert single.effect == "Deny"
