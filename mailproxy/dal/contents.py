"""Message contents (addresses, subject, body, attachments): written once, read by the sender.

Kept apart from the status item so that status writes stay small. Stored compressed in the table's
CONTENT item, or in S3 when larger than the inline limit (a DynamoDB item holds at most 400 KB).
"""

from __future__ import annotations

import json
import uuid
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from mailproxy.dal.dynamo import DynamoDBClient, batch_get, batch_write, write_if
from mailproxy.dal.items import to_item
from mailproxy.dal.keys import CONTENT_SK, message_pk

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

CONTENTS_PREFIX = "contents/"
DOWNLOADS_PREFIX = f"{CONTENTS_PREFIX}downloads/"  # under contents/: the same lifecycle rule removes them
RAW_PREFIX = f"{CONTENTS_PREFIX}raw/"  # the MIME as built (sandbox, keep_raw_seconds): the contents' lifecycle
RAW_KEEP_UNTIL = "keep-until"  # S3 user metadata: epoch seconds after which /raw answers 404
MAX_PRESIGN_SECONDS = 7 * 86_400  # SigV4: a presigned URL lasts at most 7 days
EXPIRE_TAG = "gmp-expire"  # the bucket's lifecycle rule expires only objects tagged yes


class ContentStore:
    def __init__(
        self, dynamodb: DynamoDBClient, s3: S3Client, table: str, bucket: str | None, inline_limit: int
    ) -> None:
        self._dynamodb = dynamodb
        self._s3 = s3
        self._table = table
        self._bucket = bucket or ""  # none: every content stays inline
        self._inline_limit = inline_limit
        # Contents read by this process that need a step when their message ends (ended()).
        self.offloaded: set[tuple[str, str]] = set()
        self.unexpiring: set[tuple[str, str]] = set()

    def item(self, tenant_id: str, message_id: str, content: dict[str, Any], expires_at: int | None) -> dict[str, Any]:
        """The CONTENT item to write; puts the content in S3 first when it is too large to inline.
        `expires_at` None: kept until the message is released (suspended, or due beyond the retention)."""
        packed = zlib.compress(json.dumps(content, separators=(",", ":")).encode(), 6)
        base: dict[str, Any] = {"pk": message_pk(tenant_id, message_id), "sk": CONTENT_SK}
        if expires_at is not None:
            base["expires_at"] = expires_at
        if len(packed) <= self._inline_limit or not self._bucket:
            return to_item({**base, "z": packed})
        key = content_key(tenant_id, message_id)
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=packed,
            ContentType="application/zlib",
            Tagging=f"{EXPIRE_TAG}={'yes' if expires_at is not None else 'no'}",
        )
        return to_item({**base, "s3_key": key})

    def hold(self, tenant_id: str, message_id: str) -> None:
        """Keep a content that must outlive the retention (its message is suspended): no TTL, no lifecycle."""
        stored = self._update(tenant_id, message_id, "REMOVE expires_at", {})
        if stored and "s3_key" in stored:
            self._s3.put_object_tagging(
                Bucket=self._bucket, Key=stored["s3_key"], Tagging={"TagSet": [{"Key": EXPIRE_TAG, "Value": "no"}]}
            )

    def release(self, tenant_id: str, message_id: str, expires_at: int) -> None:
        """The retention starts again from now (activation): TTL set, the S3 object rewritten (its age is
        what the lifecycle rule counts) and tagged for expiry again."""
        stored = self._update(tenant_id, message_id, "SET expires_at = :exp", {":exp": {"N": str(expires_at)}})
        if stored and "s3_key" in stored:
            key = stored["s3_key"]
            self._s3.copy_object(
                Bucket=self._bucket,
                Key=key,
                CopySource={"Bucket": self._bucket, "Key": key},
                MetadataDirective="REPLACE",
                ContentType="application/zlib",
                TaggingDirective="REPLACE",
                Tagging=f"{EXPIRE_TAG}=yes",
            )

    def _update(
        self, tenant_id: str, message_id: str, expression: str, attribute_values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Update an existing CONTENT item; its new image, or None when there is none."""
        written = write_if(
            self._dynamodb.update_item,
            TableName=self._table,
            Key={"pk": {"S": message_pk(tenant_id, message_id)}, "sk": {"S": CONTENT_SK}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ReturnValues="ALL_NEW",
            **({"ExpressionAttributeValues": attribute_values} if attribute_values else {}),
        )
        return written.attributes if written.held else None

    def ended(self, tenant_id: str, message_id: str, expires_at: int) -> None:
        """The message of a content read by this process has ended: a content kept without expiry gets
        one, and its S3 copy is deleted (a DELETE costs nothing; the lifecycle rule is the safety net)."""
        key = (tenant_id, message_id)
        if key in self.unexpiring:
            self.unexpiring.discard(key)
            self._update(tenant_id, message_id, "SET expires_at = :exp", {":exp": {"N": str(expires_at)}})
        if key in self.offloaded:
            self.offloaded.discard(key)
            self._s3.delete_object(Bucket=self._bucket, Key=content_key(tenant_id, message_id))

    def put_download(self, tenant_id: str, message_id: str, filename: str, data: bytes, ttl_days: int) -> str:
        """Store a large attachment for download (large-file `rewrite`); its presigned GET URL, valid for
        `ttl_days` but at most 7 days (the SigV4 limit, and no longer than the signing credentials live).
        Tagged for expiry: the bucket's lifecycle rule removes it after the content retention."""
        if not self._bucket:
            raise ValueError("no contents bucket (GMP_BODY_BUCKET) to upload to")
        safe_name = filename.replace("/", "_").replace("\\", "_")
        key = f"{DOWNLOADS_PREFIX}{tenant_id}/{message_id}/{uuid.uuid4().hex}/{safe_name}"
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=data,
            ContentDisposition=f"attachment; filename*=UTF-8''{quote(filename)}",
            Tagging=f"{EXPIRE_TAG}=yes",
        )
        url: str = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=min(ttl_days * 86_400, MAX_PRESIGN_SECONDS),
        )
        return url

    def put_raw(self, tenant_id: str, message_id: str, data: bytes, keep_until: int) -> None:
        """Keep the MIME of a message as it was built (sandbox, or an account's keep_raw_seconds), for
        GET /messages/{id}/raw until `keep_until` (epoch seconds); tagged for expiry like the contents."""
        if not self._bucket:
            raise ValueError("no contents bucket (GMP_BODY_BUCKET) to keep the raw message in")
        self._s3.put_object(
            Bucket=self._bucket,
            Key=raw_key(tenant_id, message_id),
            Body=data,
            ContentType="message/rfc822",
            Metadata={RAW_KEEP_UNTIL: str(keep_until)},
            Tagging=f"{EXPIRE_TAG}=yes",
        )

    def raw(self, tenant_id: str, message_id: str, now: int) -> bytes | None:
        """The kept MIME of a message; None when none was kept or its time is over."""
        if not self._bucket:
            return None
        try:
            stored = self._s3.get_object(Bucket=self._bucket, Key=raw_key(tenant_id, message_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        if int(stored.get("Metadata", {}).get(RAW_KEEP_UNTIL, "0")) < now:
            return None  # the lifecycle rule counts days; a shorter keep_raw_seconds ends here
        data: bytes = stored["Body"].read()
        return data

    def put_items(self, items: list[dict[str, Any]]) -> None:
        batch_write(self._dynamodb, self._table, [{"PutRequest": {"Item": item}} for item in items])

    def get_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Contents by (tenant, id); a message whose content is missing is absent from the answer."""
        request_keys = [{"pk": {"S": message_pk(t, m)}, "sk": {"S": CONTENT_SK}} for t, m in keys]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for item in batch_get(self._dynamodb, self._table, request_keys, consistent=True):
            _, tenant_id, message_id = item["pk"].split("#", 2)
            content = self._unpack(item)
            if content is not None:
                found[(tenant_id, message_id)] = content
        return found

    def _unpack(self, item: dict[str, Any]) -> dict[str, Any] | None:
        _, tenant_id, message_id = item["pk"].split("#", 2)
        if "expires_at" not in item:
            self.unexpiring.add((tenant_id, message_id))
        if "s3_key" in item:
            try:
                packed = self._s3.get_object(Bucket=self._bucket, Key=item["s3_key"])["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None  # gone for good: the message ends ("content is missing"), it does not loop
                raise
            self.offloaded.add((tenant_id, message_id))
        else:
            packed = item["z"]
        result: dict[str, Any] = json.loads(zlib.decompress(packed))
        return result


def content_key(tenant_id: str, message_id: str) -> str:
    return f"{CONTENTS_PREFIX}{tenant_id}/{message_id}.json.z"


def raw_key(tenant_id: str, message_id: str) -> str:
    return f"{RAW_PREFIX}{tenant_id}/{message_id}.eml"
