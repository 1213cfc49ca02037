"""mailproxy_client.django.EmailBackend through Django's own send_mail / send_mass_mail / EmailMultiAlternatives:
the add-messages payload, on a scripted HTTP server standing in for the API; then one message through the local
stack to an aiosmtpd sink (text and html alternatives, inline image)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.mime.image import MIMEImage
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail, send_mass_mail
from django.test.utils import override_settings

from mailproxy_client import MailProxyClient
from mailproxy_client.django import MessagesRejected
from mailproxy_client.errors import AuthenticationError
from tests.client.conftest import ScriptedServer
from tests.e2e.stack import LocalStack
from tests.smtp_servers import SinkFactory

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def configure_django() -> None:
    """A minimal settings module, once per process (Django allows a single configure)."""
    if not settings.configured:
        settings.configure(
            EMAIL_BACKEND="mailproxy_client.django.EmailBackend",
            DEFAULT_FROM_EMAIL="app@example.com",
            GMP_API_TOKEN="tenant-key",
            GMP_ACCOUNT_ID="smtp-main",
            ALLOWED_HOSTS=["testserver"],
        )
        django.setup()


@pytest.fixture
def proxy(fake_proxy: ScriptedServer) -> Iterator[ScriptedServer]:
    configure_django()
    with override_settings(GMP_PROXY_URL=fake_proxy.url, GMP_TENANT_ID="acme"):
        yield fake_proxy


def posted_messages(proxy: ScriptedServer) -> list[dict[str, Any]]:
    calls = [request for request in proxy.requests if request.path == "/commands/add-messages"]
    return [message for call in calls for message in call.json()["messages"]]


def test_send_mail_posts_one_plain_message(proxy: ScriptedServer) -> None:
    proxy.script((200, {"ok": True, "queued": 1, "rejected": []}))
    assert send_mail("Hello", "plain text", "me@example.com", ["you@example.com"]) == 1
    [message] = posted_messages(proxy)
    assert message["account_id"] == "smtp-main" and message["tenant_id"] == "acme"
    assert (message["from"], message["to"], message["subject"], message["body"]) == (
        "me@example.com",
        ["you@example.com"],
        "Hello",
        "plain text",
    )
    assert "html" not in message and len(str(message["id"])) == 36  # a uuid
    assert proxy.requests[0].headers["x-api-token"] == "tenant-key"


def test_send_mass_mail_is_one_add_messages_call(proxy: ScriptedServer) -> None:
    proxy.script((200, {"ok": True, "queued": 3, "rejected": []}))
    datatuple = [(f"Subject {n}", f"body {n}", "me@example.com", [f"r{n}@example.com"]) for n in range(3)]
    assert send_mass_mail(datatuple) == 3
    assert len(proxy.requests) == 1
    assert [m["to"] for m in posted_messages(proxy)] == [[f"r{n}@example.com"] for n in range(3)]


def test_html_alternative_inline_image_and_attachment(proxy: ScriptedServer) -> None:
    proxy.script((200, {"ok": True, "queued": 1, "rejected": []}))
    message = EmailMultiAlternatives(
        "Report",
        "text version",
        "me@example.com",
        ["you@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["replies@example.com"],
        headers={"X-Campaign": "spring", "From": "Shop <shop@example.com>"},
    )
    message.attach_alternative('<p>html version <img src="cid:logo"></p>', "text/html")
    logo = MIMEImage(PNG, "png")
    logo.add_header("Content-ID", "<logo>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(logo)
    message.attach("data.csv", "a,b\n1,2\n", "text/csv")
    message.gmp_id = "order-42"
    message.gmp_metadata = {"order": 42}
    message.gmp_tags = ["receipt"]
    assert message.send() == 1
    [posted] = posted_messages(proxy)
    assert posted["id"] == "order-42"
    assert posted["html"] == '<p>html version <img src="cid:logo"></p>' and posted["body"] == "text version"
    assert (posted["cc"], posted["bcc"], posted["reply_to"]) == (
        ["cc@example.com"],
        ["bcc@example.com"],
        "replies@example.com",
    )
    assert posted["from"] == "Shop <shop@example.com>" and posted["headers"] == {"X-Campaign": "spring"}
    assert (posted["metadata"], posted["tags"]) == ({"order": 42}, ["receipt"])
    inline, csv = posted["attachments"]
    assert inline == {
        "filename": "logo.png",
        "content": base64.b64encode(PNG).decode(),
        "mime_type": "image/png",
        "content_id": "logo",
        "disposition": "inline",
    }
    assert csv == {"filename": "data.csv", "content": base64.b64encode(b"a,b\n1,2\n").decode(), "mime_type": "text/csv"}


def test_html_subtype_is_sent_as_html_body(proxy: ScriptedServer) -> None:
    proxy.script((200, {"ok": True, "queued": 1, "rejected": []}))
    message = EmailMessage("Hi", "<b>bold</b>", "me@example.com", ["you@example.com"])
    message.content_subtype = "html"
    assert message.send() == 1
    assert posted_messages(proxy)[0]["content_type"] == "html"


def test_rejected_message_raises_unless_fail_silently(proxy: ScriptedServer) -> None:
    refusal = {"ok": False, "queued": 0, "rejected": [{"id": "m1", "reason": "headers: To is protected"}]}
    proxy.script((200, refusal), (200, refusal))

    def protected_header_message() -> EmailMessage:
        message = EmailMessage("Hi", "body", "me@example.com", ["you@example.com"], headers={"To": "x@example.com"})
        message.gmp_id = "m1"
        return message

    with pytest.raises(MessagesRejected, match="m1: headers: To is protected"):
        protected_header_message().send()
    # a message keeps the connection of its first send: a fresh one, so that fail_silently applies
    assert protected_header_message().send(fail_silently=True) == 0
    assert posted_messages(proxy)[0]["headers"] == {"To": "x@example.com"}  # the proxy decides, naming the header


def test_refused_token_is_silent_only_with_fail_silently(proxy: ScriptedServer) -> None:
    proxy.script((401, {"ok": False, "error": "invalid X-API-Token"}), (401, {"ok": False, "error": "invalid"}))
    with pytest.raises(AuthenticationError):
        send_mail("Hi", "body", "me@example.com", ["you@example.com"])
    assert send_mail("Hi", "body", "me@example.com", ["you@example.com"], fail_silently=True) == 0


@pytest.mark.stack
def test_html_and_inline_image_reach_the_smtp_sink(stack: LocalStack, smtp_sink_factory: SinkFactory) -> None:
    configure_django()
    sink = smtp_sink_factory("plain")
    MailProxyClient(stack.url, stack.token).put_account("django-acct", host=sink.host, port=sink.port)
    message = EmailMultiAlternatives("Django", "text version", "app@example.com", ["you@example.com"])
    message.attach_alternative('<p>html <img src="cid:logo"></p>', "text/html")
    logo = MIMEImage(PNG, "png")
    logo.add_header("Content-ID", "<logo>")
    logo.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(logo)
    with override_settings(GMP_PROXY_URL=stack.url, GMP_API_TOKEN=stack.token, GMP_ACCOUNT_ID="django-acct"):
        assert message.send() == 1
    [received] = sink.wait_for_messages(1, timeout=30)
    parts = {part.get_content_type(): part for part in received.message.walk()}
    assert parts["text/plain"].get_content().strip() == "text version"
    assert "cid:logo" in parts["text/html"].get_content()
    assert parts["image/png"].get_payload(decode=True) == PNG
    assert parts["image/png"]["Content-ID"].strip("<>") == "logo"
