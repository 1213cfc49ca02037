"""A Django email backend that queues mail on the proxy (``pip install genro-mail-proxy-client[django]``).

    EMAIL_BACKEND = "mailproxy_client.django.EmailBackend"
    GMP_PROXY_URL = "https://....execute-api.eu-west-1.amazonaws.com/prod"
    GMP_API_TOKEN = "..."            # the tenant's API key
    GMP_ACCOUNT_ID = "smtp-main"     # the SMTP account the mail goes out through
    GMP_TENANT_ID = "acme"           # optional: the key's own tenant otherwise

``send_messages`` posts every message in one add-messages request (split at the API's 1,000 per call) and returns
how many the proxy accepted. Per message, optional attributes: ``gmp_id`` (default: a new uuid), ``gmp_metadata``
(a dict, echoed in delivery reports), ``gmp_tags`` (a list), ``gmp_priority``, ``gmp_batch_code``.
A ``text/html`` alternative becomes ``html``; a MIME part with a ``Content-ID`` becomes an inline attachment.
Extra headers ``From`` and ``Reply-To`` are mapped to the message's fields; other headers the proxy sets itself
(To, Message-ID, ...) are refused by the proxy, naming the header.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from email.mime.base import MIMEBase
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend

from mailproxy_client.api import MailProxyClient
from mailproxy_client.errors import MailProxyError
from mailproxy_client.models import AddMessagesResult

__all__ = ["EmailBackend", "MessagesRejected"]

# Extra headers Django users set that are fields of the proxy's message, not headers.
MAPPED_HEADERS = {"from": "from", "reply-to": "reply_to"}


class MessagesRejected(MailProxyError):
    """The proxy refused some of the messages; ``.result`` is the add-messages answer (``rejected`` says why)."""

    def __init__(self, result: AddMessagesResult) -> None:
        reasons = "; ".join(f"{rejection.id}: {rejection.reason}" for rejection in result.rejected)
        super().__init__(f"{len(result.rejected)} message(s) rejected: {reasons}")
        self.result = result


class EmailBackend(BaseEmailBackend):
    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self.proxy_url: str = kwargs.get("proxy_url") or _required_setting("GMP_PROXY_URL")
        self.api_token: str = kwargs.get("api_token") or _required_setting("GMP_API_TOKEN")
        self.account_id: str = kwargs.get("account_id") or _required_setting("GMP_ACCOUNT_ID")
        self.tenant_id: str | None = kwargs.get("tenant_id") or getattr(settings, "GMP_TENANT_ID", None)
        self.client: MailProxyClient | None = None

    def open(self) -> bool:
        if self.client is not None:
            return False
        self.client = MailProxyClient(self.proxy_url, self.api_token)
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        opened_here = self.open()
        try:
            payloads = [self.payload(message) for message in email_messages]
            assert self.client is not None
            result = self.client.add_messages(payloads)
        except Exception:
            if self.fail_silently:
                return 0
            raise
        finally:
            if opened_here:
                self.close()
        if result.rejected and not self.fail_silently:
            raise MessagesRejected(result)
        return result.queued + len(result.duplicates)  # a duplicate id was queued by an earlier call

    def payload(self, message: EmailMessage) -> dict[str, Any]:
        """The add-messages object of one Django message."""
        payload: dict[str, Any] = {
            "id": getattr(message, "gmp_id", None) or str(uuid.uuid4()),
            "account_id": self.account_id,
            "from": message.from_email,
            "to": list(message.to),
            "subject": str(message.subject),
            "body": str(message.body),
        }
        if message.content_subtype == "html":
            payload["content_type"] = "html"
        if message.cc:
            payload["cc"] = list(message.cc)
        if message.bcc:
            payload["bcc"] = list(message.bcc)
        if message.reply_to:
            payload["reply_to"] = ", ".join(message.reply_to)
        headers: dict[str, str] = {}
        for name, value in (message.extra_headers or {}).items():
            field = MAPPED_HEADERS.get(name.lower())
            if field:
                payload[field] = str(value)
            else:
                headers[name] = str(value)
        if headers:
            payload["headers"] = headers
        if isinstance(message, EmailMultiAlternatives):
            for content, mimetype in message.alternatives:
                if mimetype == "text/html":
                    payload["html"] = str(content)
        attachments = [_attachment(item) for item in message.attachments]
        if attachments:
            payload["attachments"] = attachments
        optional = {
            "tenant_id": self.tenant_id,
            "metadata": getattr(message, "gmp_metadata", None),
            "tags": getattr(message, "gmp_tags", None),
            "priority": getattr(message, "gmp_priority", None),
            "batch_code": getattr(message, "gmp_batch_code", None),
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        return payload


def _attachment(item: Any) -> dict[str, Any]:
    """A Django attachment (a ``(filename, content, mimetype)`` triple or a MIME part) as the API's object."""
    if isinstance(item, MIMEBase):
        decoded = item.get_payload(decode=True)
        content = decoded if isinstance(decoded, bytes) else b""
        entry: dict[str, Any] = {
            "filename": item.get_filename() or "attachment",
            "content": base64.b64encode(content).decode("ascii"),
            "mime_type": item.get_content_type(),
        }
        content_id = item.get("Content-ID")
        if content_id:
            entry.update(content_id=str(content_id).strip().strip("<>"), disposition="inline")
        return entry
    filename, content, mimetype = item
    raw = content.encode() if isinstance(content, str) else bytes(content)
    entry = {"filename": filename or "attachment", "content": base64.b64encode(raw).decode("ascii")}
    if mimetype:
        entry["mime_type"] = mimetype
    return entry


def _required_setting(name: str) -> str:
    value = getattr(settings, name, None)
    if not value:
        raise ImproperlyConfigured(f"{name} must be set to use mailproxy_client.django.EmailBackend")
    return str(value)
