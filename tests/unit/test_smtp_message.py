"""The message as the wire carries it (mailproxy/logic/smtp/message.py): Bcc never sent, the original
left as it was, SMTPUTF8 asked for when an address or a header needs it."""

from __future__ import annotations

from email.message import EmailMessage

from mailproxy.logic.mime import Envelope
from mailproxy.logic.smtp.errors import Outcome, SendResult
from mailproxy.logic.smtp.message import Prepared, prepare, serialize


def message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "rcpt@example.org"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg["Subject"] = "Hello"
    msg.set_content("Body\n")
    return msg


def test_bcc_and_resent_bcc_are_not_serialized_and_the_original_keeps_them() -> None:
    original = message(Bcc="hidden@example.org", Resent_Bcc="also-hidden@example.org")
    data = serialize(original, utf8=False)
    assert b"hidden@example.org" not in data and b"Subject: Hello" in data
    assert original["Bcc"] == "hidden@example.org" and original["Resent-Bcc"] == "also-hidden@example.org"


def test_serialized_with_crlf_line_ends() -> None:
    data = serialize(message(), utf8=False)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


def test_an_ascii_message_is_serialized_before_connecting() -> None:
    msg = message()
    prepared = prepare(msg, Envelope("sender@example.com", ["rcpt@example.org"]))
    assert isinstance(prepared, Prepared)
    assert (prepared.needs_utf8, prepared.data) == (False, serialize(msg, utf8=False))


def test_a_non_ascii_address_needs_smtputf8_and_is_serialized_later() -> None:
    prepared = prepare(message(), Envelope("sender@example.com", ["ñame@example.org"]))
    assert isinstance(prepared, Prepared)
    assert (prepared.needs_utf8, prepared.data) == (True, None)


def test_no_recipients_is_an_error_without_connecting() -> None:
    assert prepare(message(), Envelope("sender@example.com", [])) == SendResult(Outcome.ERROR, None, "no recipients")
