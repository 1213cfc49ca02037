"""SMTP accounts, one item per account under its tenant; the password is stored encrypted."""

from __future__ import annotations

from collections.abc import Callable

from mailproxy.crypto import SecretBox
from mailproxy.dal.dynamo import DynamoDBClient, all_items
from mailproxy.dal.items import from_item, to_item
from mailproxy.dal.keys import account_pk
from mailproxy.dal.records import StoredAccount
from mailproxy.models import AccountIn


def _password_context(tenant_id: str, account_id: str, purpose: str = "smtp-password") -> dict[str, str]:
    return {"purpose": purpose, "tenant": tenant_id, "account": account_id}


_IMAP_PURPOSE = "imap-password"  # a PEC account's inbox password, when it is not the SMTP one


class AccountStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, secrets: Callable[[], SecretBox]) -> None:
        self._db = dynamodb
        self._table = table
        self._secrets = secrets  # made on first use: the reporter reads no password and has no key

    def put(self, account: AccountIn) -> None:
        data = account.model_dump(exclude={"password", "imap_password"})
        if account.password is not None:
            data["password_enc"] = self._secrets().encrypt(
                account.password.get_secret_value(), _password_context(account.tenant_id, account.id)
            )
        if account.imap_password is not None:
            data["imap_password_enc"] = self._secrets().encrypt(
                account.imap_password.get_secret_value(),
                _password_context(account.tenant_id, account.id, _IMAP_PURPOSE),
            )
        self._db.put_item(
            TableName=self._table, Item=to_item({"pk": account_pk(account.tenant_id), "sk": account.id, **data})
        )

    def get(self, tenant_id: str, account_id: str) -> StoredAccount | None:
        """The stored account, password still encrypted (`password_enc`)."""
        answer = self._db.get_item(
            TableName=self._table,
            Key={"pk": {"S": account_pk(tenant_id)}, "sk": {"S": account_id}},
            ConsistentRead=True,
        )
        return StoredAccount.from_item(from_item(answer["Item"])) if "Item" in answer else None

    def password(self, account: StoredAccount) -> str | None:
        if account.password_enc is None:
            return None
        return self._secrets().decrypt(account.password_enc, _password_context(account.tenant_id, account.id))

    def imap_credentials(self, account: StoredAccount) -> tuple[str | None, str | None]:
        """A PEC account's inbox user and password, each the SMTP one when it has none of its own."""
        if account.imap_password_enc is None:
            password = self.password(account)
        else:
            context = _password_context(account.tenant_id, account.id, _IMAP_PURPOSE)
            password = self._secrets().decrypt(account.imap_password_enc, context)
        return account.imap_user or account.user, password

    def delete(self, tenant_id: str, account_id: str) -> bool:
        answer = self._db.delete_item(
            TableName=self._table,
            Key={"pk": {"S": account_pk(tenant_id)}, "sk": {"S": account_id}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in answer

    def list(self, tenant_id: str) -> list[StoredAccount]:
        return [
            StoredAccount.from_item(item)
            for item in all_items(
                self._db,
                "query",
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": account_pk(tenant_id)}},
            )
        ]
