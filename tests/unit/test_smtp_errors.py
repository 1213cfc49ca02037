"""The text of SMTP outcomes (mailproxy/logic/smtp/errors.py): replies on one line, transport failures
described briefly, the password scrubbed in clear and in base64."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl

import pytest

from mailproxy.logic.smtp.errors import (
    DeadlinePassed,
    Outcome,
    ReplyTooLong,
    describe,
    failure_outcome,
    reply_text,
    scrub,
)

PASSWORD = "s3cret-Pa55word"


@pytest.mark.parametrize("code", [500, 550, 554, 599])
def test_a_5xx_refusal_is_an_error(code: int) -> None:
    assert failure_outcome(code) is Outcome.ERROR


@pytest.mark.parametrize("code", [421, 450, 451, 600, 354, -1])
def test_any_other_refusal_is_deferred(code: int) -> None:
    assert failure_outcome(code) is Outcome.DEFERRED


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        (b"5.1.1 no such user", "550 5.1.1 no such user"),
        ("first line\nsecond   line\r\n", "550 first line second line"),
        (b"caf\xc3\xa9 \xff", "550 caf\u00e9 \ufffd"),
        (b"", "550"),
        ("   ", "550"),
        (None, "550"),
    ],
)
def test_reply_text_is_the_code_and_the_reply_on_one_line(reply: bytes | str | None, text: str) -> None:
    assert reply_text(550, reply) == text


def disconnected_by(cause: BaseException) -> smtplib.SMTPServerDisconnected:
    try:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed") from cause
    except smtplib.SMTPServerDisconnected as exc:
        return exc


def tls_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason  # set by the ssl module when it raises one
    return exc


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (DeadlinePassed("the SMTP attempt ran past its deadline"), "the SMTP attempt ran past its deadline"),
        (ReplyTooLong("server reply longer than 100 lines"), "server reply longer than 100 lines"),
        (smtplib.SMTPServerDisconnected("gone"), "server closed the connection"),
        (disconnected_by(ConnectionResetError()), "connection reset by the server"),
        (disconnected_by(smtplib.SMTPServerDisconnected("inner")), "server closed the connection"),
        (tls_error("WRONG_VERSION_NUMBER"), "TLS error: WRONG_VERSION_NUMBER"),
        (TimeoutError(), "timed out"),
        (ConnectionRefusedError(), "connection refused"),
        (ConnectionResetError(), "connection reset by the server"),
        (ConnectionAbortedError(), "connection closed by the server"),
        (BrokenPipeError(), "connection closed by the server"),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "DNS lookup failed: Name or service not known",
        ),
        (OSError(101, "Network is unreachable"), "network error: Network is unreachable"),
        (OverflowError("port must be 0-65535."), "OverflowError: port must be 0-65535."),
    ],
)
def test_transport_failures_are_described_briefly(exc: BaseException, text: str) -> None:
    assert describe(exc) == text


def test_a_certificate_failure_names_the_verification_message() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "Hostname mismatch, certificate is not valid for 'smtp.example.net'."
    assert describe(exc) == (
        "TLS certificate verification failed: Hostname mismatch, certificate is not valid for 'smtp.example.net'."
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


AUTH_PLAIN = b64(f"\0mailer\0{PASSWORD}")


@pytest.mark.parametrize(
    "leaking",
    [
        f"535 5.7.8 bad password {PASSWORD}",
        f"535 5.7.8 got AUTH PLAIN {AUTH_PLAIN}",
        f"535 5.7.8 got {b64(PASSWORD)}",
        f"535 5.7.8 got {AUTH_PLAIN.rstrip('=')}",  # the padding dropped
    ],
)
def test_the_password_is_scrubbed_in_clear_and_in_base64(leaking: str) -> None:
    scrubbed = scrub(leaking, PASSWORD)
    assert PASSWORD not in scrubbed and "********" in scrubbed
    assert scrubbed.startswith("535 5.7.8 ")


def test_other_base64_words_and_text_are_kept() -> None:
    text = f"250 2.0.0 queued as {b64('another message id')} for mailer"
    assert scrub(text, PASSWORD) == text


@pytest.mark.parametrize("secret", [None, "", "ab"])
def test_no_password_or_a_very_short_one_scrubs_nothing(secret: str | None) -> None:
    assert scrub("535 ab bad ab", secret) == "535 ab bad ab"
