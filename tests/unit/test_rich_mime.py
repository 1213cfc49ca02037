"""MIME structure of text + html, inline images and List-Unsubscribe; the validators of those fields."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from typing import Any, cast

import pytest
from pydantic import ValidationError

from mailproxy.logic.mime import ListUnsubscribe, MailAttachment, OutgoingMail, build_message
from mailproxy.models import AttachmentIn, MessageIn


def parsed(**fields: Any) -> EmailMessage:
    values: dict[str, Any] = {"from_addr": "sender@example.com", "to": ["rcpt@example.org"], "subject": "s"}
    msg, _ = build_message(OutgoingMail(**{"body": "text", **values, **fields}), message_id="id@mail.test")
    return cast(EmailMessage, email.message_from_bytes(msg.as_bytes(policy=policy.SMTP), policy=policy.default))


def structure(part: EmailMessage) -> Any:
    if part.is_multipart():
        return (part.get_content_type(), [structure(cast(EmailMessage, p)) for p in part.iter_parts()])
    return part.get_content_type()


IMAGE = MailAttachment(filename="logo.png", content=b"png", content_id="logo@x", inline=True)
FILE = MailAttachment(filename="a.pdf", content=b"pdf")


def test_text_and_html_make_an_alternative() -> None:
    assert structure(parsed(html="<p>h</p>")) == ("multipart/alternative", ["text/plain", "text/html"])


def test_inline_image_and_attachment_make_mixed_around_alternative_around_related() -> None:
    message = parsed(html='<img src="cid:logo@x">', attachments=[FILE, IMAGE])
    assert structure(message) == (
        "multipart/mixed",
        [
            ("multipart/alternative", ["text/plain", ("multipart/related", ["text/html", "image/png"])]),
            "application/pdf",
        ],
    )


def test_html_content_type_with_inline_image_is_related() -> None:
    message = parsed(body="<p>h</p>", content_type="html", attachments=[IMAGE])
    assert structure(message) == ("multipart/related", ["text/html", "image/png"])


def test_inline_image_without_html_body_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="html body"):
        parsed(attachments=[IMAGE])


def test_non_ascii_html_is_utf8_and_not_8bit() -> None:
    message = parsed(body="Caffè", html="<p>Caffè 日本語</p>")
    html = cast(EmailMessage, list(message.iter_parts())[1])
    assert html.get_content_charset() == "utf-8"
    assert html["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    assert "日本語" in str(html.get_content())


def test_list_unsubscribe_url_adds_one_click_post() -> None:
    message = parsed(list_unsubscribe=ListUnsubscribe(url="https://u.example/t"))
    assert message["List-Unsubscribe"] == "<https://u.example/t>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_client_headers_cannot_set_list_unsubscribe_in_the_builder() -> None:
    message = parsed(headers={"List-Unsubscribe": "<https://evil.example>", "List-Unsubscribe-Post": "x"})
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None


def message(**fields: Any) -> MessageIn:
    values = {"id": "m1", "account_id": "a", "from": "s@example.com", "to": ["r@example.com"], **fields}
    return MessageIn.model_validate(values)


def inline(**fields: Any) -> dict[str, Any]:
    return {"filename": "logo.png", "content": "cG5n", "content_id": "logo@x", "disposition": "inline", **fields}


@pytest.mark.parametrize("content_id", ["logo@x", "<logo@x.example>", "part1.abc"])
def test_valid_content_ids(content_id: str) -> None:
    assert AttachmentIn.model_validate(inline(content_id=content_id)).content_id == content_id


@pytest.mark.parametrize("content_id", ["", "a b@x", "a@b@c", "<a>b>", "a\r\n@x"])
def test_invalid_content_ids(content_id: str) -> None:
    with pytest.raises(ValidationError, match="content_id"):
        AttachmentIn.model_validate(inline(content_id=content_id))


def test_content_id_and_inline_go_together() -> None:
    with pytest.raises(ValidationError, match="content_id"):
        AttachmentIn.model_validate(inline(disposition="attachment"))
    with pytest.raises(ValidationError, match="content_id"):
        AttachmentIn.model_validate(inline(content_id=None))


def test_content_ids_are_unique_per_message_ignoring_brackets() -> None:
    with pytest.raises(ValidationError, match="unique"):
        message(html="<p/>", attachments=[inline(), inline(filename="b.png", content_id="<logo@x>")])


def test_html_counts_in_the_total_size() -> None:
    with pytest.raises(ValidationError, match="body \\+ html"):
        message(body="b" * 3_000_000, html="h" * 3_000_000)


def test_content_keeps_html_and_list_unsubscribe_for_the_sender() -> None:
    content = message(html="<p/>", list_unsubscribe={"url": "https://u.example/t"}).content()
    assert content["html"] == "<p/>"
    assert content["list_unsubscribe"] == {"url": "https://u.example/t", "mailto": None, "hosted": False}
    assert OutgoingMail(**content).list_unsubscribe == ListUnsubscribe(url="https://u.example/t")


@pytest.mark.parametrize(
    "target",
    [{}, {"url": "http://u.example"}, {"url": "https://u.example/a b"}, {"mailto": "nope"}, {"other": "x"}],
)
def test_invalid_list_unsubscribe(target: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="list_unsubscribe"):
        message(list_unsubscribe=target)
