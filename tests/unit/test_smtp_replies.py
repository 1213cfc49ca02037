"""Reading one server reply (mailproxy/logic/smtp/transport.py `ReplyLines`): multi-line replies, the
code of the last line, and the caps that keep an endless or huge reply from holding the sender."""

from __future__ import annotations

import pytest

from mailproxy.logic.smtp.errors import ReplyTooLong
from mailproxy.logic.smtp.transport import MAX_LINE, MAX_REPLY_BYTES, MAX_REPLY_LINES, ReplyLines


def read(*lines: bytes) -> ReplyLines:
    reply = ReplyLines()
    for n, line in enumerate(lines):
        complete = reply.add(line)
        assert complete is (n == len(lines) - 1), f"line {n} {'ended' if complete else 'did not end'} the reply"
    return reply


def test_a_one_line_reply() -> None:
    reply = read(b"250 2.0.0 Ok: queued\r\n")
    assert (reply.code, reply.text) == (250, b"2.0.0 Ok: queued")


def test_a_multi_line_reply_ends_at_the_line_without_a_dash() -> None:
    reply = read(b"250-mail.example.org\r\n", b"250-SIZE 1000\r\n", b"250 SMTPUTF8\r\n")
    assert (reply.code, reply.text) == (250, b"mail.example.org\nSIZE 1000\nSMTPUTF8")


def test_the_code_is_the_last_lines_and_white_space_around_each_text_goes() -> None:
    reply = read(b"250- first \t\r\n", b"451 \tlast  \n")
    assert (reply.code, reply.text) == (451, b"first\nlast")


def test_a_line_without_a_code_ends_the_reply_with_minus_one() -> None:
    reply = read(b"250-fine\r\n", b"garbage\r\n")
    assert (reply.code, reply.text) == (-1, b"fine\nage")  # smtplib's own slicing: the text starts at column 4


def test_a_bare_code_is_a_complete_reply() -> None:
    assert (read(b"220\r\n").code, read(b"220\r\n").text) == (220, b"")


def test_one_line_over_the_line_cap_is_too_long() -> None:
    ReplyLines().add(b"250 " + b"x" * (MAX_LINE - 6) + b"\r\n")  # exactly MAX_LINE: fine
    with pytest.raises(ReplyTooLong, match=f"longer than {MAX_REPLY_LINES} lines or {MAX_REPLY_BYTES} bytes"):
        ReplyLines().add(b"250 " + b"x" * (MAX_LINE - 5) + b"\r\n")


def test_an_endless_continuation_is_cut_after_the_line_cap() -> None:
    reply = ReplyLines()
    for _ in range(MAX_REPLY_LINES):
        assert reply.add(b"250-more\r\n") is False
    with pytest.raises(ReplyTooLong):
        reply.add(b"250 last\r\n")


def test_a_reply_over_the_byte_cap_is_too_long() -> None:
    reply = ReplyLines()
    line = b"250-" + b"x" * 4000 + b"\r\n"
    with pytest.raises(ReplyTooLong):
        for _ in range(MAX_REPLY_BYTES // len(line) + 1):
            reply.add(line)
    assert reply.size > MAX_REPLY_BYTES and len(reply.lines) == MAX_REPLY_BYTES // len(line)
