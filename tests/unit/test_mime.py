from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage, MIMEPart
from email.utils import parsedate_to_datetime
from typing import Any, cast

import pytest

from mailproxy.headers import parse_address
from mailproxy.logic.mime import (
    Envelope,
    MailAttachment,
    OutgoingMail,
    build_message,
    guess_mime_type,
)


def make(**overrides: Any) -> OutgoingMail:
    values: dict[str, Any] = {
        "from_addr": "Sender <sender@example.com>",
        "to": ["rcpt@example.org"],
        "subject": "Hello",
        "body": "Plain body\nsecond line",
    }
    values.update(overrides)
    return OutgoingMail(**values)


def wire(mail: OutgoingMail, message_id: str = "id-1@mail.test", **kw: Any) -> tuple[bytes, EmailMessage, Envelope]:
    """Build, serialize as for SMTP, parse back as a receiver would."""
    msg, envelope = build_message(mail, message_id=message_id, **kw)
    data = msg.as_bytes(policy=policy.SMTP)
    parsed = cast(EmailMessage, email.message_from_bytes(data, policy=policy.default))
    return data, parsed, envelope


def text(part: MIMEPart) -> str:
    """Decoded text content with line ends normalised (on the wire they are CRLF)."""
    return str(part.get_content()).replace("\r\n", "\n")


def test_plain_body() -> None:
    data, parsed, envelope = wire(make())
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert text(parsed) == "Plain body\nsecond line\n"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Subject"] == "Hello"
    assert envelope == Envelope("sender@example.com", ["rcpt@example.org"])
    assert data.isascii()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


def test_html_body_non_ascii_is_7bit_on_the_wire() -> None:
    body = "<p>Caffè \u2013 日本語</p>"
    data, parsed, _ = wire(make(body=body, content_type="html"))
    assert parsed.get_content_type() == "text/html"
    assert parsed["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert text(parsed).rstrip("\n") == body
    assert data.isascii()  # no 8BITMIME needed


def test_long_ascii_lines_are_encoded() -> None:
    body = "x" * 2000
    data, parsed, _ = wire(make(body=body))
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert text(parsed).rstrip("\n") == body


def test_attachments_round_trip_and_mime_types() -> None:
    blob = bytes(range(256)) * 10
    mail = make(
        attachments=[
            MailAttachment(filename="report.pdf", content=b"%PDF-1.4 fake"),
            MailAttachment(filename="data.bin", content=blob, mime_type="application/x-custom"),
            MailAttachment(filename="noext", content=b"abc"),
            MailAttachment(filename="résumé.txt", content="ciao è".encode()),
        ]
    )
    _, parsed, _ = wire(mail)
    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and text(body) == "Plain body\nsecond line\n"
    parts = list(parsed.iter_attachments())
    assert [p.get_filename() for p in parts] == ["report.pdf", "data.bin", "noext", "résumé.txt"]
    assert [p.get_content_type() for p in parts] == [
        "application/pdf",
        "application/x-custom",
        "application/octet-stream",
        "text/plain",
    ]
    assert parts[0].get_payload(decode=True) == b"%PDF-1.4 fake"
    assert parts[1].get_payload(decode=True) == blob
    assert parts[3].get_payload(decode=True) == "ciao è".encode()


@pytest.mark.parametrize(
    ("filename", "given", "expected"),
    [
        ("a.png", None, ("image", "png")),
        ("a.unknownext", None, ("application", "octet-stream")),
        ("a.png", "text/csv", ("text", "csv")),
        ("a.png", "garbage", ("application", "octet-stream")),
        ("a.png", "text/plain; charset=x", ("application", "octet-stream")),
        ("mail.eml", None, ("application", "octet-stream")),  # message/* cannot travel as base64
        ("a.bin", "multipart/mixed", ("application", "octet-stream")),
    ],
)
def test_guess_mime_type(filename: str, given: str | None, expected: tuple[str, str]) -> None:
    assert guess_mime_type(filename, given) == expected


def test_non_ascii_subject_and_display_names_encoded_and_decodable() -> None:
    mail = make(
        from_addr='"Jöhn Dœ, Jr." <john@example.com>',
        to=["Zoë Ünï <zoe@example.org>", "plain@example.org"],
        cc=["Ĉarlo <carlo@example.net>"],
        subject="Résumé \u2013 ünïcödé " * 6,
    )
    data, parsed, _ = wire(mail)
    assert data.isascii()
    raw_headers = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in raw_headers
    assert parsed["Subject"] == "Résumé \u2013 ünïcödé " * 6
    sender = parsed["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Jöhn Dœ, Jr.", "john@example.com")
    to = parsed["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in to] == [
        ("Zoë Ünï", "zoe@example.org"),
        ("", "plain@example.org"),
    ]
    assert parsed["Cc"].addresses[0].display_name == "Ĉarlo"


def test_date_and_message_id() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    _, parsed, _ = wire(make(), message_id="abc.123@mail.test", date=when)
    assert parsed["Message-ID"] == "<abc.123@mail.test>"
    date = parsedate_to_datetime(parsed["Date"])
    assert date == when
    assert date.utcoffset() == timedelta(0)  # written in UTC

    _, parsed, _ = wire(make(), message_id="<already@bracketed>")
    assert parsed["Message-ID"] == "<already@bracketed>"
    default_date = parsedate_to_datetime(parsed["Date"])
    assert abs(default_date - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_date_is_utc() -> None:
    _, parsed, _ = wire(make(), date=datetime(2030, 1, 2, 3, 4, 5))
    assert parsedate_to_datetime(parsed["Date"]) == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_invalid_message_id_rejected() -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build_message(make(), message_id="has space@x")


def test_bcc_only_in_envelope() -> None:
    mail = make(
        to=["a@example.org", "Dup <A@example.org>"],
        cc=["c@example.org"],
        bcc=["Hidden Person <hidden@example.org>", "c@example.org"],
    )
    data, parsed, envelope = wire(mail)
    assert "Bcc" not in parsed
    assert b"hidden" not in data.lower()
    assert envelope.recipients == ["a@example.org", "c@example.org", "hidden@example.org"]


def test_reply_to() -> None:
    _, parsed, _ = wire(make(reply_to="Support Team <support@example.com>"))
    assert parsed["Reply-To"].addresses[0].addr_spec == "support@example.com"
    _, parsed, _ = wire(make())
    assert "Reply-To" not in parsed


def test_return_path_is_envelope_sender() -> None:
    _, parsed, envelope = wire(make(return_path="<bounces+x@bounce.example.com>"))
    assert envelope.sender == "bounces+x@bounce.example.com"
    assert parsed["From"].addresses[0].addr_spec == "sender@example.com"
    assert "Return-Path" not in parsed
    _, _, envelope = wire(make(return_path="<>"))
    assert envelope.sender == ""  # null reverse-path


def test_extra_headers_applied_protected_ignored() -> None:
    headers = {
        "X-Campaign": "spring-2030",
        "List-Unsubscribe": "<mailto:unsub@example.com>",
        "X-Unicode-Value": "caffè ☕",
        "From": "evil@example.net",
        "to": "evil@example.net",
        "BCC": "evil@example.net",
        "Subject": "overridden",
        "Date": "Mon, 1 Jan 1990 00:00:00 +0000",
        "Message-ID": "<evil@example.net>",
        "Reply-To": "evil@example.net",
        "MIME-Version": "2.0",
        "Content-Type": "text/evil",
        "content-transfer-encoding": "8bit",
    }
    data, parsed, envelope = wire(make(headers=headers), message_id="good@mail.test")
    assert parsed["X-Campaign"] == "spring-2030"
    assert "List-Unsubscribe" not in parsed  # only from `list_unsubscribe`
    assert parsed["X-Unicode-Value"] == "caffè ☕"
    assert data.isascii()
    assert b"evil" not in data
    assert parsed["Subject"] == "Hello"
    assert parsed["Message-ID"] == "<good@mail.test>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "text/plain"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"):
        assert len(parsed.get_all(name) or []) == 1, name
    assert envelope.recipients == ["rcpt@example.org"]


@pytest.mark.parametrize(
    "headers", [{"X-Bad": "a\r\nBcc: x@example.net"}, {"X-Bad\r\nBcc": "x"}, {"X Bad": "x"}, {"X-Ünï": "x"}]
)
def test_invalid_extra_header_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        build_message(make(headers=headers), message_id="x@y")


@pytest.mark.parametrize(
    "value",
    [
        "Rossi, Mario <m@example.it>",
        "not an address",
        "a@b, c@d",
        "x@",
        "@x",
        "",
        "Group: a@b;",
        "a@b\nBcc: c@d",
    ],
)
def test_parse_address_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_address(value)


@pytest.mark.parametrize(
    ("value", "name", "spec"),
    [
        ('"Rossi, Mario" <m@example.it>', "Rossi, Mario", "m@example.it"),
        ("Jöhn <j@example.it>", "Jöhn", "j@example.it"),
        ("<bounce@example.it>", "", "bounce@example.it"),
        ("first.last+tag@sub.example.co.uk", "", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_parse_address_accepts(value: str, name: str, spec: str) -> None:
    address = parse_address(value)
    assert (address.display_name, address.addr_spec) == (name, spec)


def test_invalid_recipient_raises() -> None:
    with pytest.raises(ValueError):
        build_message(make(to=["nope"]), message_id="x@y")
