"""Tenants and their API keys. A key is shown once and stored only as its SHA-256 hash; the tenant's
client secrets (report/attachment auth) and its report signing secret are stored encrypted.

No read-modify-write, so a replaced or revoked key never comes back (docs/reliability.md, "Poison reports and
tenants"): `put` is one UpdateItem that leaves the key hash and the signing secret alone; a new key and a
revocation are transactions conditional on the hash they replace, retried on a race. The tenant item's
`api_key_hash` is the truth: a lookup item `APIKEY#<hash>` counts only while its hash is the tenant's current
one (`tenant_of_key`)."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from mailproxy.crypto import SecretBox
from mailproxy.dal.dynamo import DynamoDBClient, all_items, write_if
from mailproxy.dal.items import from_item, to_item
from mailproxy.dal.records import ClientCredentials, StoredTenant
from mailproxy.models import TenantIn

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

SIGNING_SECRET_PREFIX = "gmps_"  # noqa: S105 - a prefix, not a secret
_RACE_RETRIES = 20
_TENANT_FIELDS = (
    "id",
    "name",
    "client_base_url",
    "client_sync_path",
    "client_attachment_path",
    "active",
    "suppression",
)

TENANT_PK = "TENANT"
API_KEY_PK = "APIKEY"
API_KEY_PREFIX = "gmpk_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _secret_context(tenant_id: str, field: str) -> dict[str, str]:
    return {"purpose": f"tenant-{field}", "tenant": tenant_id}


class TenantStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, secrets_box: Callable[[], SecretBox]) -> None:
        self._db = dynamodb
        self._table = table
        self._secrets = secrets_box

    def put(self, tenant: TenantIn, *, must_exist: bool = False) -> bool:
        """Create or update the tenant's fields in one UpdateItem; its API key hash and signing secret are
        not touched, so a rotation racing this write is never undone. `must_exist`: only an update (False
        when the tenant does not exist, e.g. deleted meanwhile: it is not recreated)."""
        data: dict[str, Any] = {name: getattr(tenant, name) for name in _TENANT_FIELDS}
        if tenant.client_auth is not None:
            auth: dict[str, Any] = {"method": tenant.client_auth.method, "user": tenant.client_auth.user}
            for field in ("token", "password"):
                value = getattr(tenant.client_auth, field)
                if value is not None:
                    auth[f"{field}_enc"] = self._secrets().encrypt(
                        value.get_secret_value(), _secret_context(tenant.id, field)
                    )
            data["client_auth"] = {k: v for k, v in auth.items() if v is not None}
        else:
            data["client_auth"] = None
        data["large_file_config"] = tenant.large_file_config.model_dump() if tenant.large_file_config else None
        names = {f"#{n}": n for n in data}
        present = {n: v for n, v in data.items() if v is not None}
        update = "SET " + ", ".join(f"#{n} = :{n}" for n in present)
        absent = [n for n, v in data.items() if v is None]
        if absent:
            update += " REMOVE " + ", ".join(f"#{n}" for n in absent)
        condition = {"ConditionExpression": "attribute_exists(pk)"} if must_exist else {}
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant.id}},
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":{n}": v for n, v in to_item(present).items()},
            **condition,
        ).held

    def get(self, tenant_id: str) -> StoredTenant | None:
        answer = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}}, ConsistentRead=True
        )
        return StoredTenant.from_item(from_item(answer["Item"])) if "Item" in answer else None

    def list(self) -> list[StoredTenant]:
        return [
            StoredTenant.from_item(item)
            for item in all_items(
                self._db,
                "query",
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": TENANT_PK}},
            )
        ]

    def delete(self, tenant_id: str) -> bool:
        answer = self._db.delete_item(
            TableName=self._table, Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}}, ReturnValues="ALL_OLD"
        )
        old = answer.get("Attributes")
        if old and "api_key_hash" in old:
            self._drop_key(old["api_key_hash"]["S"])
        return old is not None

    def credentials(self, tenant: StoredTenant) -> ClientCredentials:
        """The tenant's client auth decrypted: what the reporter and the attachment fetcher send."""
        auth = tenant.client_auth
        if auth is None or auth.method == "none":
            return ClientCredentials()
        if auth.method == "bearer":
            return ClientCredentials(token=self._decrypt(tenant, "token", auth.token_enc))
        return ClientCredentials(user=auth.user, password=self._decrypt(tenant, "password", auth.password_enc))

    def _decrypt(self, tenant: StoredTenant, field: str, encrypted: str | None) -> str | None:
        return None if encrypted is None else self._secrets().decrypt(encrypted, _secret_context(tenant.id, field))

    # -- report signing secret -------------------------------------------------------------------------
    def new_signing_secret(self, tenant_id: str) -> str | None:
        """Generate (or rotate) the tenant's report signing secret; returned once, stored encrypted.
        None if there is no such tenant."""
        secret = SIGNING_SECRET_PREFIX + secrets.token_urlsafe(32)
        encrypted = self._secrets().encrypt(secret, _secret_context(tenant_id, "signing_secret"))
        stored = write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
            UpdateExpression="SET signing_secret_enc = :s",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":s": {"S": encrypted}},
        )
        return secret if stored.held else None

    def delete_signing_secret(self, tenant_id: str) -> bool:
        return write_if(
            self._db.update_item,
            TableName=self._table,
            Key={"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
            UpdateExpression="REMOVE signing_secret_enc",
            ConditionExpression="attribute_exists(signing_secret_enc)",
        ).held

    def signing_secret(self, tenant: StoredTenant) -> str | None:
        return self._decrypt(tenant, "signing_secret", tenant.signing_secret_enc)

    # -- API keys --------------------------------------------------------------------------------------
    def new_api_key(self, tenant_id: str, expires_at: int | None = None) -> str | None:
        """Replace the tenant's key with a new one; returns it (shown once) or None if no such tenant.
        `expires_at` (unix seconds, None: never) is written with the hash, so a key and its expiry change
        together; the caller checks it is in the future (`ApiKeyRequest`), the store takes it as given.
        One transaction, conditional on the hash it replaces: the tenant's hash, the new lookup item and
        the removal of the old one change together, and a concurrent rotation makes this one start over."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_hash(key)
        # Not `expires_at`: that is the config table's TTL attribute, which would delete the tenant item.
        if expires_at is None:
            update, expiry = "SET api_key_hash = :h REMOVE api_key_expires_at", {}
        else:
            update, expiry = "SET api_key_hash = :h, api_key_expires_at = :e", {":e": {"N": str(int(expires_at))}}
        for _ in range(_RACE_RETRIES):
            tenant = self.get(tenant_id)
            if tenant is None:
                return None
            previous = tenant.api_key_hash
            condition, named = _hash_is(previous)
            actions: builtins.list[TransactWriteItemTypeDef] = [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
                        "UpdateExpression": update,
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": {":h": {"S": digest}, **expiry, **named},
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {"pk": {"S": API_KEY_PK}, "sk": {"S": digest}, "tenant_id": {"S": tenant_id}},
                    }
                },
            ]
            if previous:
                actions.append(self._key_delete(previous))
            if self._transact(actions):
                return key
        raise RuntimeError("API key rotation kept racing other rotations; retry")

    def revoke_api_key(self, tenant_id: str) -> bool:
        for _ in range(_RACE_RETRIES):
            tenant = self.get(tenant_id)
            previous = tenant.api_key_hash if tenant else None
            if not previous:
                return False
            condition, named = _hash_is(previous)
            actions: builtins.list[TransactWriteItemTypeDef] = [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": TENANT_PK}, "sk": {"S": tenant_id}},
                        "UpdateExpression": "REMOVE api_key_hash, api_key_expires_at",
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": named,
                    }
                },
                self._key_delete(previous),
            ]
            if self._transact(actions):
                return True
        raise RuntimeError("API key revocation kept racing other rotations; retry")

    def tenant_of_key(self, key: str) -> StoredTenant | None:
        """The tenant whose *current* key this is (its item), or None. A lookup item left by a race or an
        interrupted rotation does not count: its hash must be the tenant's `api_key_hash`. An expired key
        is still answered (`StoredTenant.key_expired` tells), so that the caller can say it has expired."""
        if not key.startswith(API_KEY_PREFIX):
            return None
        digest = key_hash(key)
        answer = self._db.get_item(
            TableName=self._table, Key={"pk": {"S": API_KEY_PK}, "sk": {"S": digest}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if not item:
            return None
        tenant = self.get(item["tenant_id"]["S"])
        if tenant is None or not hmac.compare_digest(tenant.api_key_hash or "", digest):
            return None
        return tenant

    def _key_delete(self, digest: str) -> TransactWriteItemTypeDef:
        return {"Delete": {"TableName": self._table, "Key": {"pk": {"S": API_KEY_PK}, "sk": {"S": digest}}}}

    def _transact(self, actions: builtins.list[TransactWriteItemTypeDef]) -> bool:
        """True when applied; False when a condition failed or another transaction interfered (retry)."""
        try:
            self._db.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("TransactionCanceledException", "TransactionConflict"):
                return False
            raise
        return True

    def _drop_key(self, digest: str) -> None:
        self._db.delete_item(TableName=self._table, Key={"pk": {"S": API_KEY_PK}, "sk": {"S": digest}})


def _hash_is(previous: str | None) -> tuple[str, dict[str, Any]]:
    if previous:
        return "attribute_exists(pk) AND api_key_hash = :old", {":old": {"S": previous}}
    return "attribute_exists(pk) AND attribute_not_exists(api_key_hash)", {}
