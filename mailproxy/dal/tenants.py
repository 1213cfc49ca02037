"""Tenants and their API keys. A key is shown once and stored only as its SHA-256 hash; the tenant's
client secrets (report/attachment auth) are stored encrypted."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from mailproxy.crypto import SecretBox
from mailproxy.dal.items import from_item, to_item
from mailproxy.models import TenantIn

TENANT_PK = "TENANT"
API_KEY_PK = "APIKEY"
API_KEY_PREFIX = "gmpk_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _secret_context(tenant_id: str, field: str) -> dict[str, str]:
    return {"purpose": f"tenant-{field}", "tenant": tenant_id}


class TenantStore:
    def __init__(self, dynamodb: Any, table: str, secrets_box: Callable[[], SecretBox]) -> None:
        self._db = dynamodb
        self._table = table
        self._secrets = secrets_box

    def put(self, tenant: TenantIn) -> None:
        data = tenant.model_dump(exclude={"client_auth"})
        existing = self.get(tenant.id)
        if existing and existing.get("api_key_hash"):
            data["api_key_hash"] = existing["api_key_hash"]
        if tenant.client_auth is not None:
            auth: dict[str, Any] = {"method": tenant.client_auth.method, "user": tenant.client_auth.user}
            for field in ("token", "password"):
                value = getattr(tenant.client_auth, field)
                if value is not None:
                    auth[f"{field}_enc"] = self._secrets().encrypt(
                        value.get_secret_value(), _secret_context(tenant.id, field)
                    )
            data["client_auth"] = auth
        self._db.put_item(TableName=self._table, Item=to_item({"pk": TENANT_PK, "sk": tenant.id, **data}))

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        answer = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}}, ConsistentRead=True
        )
        return from_item(answer["Item"]) if "Item" in answer else None

    def list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": TENANT_PK}},
        }
        while True:
            answer = self._db.query(**kwargs)
            items.extend(from_item(i) for i in answer["Items"])
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def delete(self, tenant_id: str) -> bool:
        answer = self._db.delete_item(
            TableName=self._table, Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}}, ReturnValues="ALL_OLD"
        )
        old = answer.get("Attributes")
        if old and "api_key_hash" in old:
            self._drop_key(old["api_key_hash"]["S"])
        return old is not None

    def client_secret(self, tenant: dict[str, Any], field: str) -> str | None:
        """The decrypted `token` or `password` of the tenant's client auth."""
        encrypted = (tenant.get("client_auth") or {}).get(f"{field}_enc")
        if encrypted is None:
            return None
        return self._secrets().decrypt(encrypted, _secret_context(tenant["id"], field))

    # -- API keys --------------------------------------------------------------------------------------
    def new_api_key(self, tenant_id: str) -> str | None:
        """Replace the tenant's key with a new one; returns it (shown once) or None if no such tenant."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_hash(key)
        try:
            old = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
                UpdateExpression="SET api_key_hash = :h",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":h": {"S": digest}},
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        self._db.put_item(
            TableName=self._table,
            Item={"pk": {"S": API_KEY_PK}, "sk": {"S": digest}, "tenant_id": {"S": tenant_id}},
        )
        previous = old.get("Attributes", {}).get("api_key_hash")
        if previous:
            self._drop_key(previous["S"])
        return key

    def revoke_api_key(self, tenant_id: str) -> bool:
        try:
            old = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
                UpdateExpression="REMOVE api_key_hash",
                ConditionExpression="attribute_exists(api_key_hash)",
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        self._drop_key(old["Attributes"]["api_key_hash"]["S"])
        return True

    def tenant_of_key(self, key: str) -> str | None:
        if not key.startswith(API_KEY_PREFIX):
            return None
        answer = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": API_KEY_PK}, "sk": {"S": key_hash(key)}}, ConsistentRead=True
        )
        item = answer.get("Item")
        return item["tenant_id"]["S"] if item else None

    def _drop_key(self, digest: str) -> None:
        self._db.delete_item(TableName=self._table, Key={"pk": {"S": API_KEY_PK}, "sk": {"S": digest}})
