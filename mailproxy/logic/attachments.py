"""Attachments given by reference, fetched by the sender at send time (so they may exceed the API's
request limit): an http(s) URL, the tenant's attachment endpoint, or an S3 object of an allowed bucket."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from mailproxy.config import names
from mailproxy.crypto import SecretBox
from mailproxy.logic.http_auth import HttpAuth
from mailproxy.logic.http_guard import HttpPolicy, HttpRefused, HttpUnavailable
from mailproxy.logic.mime import Download
from mailproxy.models import LargeFileConfig
from mailproxy.services import Services


def tenant_s3_prefix(template: str, tenant_id: str) -> str:
    """Where a tenant's `s3://` attachments must lie in a shared bucket: the template with its tenant."""
    return template.replace("{tenant_id}", tenant_id)


class FetchFailed(Exception):
    """`temporary`: try again later (deferred); otherwise the message ends in error."""

    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


class AttachmentFetcher:
    """One per sender batch: identical `content_md5` (or `{MD5:…}` filename marker, which ingestion turns
    into `content_md5`) within the batch is fetched once."""

    def __init__(self, services: Services, *, policy: HttpPolicy) -> None:
        self._services = services
        self._settings = services.settings
        self._policy = policy
        self._by_md5: dict[str, bytes] = {}

    def content(self, tenant_id: str, attachment: dict[str, Any]) -> bytes:
        if attachment.get("content") is not None:
            return base64.b64decode(attachment["content"])
        md5 = (attachment.get("content_md5") or "").lower()
        if md5 and md5 in self._by_md5:
            return self._by_md5[md5]
        mode = attachment.get("fetch_mode") or "endpoint"
        path = attachment["storage_path"]
        if mode == "http_url":
            data = self._http("GET", path, _auth(self._services.secret_box, tenant_id, attachment.get("auth")), None)
        elif mode == "s3":
            data = self._s3(tenant_id, path)
        else:
            data = self._endpoint(tenant_id, path, anonymous=(attachment.get("auth") or {}).get("method") == "none")
        if md5:
            if hashlib.md5(data).hexdigest() != md5:  # noqa: S324 - an integrity check the client asked for
                raise FetchFailed(f"attachment {attachment['filename']!r}: content_md5 does not match", temporary=False)
            self._by_md5[md5] = data
        return data

    def _endpoint(self, tenant_id: str, storage_path: str, *, anonymous: bool) -> bytes:
        """POST to the tenant's attachment URL with its client_auth, or with none (`auth.method: "none"`)."""
        tenant = self._services.tenants.get(tenant_id)
        url = tenant.attachment_url if tenant else None
        if tenant is None or url is None:
            raise FetchFailed("attachment endpoint: the tenant has no client_base_url", temporary=False)
        if anonymous:
            auth = HttpAuth()
        else:
            credentials = self._services.tenants.credentials(tenant)
            auth = HttpAuth(token=credentials.token, user=credentials.user, password=credentials.password)
        body = json.dumps({"storage_path": storage_path}).encode()
        data = self._http("POST", url, auth, body)
        return data

    def _http(self, method: str, url: str, auth: HttpAuth, body: bytes | None) -> bytes:
        """Through the guarded client: the name resolved once and vetted, the connection made to that
        address (no DNS-rebinding window), no redirect followed, https in aws mode."""
        # Not auth.check(): a stored token unfit for a header is refused by the guard, naming the header, and
        # ends its message (docs/reliability.md, "SSRF guard"); Basic credentials travel base64-encoded.
        headers = dict(auth.headers())
        if body is not None:
            headers["Content-Type"] = "application/json"
        limit = self._settings.attachment_max_bytes
        try:
            answer = self._policy.request(
                method, url, headers=headers, body=body, timeout=self._settings.attachment_timeout, max_bytes=limit
            )
        except HttpRefused as exc:
            raise FetchFailed(f"attachment URL refused: {exc}", temporary=False) from None
        except HttpUnavailable as exc:
            raise FetchFailed(f"attachment fetch failed: {exc}", temporary=True) from None
        if answer.is_redirect:
            raise FetchFailed(f"attachment fetch: HTTP {answer.status} (redirects are not followed)", temporary=False)
        if not answer.ok:
            temporary = answer.status >= 500 or answer.status in (408, 425, 429)
            raise FetchFailed(f"attachment fetch: HTTP {answer.status}", temporary=temporary)
        if len(answer.body) > limit:
            raise FetchFailed(f"attachment larger than {limit} bytes", temporary=False)
        return answer.body

    def _s3(self, tenant_id: str, storage_path: str) -> bytes:
        bucket, _, key = storage_path.removeprefix("s3://").partition("/")
        if bucket not in names(self._settings.attachment_buckets):
            raise FetchFailed(f"attachment bucket {bucket!r} is not allowed (GMP_ATTACHMENT_BUCKETS)", temporary=False)
        prefix = tenant_s3_prefix(self._settings.attachment_s3_prefix, tenant_id)
        if not key.startswith(prefix):
            raise FetchFailed(
                f"attachment s3://{bucket}/{key}: not under this tenant's prefix {prefix!r} (GMP_ATTACHMENT_S3_PREFIX)",
                temporary=False,
            )
        limit = self._settings.attachment_max_bytes
        try:
            answer = self._services.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "403"):
                raise FetchFailed(f"attachment s3://{bucket}/{key}: {code}", temporary=False) from None
            raise FetchFailed(f"attachment s3://{bucket}/{key}: {code}", temporary=True) from None
        except BotoCoreError as exc:
            raise FetchFailed(f"attachment s3://{bucket}/{key}: {exc}", temporary=True) from None
        if int(answer.get("ContentLength", 0)) > limit:
            raise FetchFailed(f"attachment larger than {limit} bytes", temporary=False)
        data: bytes = answer["Body"].read(limit + 1)
        return data


class LargeFiles:
    """One per sender batch: each tenant's `large_file_config` (read once per batch) applied to a fetched
    attachment above its `max_size_mb` (docs/tenants.md, "Large attachments")."""

    def __init__(self, services: Services, *, logger: Logger, metrics: Metrics) -> None:
        self._services = services
        self._logger = logger
        self._metrics = metrics
        self._configs: dict[str, LargeFileConfig | None] = {}

    def config(self, tenant_id: str) -> LargeFileConfig | None:
        """The tenant's configuration when enabled, else None."""
        if tenant_id not in self._configs:
            tenant = self._services.tenants.get(tenant_id)
            config = tenant.large_file_config if tenant else None
            self._configs[tenant_id] = config if config is not None and config.enabled else None
        return self._configs[tenant_id]

    def offload(self, tenant_id: str, message_id: str, filename: str, data: bytes) -> Download | None:
        """An attachment over the tenant's limit: None to attach it anyway (`warn`, or a `rewrite` whose
        upload failed), a Download to link instead (`rewrite`); `reject` raises FetchFailed (no retry)."""
        config = self.config(tenant_id)
        if config is None or len(data) <= config.max_bytes:
            return None
        size_mb = len(data) / (1024 * 1024)
        context = {
            "tenant_id": tenant_id,
            "message_id": message_id,
            "attachment": filename,
            "size_mb": round(size_mb, 1),
        }
        if config.action == "reject":
            raise FetchFailed(
                f"Attachment '{filename}' ({size_mb:.1f} MB) exceeds limit ({config.max_size_mb:g} MB)", temporary=False
            )
        if config.action == "rewrite":
            try:
                url = self._services.messages.contents.put_download(
                    tenant_id, message_id, filename, data, config.file_ttl_days
                )
            except (BotoCoreError, ClientError, ValueError):
                # The mail still goes out, the attachment in it: a link the recipient cannot get is worse.
                self._logger.warning("large attachment upload failed; attached instead", extra=context, exc_info=True)
                self._metrics.add_metric(name="LargeAttachmentUploadFailures", unit=MetricUnit.Count, value=1)
                return None
            self._logger.info("large attachment replaced by a download link", extra=context)
            self._metrics.add_metric(name="LargeAttachmentsOffloaded", unit=MetricUnit.Count, value=1)
            return Download(filename=filename, size=len(data), url=url)
        self._logger.warning("attachment over the tenant's large-file limit, attached anyway", extra=context)
        self._metrics.add_metric(name="LargeAttachmentWarnings", unit=MetricUnit.Count, value=1)
        return None


_SEALED_FIELDS = ("token", "password")


def _credential_context(tenant_id: str) -> dict[str, str]:
    return {"purpose": "attachment-auth", "tenant": tenant_id}


def seal_credentials(box: Callable[[], SecretBox], tenant_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """The content to store, with attachment tokens and passwords encrypted like tenant secrets (each
    distinct value once per call: a request may carry the same token on a thousand messages)."""
    sealed: dict[str, str] = {}
    attachments = []
    for attachment in content.get("attachments") or []:
        auth = attachment.get("auth")
        if auth:
            auth = dict(auth)
            for field in _SEALED_FIELDS:
                value = auth.pop(field, None)
                if value is not None:
                    if value not in sealed:
                        sealed[value] = box().encrypt(value, _credential_context(tenant_id))
                    auth[f"{field}_enc"] = sealed[value]
            attachment = {**attachment, "auth": auth}
        attachments.append(attachment)
    return {**content, "attachments": attachments}


def _auth(box: Callable[[], SecretBox], tenant_id: str, conf: dict[str, Any] | None) -> HttpAuth:
    if not conf or conf.get("method") == "none":
        return HttpAuth()

    def secret(field: str) -> str | None:
        if conf.get(f"{field}_enc") is not None:
            return box().decrypt(conf[f"{field}_enc"], _credential_context(tenant_id))
        value: str | None = conf.get(field)  # stored in clear before credentials were sealed
        return value

    if conf.get("method") == "basic":
        return HttpAuth(user=conf.get("user"), password=secret("password"))
    return HttpAuth(token=secret("token"))
