"""Secrets: the API token (generated), the client-sync credentials, and the KMS key for SMTP passwords."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.settings import acknowledge

API_TOKEN_LENGTH = 48  # the application refuses tokens under 32 characters in aws mode

_NO_ROTATION = (
    "{what} is shared with the client application, which must be updated in step with any change; "
    "an automatic rotation would break the client. Rotate it by hand "
    "(aws secretsmanager put-secret-value) together with the client's configuration."
)


class Secrets(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.api_token = secretsmanager.Secret(
            self,
            "ApiToken",
            description="genro-mail-proxy: the X-API-Token clients must send (plain string)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=API_TOKEN_LENGTH, exclude_punctuation=True, include_space=False
            ),
        )
        acknowledge(self.api_token, "AwsSolutions-SMG4", _NO_ROTATION.format(what="The API token"))

        # Signs X-Genro-Mail-ID (bounce correlation) and unsubscribe links: the sender signs, the bouncer and the
        # API verify; never leaves the deployment.
        self.correlation = secretsmanager.Secret(
            self,
            "Correlation",
            description="genro-mail-proxy: the key material of X-Genro-Mail-ID and unsubscribe links (plain string)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        acknowledge(self.correlation, "AwsSolutions-SMG4", _NO_ROTATION.format(what="The correlation key"))

        # Filled in by the operator after deploy; an empty object means "no authentication".
        self.client_sync = secretsmanager.Secret(
            self,
            "ClientSync",
            description='genro-mail-proxy: delivery-report credentials, JSON {"token"?, "user"?, '
            '"password"?, "signing_secret"?}',
            secret_string_value=SecretValue.unsafe_plain_text("{}"),
        )
        acknowledge(
            self.client_sync,
            "AwsSolutions-SMG4",
            _NO_ROTATION.format(what="The client-sync credential (issued by the client application)"),
        )

        self.smtp_password_key = kms.Key(
            self,
            "SmtpPasswordKey",
            description="genro-mail-proxy: encrypts SMTP account passwords stored in DynamoDB",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
