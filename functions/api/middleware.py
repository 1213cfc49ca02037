"""The request body limit of the deployed stack, enforced by the app itself so that local runs refuse what AWS would."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

MAX_REQUEST_BYTES = 6_291_456  # Lambda's synchronous payload limit (6 MB); API Gateway's own is 10 MB
TOO_LARGE = (
    f"request body over {MAX_REQUEST_BYTES} bytes (6 MB): deployed, API Gateway and Lambda would refuse it. "
    "Send large attachments by reference (storage_path: an https URL, the tenant's attachment endpoint or "
    "s3://), fetched by the sender at send time."
)


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail=TOO_LARGE)


class BodyLimit:
    """Refuse what the deployed stack would: a Content-Length or a streamed body over 6 MB is a 413 with a
    JSON message, locally as in AWS."""

    def __init__(self, app: Any, limit: int = MAX_REQUEST_BYTES) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self._limit):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    raise _BodyTooLarge()
            return message

        async def watching(message: Any) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self._app(scope, limited, watching)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"ok": False, "error": TOO_LARGE}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
