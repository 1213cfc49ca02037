"""Message contents (addresses, subject, body, attachments): written once, read by the sender.

Kept apart from the status item so that status writes stay small. Stored compressed in the table's
CONTENT item, or in S3 when larger than the inline limit (a DynamoDB item holds at most 400 KB).
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

from mailproxy.dal.items import from_item, to_item
from mailproxy.dal.keys import CONTENT_SK, message_pk


class ContentStore:
    def __init__(self, dynamodb: Any, s3: Any, table: str, bucket: str | None, inline_limit: int) -> None:
        self._dynamodb = dynamodb
        self._s3 = s3
        self._table = table
        self._bucket = bucket
        self._inline_limit = inline_limit

    def item(self, tenant_id: str, message_id: str, content: dict[str, Any], expires_at: int) -> dict[str, Any]:
        """The CONTENT item to write; puts the content in S3 first when it is too large to inline."""
        packed = zlib.compress(json.dumps(content, separators=(",", ":")).encode(), 6)
        base = {"pk": message_pk(tenant_id, message_id), "sk": CONTENT_SK, "expires_at": expires_at}
        if len(packed) <= self._inline_limit or not self._bucket:
            return to_item({**base, "z": packed})
        key = f"contents/{tenant_id}/{message_id}.json.z"
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=packed, ContentType="application/zlib")
        return to_item({**base, "s3_key": key})

    def put_items(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            self._batch_write(requests)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self._table: requests}
        for attempt in range(8):
            unprocessed = self._dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            pending = unprocessed
            time.sleep(min(1.0, 0.05 * 2**attempt))
        raise RuntimeError("DynamoDB kept items unprocessed; try again")

    def get_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Contents by (tenant, id); a message whose content is missing is absent from the answer."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request_keys = [
                {"pk": {"S": message_pk(t, m)}, "sk": {"S": CONTENT_SK}} for t, m in unique[start : start + 100]
            ]
            pending: dict[str, Any] = {self._table: {"Keys": request_keys, "ConsistentRead": True}}
            for attempt in range(8):
                answer = self._dynamodb.batch_get_item(RequestItems=pending)
                for raw in answer["Responses"].get(self._table, []):
                    item = from_item(raw)
                    _, tenant_id, message_id = item["pk"].split("#", 2)
                    found[(tenant_id, message_id)] = self._unpack(item)
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))  # throttled: back off before asking again
            else:
                raise RuntimeError("DynamoDB kept contents unprocessed (throttled); try again")
        return found

    def _unpack(self, item: dict[str, Any]) -> dict[str, Any]:
        if "s3_key" in item:
            packed = self._s3.get_object(Bucket=self._bucket, Key=item["s3_key"])["Body"].read()
        else:
            packed = item["z"]
        result: dict[str, Any] = json.loads(zlib.decompress(packed))
        return result
