"""The deployment's bounce mailbox (one config item, `pk = BOUNCE`, `sk = deployment`); its IMAP password is
stored encrypted with the secret box of the SMTP passwords. `reset_mailbox_state` forgets what the bounce
poller remembers of the mailbox (its item `pk = MAILBOX`, `sk = deployment`: UIDVALIDITY, last UID), so that
its next run reads the mailbox afresh; mail it handled is moved or flagged there, so nothing is handled twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailproxy.crypto import SecretBox
from mailproxy.dal.dynamo import DynamoDBClient
from mailproxy.dal.items import from_item, to_item
from mailproxy.dal.mailbox_state import MAILBOX_PK
from mailproxy.dal.records import StoredBounceConfig
from mailproxy.models import BounceConfigIn

BOUNCE_CONFIG_KEY = {"pk": {"S": "BOUNCE"}, "sk": {"S": "deployment"}}
BOUNCE_MAILBOX = "deployment"  # the bounce mailbox's key in `MailboxStateStore` (PEC inboxes have their own)
MAILBOX_STATE_KEY = {"pk": {"S": MAILBOX_PK}, "sk": {"S": BOUNCE_MAILBOX}}
_PASSWORD_CONTEXT = {"purpose": "bounce-imap-password"}


class BounceConfigStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, secrets: Callable[[], SecretBox]) -> None:
        self._db = dynamodb
        self._table = table
        self._secrets = secrets

    def get(self) -> StoredBounceConfig:
        """The stored configuration, or the defaults (disabled) when none was ever set."""
        answer = self._db.get_item(TableName=self._table, Key=BOUNCE_CONFIG_KEY, ConsistentRead=True)
        return StoredBounceConfig.from_item(from_item(answer["Item"])) if "Item" in answer else StoredBounceConfig()

    @staticmethod
    def merged(stored: StoredBounceConfig, changes: BounceConfigIn) -> StoredBounceConfig:
        """`stored` with the fields `changes` sets (not null); the password is left to `put`."""
        update = {
            name: value for name, value in changes.model_dump(exclude={"imap_password"}).items() if value is not None
        }
        return stored.model_copy(update=update)

    def put(self, config: StoredBounceConfig, password: str | None) -> None:
        """Write the whole configuration; `password` None keeps the stored one (`config.imap_password_enc`)."""
        data: dict[str, Any] = config.model_dump()
        if password is not None:
            data["imap_password_enc"] = self._secrets().encrypt(password, _PASSWORD_CONTEXT)
        self._db.put_item(TableName=self._table, Item={**BOUNCE_CONFIG_KEY, **to_item(data)})

    def password(self, config: StoredBounceConfig) -> str | None:
        if config.imap_password_enc is None:
            return None
        return self._secrets().decrypt(config.imap_password_enc, _PASSWORD_CONTEXT)

    def reset_mailbox_state(self) -> None:
        self._db.delete_item(TableName=self._table, Key=MAILBOX_STATE_KEY)
