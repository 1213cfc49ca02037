"""SmtpPool / probe against real aiosmtpd servers on 127.0.0.1 (tests/smtp_servers.py)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

import mailproxy.logic.smtp.session as smtp_session
from mailproxy.logic.mime import Envelope, MailAttachment, OutgoingMail, build_message
from mailproxy.logic.smtp import Outcome, SendResult, SmtpAccount, SmtpPool, is_loopback_host, probe
from tests.smtp_servers import SinkFactory, SmtpSink, free_port

pytestmark = pytest.mark.timeout(30)

USER, PASSWORD = "mailer", "s3cret-Pa55word"
NO_PLAINTEXT_AUTH = "server offers no STARTTLS; refusing to send credentials in clear text"


def mail(n: int = 1, **overrides: Any) -> OutgoingMail:
    values: dict[str, Any] = {
        "from_addr": "Sénder Ñame <sender@example.com>",
        "to": ["Rcpt One <rcpt1@example.org>"],
        "cc": ["rcpt2@example.org"],
        "bcc": ["hidden@example.org"],
        "subject": f"Message {n} \u2013 ünïcödé",
        "body": f"Hello {n}\nčaw",
    }
    values.update(overrides)
    return OutgoingMail(**values)


def send(pool: SmtpPool, sink: SmtpSink, n: int = 1, key: str = "acct", **account: Any) -> SendResult:
    message, envelope = build_message(mail(n), message_id=f"msg-{n}@mail.test")
    return pool.send(key, SmtpAccount(**sink.account(**account)), message, envelope)


def send_mail(pool: SmtpPool, sink: SmtpSink, outgoing: OutgoingMail, **account: Any) -> SendResult:
    message, envelope = build_message(outgoing, message_id="custom@mail.test")
    return pool.send("acct", SmtpAccount(**sink.account(**account)), message, envelope)


def assert_nothing_sensitive_sent(sink: SmtpSink) -> None:
    assert not sink.saw("AUTH", "MAIL", "RCPT", "DATA")
    assert sink.auth_attempts == []
    assert sink.messages == []


@pytest.fixture
def pool() -> Any:
    with SmtpPool() as pool:
        yield pool


# --------------------------------------------------------------------------- delivery per mode


def test_plain_loopback_with_auth_delivers_the_right_mime(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain", auth=(USER, PASSWORD))
    outgoing = mail(
        1,
        return_path="bounces@bounce.example.com",
        reply_to="Help <help@example.com>",
        headers={"X-Campaign": "c-1"},
        attachments=[MailAttachment(filename="data.csv", content=b"a,b\r\n1,2\r\n")],
    )
    result = send_mail(pool, sink, outgoing)

    assert result.outcome is Outcome.SENT and result.code == 250, result
    (received,) = sink.messages
    assert received.auth_user == USER and not received.tls
    assert received.mail_from == "bounces@bounce.example.com"
    assert received.rcpt_tos == ["rcpt1@example.org", "rcpt2@example.org", "hidden@example.org"]
    msg = received.message
    assert msg["Subject"] == "Message 1 \u2013 ünïcödé"
    assert msg["From"].addresses[0].display_name == "Sénder Ñame"
    assert msg["Message-ID"] == "<custom@mail.test>"
    assert msg["Reply-To"].addresses[0].addr_spec == "help@example.com"
    assert msg["X-Campaign"] == "c-1"
    assert "Bcc" not in msg and b"hidden" not in received.data
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "Hello 1\nčaw\n"
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "data.csv"
    assert attachment.get_payload(decode=True) == b"a,b\r\n1,2\r\n"
    assert sink.verbs() == ["EHLO", "AUTH", "MAIL", "RCPT", "RCPT", "RCPT", "DATA"]


def test_starttls_with_auth(smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any) -> None:
    sink = smtp_sink_factory("starttls", auth=(USER, PASSWORD))  # AUTH only offered after STARTTLS
    result = send(pool, sink)

    assert result.outcome is Outcome.SENT, result
    (received,) = sink.messages
    assert received.tls and received.auth_user == USER
    verbs = sink.verbs()
    assert verbs[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    commands, switch = sink.commands, verbs.index("STARTTLS")
    assert not any(c.tls for c in commands[: switch + 1]) and all(c.tls for c in commands[switch + 1 :])
    assert [a.tls for a in sink.auth_attempts] == [True]


def test_starttls_without_auth_is_still_used(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any
) -> None:
    sink = smtp_sink_factory("starttls")
    result = send(pool, sink)
    assert result.outcome is Outcome.SENT, result
    assert sink.messages[0].tls and sink.messages[0].auth_user is None
    assert "STARTTLS" in sink.verbs() and "AUTH" not in sink.verbs()


def test_implicit_tls_with_auth(smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any) -> None:
    sink = smtp_sink_factory("implicit_tls", auth=(USER, PASSWORD))
    result = send(pool, sink)

    assert result.outcome is Outcome.SENT, result
    (received,) = sink.messages
    assert received.tls and received.auth_user == USER
    assert all(c.tls for c in sink.commands)
    assert "STARTTLS" not in sink.verbs()


def test_localhost_name_is_verified_too(smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any) -> None:
    sink = smtp_sink_factory("implicit_tls", auth=(USER, PASSWORD))
    assert send(pool, sink, host="localhost").outcome is Outcome.SENT


def test_ssl_cert_file_is_read_at_connect_time(
    smtp_sink_factory: SinkFactory, trust_smtp_certs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = smtp_sink_factory("implicit_tls")
    monkeypatch.delenv("SSL_CERT_FILE")
    with SmtpPool() as pool:
        assert send(pool, sink).outcome is Outcome.DEFERRED
    monkeypatch.setenv("SSL_CERT_FILE", str(trust_smtp_certs))
    with SmtpPool() as pool:
        assert send(pool, sink).outcome is Outcome.SENT


def test_smtputf8_recipient(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    result = send_mail(pool, sink, mail(to=["Jösé <jösé@example.org>"], cc=[], bcc=[]))
    assert result.outcome is Outcome.SENT, result
    (received,) = sink.messages
    assert received.rcpt_tos == ["jösé@example.org"]
    assert "SMTPUTF8" in received.mail_options
    assert received.message["To"].addresses[0].username == "jösé"


# --------------------------------------------------------------------------- connection reuse


def test_one_connection_per_account(smtp_sink_factory: SinkFactory, trust_smtp_certs: Any) -> None:
    sink = smtp_sink_factory("starttls", auth=(USER, PASSWORD))
    with SmtpPool() as pool:
        results = [send(pool, sink, n) for n in range(1, 6)]
        assert [r.outcome for r in results] == [Outcome.SENT] * 5
        assert pool.connections_opened == 1
    assert sink.connections == 1
    assert len(sink.messages) == 5 and {m.connection for m in sink.messages} == {1}
    assert sink.verbs().count("EHLO") == 2 and sink.verbs().count("AUTH") == 1  # once, then STARTTLS
    assert sink.verbs()[-1] == "QUIT"  # close() says goodbye


def test_one_connection_per_account_key(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    for n in range(1, 5):
        assert send(pool, sink, n, key=f"acct-{n % 2}").outcome is Outcome.SENT
    assert pool.connections_opened == 2
    assert sink.connections == 2


def test_changed_account_settings_reconnect(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    assert send(pool, sink, 1).outcome is Outcome.SENT
    assert send(pool, sink, 2, timeout=7.0).outcome is Outcome.SENT
    assert pool.connections_opened == 2
    assert sink.verbs(1)[-1] == "QUIT"


@pytest.mark.parametrize("mode", ["plain", "starttls", "implicit_tls"])
def test_server_dropping_pooled_connection_reconnects(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any, mode: Any
) -> None:
    sink = smtp_sink_factory(mode, auth=(USER, PASSWORD))
    assert send(pool, sink, 1).outcome is Outcome.SENT
    assert sink.drop_connections() == 1
    result = send(pool, sink, 2)
    assert result.outcome is Outcome.SENT, result
    assert pool.connections_opened == 2 and sink.connections == 2
    assert [m.message["Message-ID"] for m in sink.messages] == ["<msg-1@mail.test>", "<msg-2@mail.test>"]
    assert [m.connection for m in sink.messages] == [1, 2]


def test_421_on_reused_connection_reconnects(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    assert send(pool, sink, 1).outcome is Outcome.SENT
    sink.fail("MAIL", "421 4.4.2 idle too long, closing")
    result = send(pool, sink, 2)
    assert result.outcome is Outcome.SENT, result
    assert pool.connections_opened == 2 and len(sink.messages) == 2


def test_dead_pooled_connection_and_server_gone_is_deferred(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    account = sink.account()
    assert send(pool, sink, 1).outcome is Outcome.SENT
    sink.drop_connections()
    sink.stop()
    message, envelope = build_message(mail(2), message_id="m2@x")
    started = time.monotonic()
    result = pool.send("acct", SmtpAccount(**account), message, envelope)
    assert result.outcome is Outcome.DEFERRED and "connection refused" in result.detail, result
    assert pool.connections_opened == 1  # one reconnect attempt, which failed; no loop
    assert time.monotonic() - started < 2


# --------------------------------------------------------------------------- replies


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL", "451 4.3.0 mail from: try again later"),
        ("RCPT", "451 4.7.1 greylisted, try again later"),
        ("DATA", "451 4.3.0 data: not now"),
        ("EOM", "452 4.3.1 insufficient system storage"),
    ],
)
def test_4xx_is_deferred_and_connection_stays_usable(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, command: str, reply: str
) -> None:
    sink = smtp_sink_factory("plain")
    fault = sink.fail(command, reply, times=3 if command == "RCPT" else 1)  # RCPT: all 3 recipients
    result = send(pool, sink, 1)
    assert result.outcome is Outcome.DEFERRED, result
    assert result.code == int(reply[:3])
    assert reply[4:] in result.detail
    assert fault.hits == fault.times

    assert send(pool, sink, 2).outcome is Outcome.SENT
    assert pool.connections_opened == 1 and sink.connections == 1
    assert "RSET" in sink.verbs() or command == "EOM"
    assert [m.message["Message-ID"] for m in sink.messages] == ["<msg-2@mail.test>"]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL", "553 5.7.1 sender not allowed"),
        ("RCPT", "550 5.1.1 <rcpt1@example.org>: user unknown"),
        ("DATA", "554 5.5.1 no valid recipients"),
        ("EOM", "550 5.7.1 message rejected as spam"),
    ],
)
def test_5xx_is_error_with_reply_text(smtp_sink_factory: SinkFactory, pool: SmtpPool, command: str, reply: str) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail(command, reply, times=3 if command == "RCPT" else 1)
    result = send(pool, sink, 1)
    assert result.outcome is Outcome.ERROR, result
    assert result.code == int(reply[:3])
    assert reply in result.detail
    assert sink.messages == []
    assert send(pool, sink, 2).outcome is Outcome.SENT  # same connection still fine
    assert pool.connections_opened == 1


def test_some_recipients_refused_is_sent(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 no such user", match="rcpt2@")
    sink.fail("RCPT", "450 4.2.1 mailbox busy", match="hidden@")
    result = send(pool, sink)
    assert result.outcome is Outcome.SENT, result
    assert "rcpt2@example.org" in result.detail and "550 5.1.1 no such user" in result.detail
    assert "hidden@example.org" in result.detail and "450 4.2.1" in result.detail
    assert sink.messages[0].rcpt_tos == ["rcpt1@example.org"]


def test_all_recipients_refused_mixed_is_deferred(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 no such user", times=2)
    sink.fail("RCPT", "451 4.7.1 later")
    result = send(pool, sink)
    assert (result.outcome, result.code) == (Outcome.DEFERRED, 451), result
    assert sink.messages == [] and not sink.saw("DATA")


# --------------------------------------------------------------------------- transport failures


def test_server_down_is_deferred(pool: SmtpPool) -> None:
    account = SmtpAccount("127.0.0.1", free_port(), None, None, False, timeout=2.0)
    message, envelope = build_message(mail(), message_id="x@y")
    result = pool.send("acct", account, message, envelope)
    assert result.outcome is Outcome.DEFERRED and result.code is None
    assert result.detail.startswith("connection refused"), result
    assert pool.connections_opened == 0


def test_dns_failure_is_deferred(pool: SmtpPool, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    account = SmtpAccount("smtp.does-not-exist.invalid", 587, None, None, False, timeout=2.0)
    message, envelope = build_message(mail(), message_id="x@y")
    result = pool.send("acct", account, message, envelope)
    assert result.outcome is Outcome.DEFERRED and result.detail.startswith("DNS lookup failed"), result


@pytest.mark.parametrize("command", ["CONNECT", "EHLO", "MAIL", "EOM"])
def test_stalled_server_is_deferred_within_timeout(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, command: str
) -> None:
    sink = smtp_sink_factory("plain")
    sink.stall(command, 10.0)
    started = time.monotonic()
    result = send(pool, sink, 1, timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.DEFERRED and result.detail.startswith("timed out"), result
    assert 0.4 < elapsed < 2.0
    assert sink.messages == []
    # the timed-out connection was dropped: the next message gets a fresh one
    assert send(pool, sink, 2, timeout=0.5).outcome is Outcome.SENT
    assert pool.connections_opened == (1 if command == "CONNECT" else 2)  # a stalled greeting never opened


def test_drop_mid_data_is_deferred_then_reconnects(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    assert send(pool, sink, 1).outcome is Outcome.SENT
    sink.drop("EOM")
    result = send(pool, sink, 2)  # reused connection, but the server had accepted MAIL: no retry
    assert result.outcome is Outcome.DEFERRED, result
    assert "DATA" in result.detail
    assert send(pool, sink, 3).outcome is Outcome.SENT
    assert [m.message["Message-ID"] for m in sink.messages] == ["<msg-1@mail.test>", "<msg-3@mail.test>"]
    assert pool.connections_opened == 2


def test_greeting_refused(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain")
    sink.fail("CONNECT", "554 5.7.1 you are blocked")
    result = send(pool, sink)
    assert (result.outcome, result.code) == (Outcome.ERROR, 554), result
    assert "you are blocked" in result.detail
    sink.fail("CONNECT", "421 4.3.2 too busy")
    assert send(pool, sink).outcome is Outcome.DEFERRED


# --------------------------------------------------------------------------- TLS and credentials safety


@pytest.mark.parametrize("mode", ["starttls", "implicit_tls"])
def test_untrusted_certificate_is_deferred_and_nothing_sent(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, distrust_smtp_certs: None, mode: Any
) -> None:
    sink = smtp_sink_factory(mode, auth=(USER, PASSWORD))
    result = send(pool, sink)
    assert result.outcome is Outcome.DEFERRED, result
    assert result.detail.startswith("TLS certificate verification failed"), result
    assert_nothing_sensitive_sent(sink)
    if mode == "starttls":
        assert sink.verbs() == ["EHLO", "STARTTLS"]  # no plain-text fallback after the failed handshake


def test_untrusted_certificate_without_credentials_still_not_sent(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, distrust_smtp_certs: None
) -> None:
    sink = smtp_sink_factory("starttls")
    assert send(pool, sink).outcome is Outcome.DEFERRED
    assert_nothing_sensitive_sent(sink)


def test_wrong_hostname_in_certificate_is_refused(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = smtp_sink_factory("implicit_tls")
    real_create_connection = socket.create_connection

    def to_loopback(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        return real_create_connection(("127.0.0.1", address[1]), *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", to_loopback)  # "smtp.example.net" -> the sink
    result = send(pool, sink, host="smtp.example.net")
    assert result.outcome is Outcome.DEFERRED
    assert result.detail.startswith("TLS certificate verification failed") and "mismatch" in result.detail
    assert_nothing_sensitive_sent(sink)


def test_no_starttls_on_non_loopback_host_refuses_clear_text_auth(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink is on 127.0.0.1; pretend it is a remote host by making is_loopback_host say no.
    monkeypatch.setattr(smtp_session, "is_loopback_host", lambda host: False)
    sink = smtp_sink_factory("plain", auth=(USER, PASSWORD))  # would accept AUTH in clear text
    result = send(pool, sink)
    assert (result.outcome, result.code, result.detail) == (Outcome.ERROR, None, NO_PLAINTEXT_AUTH)
    assert_nothing_sensitive_sent(sink)


def test_no_starttls_on_non_loopback_host_without_credentials_sends(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtp_session, "is_loopback_host", lambda host: False)
    sink = smtp_sink_factory("plain")
    assert send(pool, sink).outcome is Outcome.SENT


def test_auth_rejected_is_error_and_password_never_leaks(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain", auth=(USER, "the-right-password"))
    result = send(pool, sink, password=PASSWORD)
    assert (result.outcome, result.code) == (Outcome.ERROR, 535), result
    assert "535 5.7.8" in result.detail and PASSWORD not in result.detail
    assert [(a.login, a.success) for a in sink.auth_attempts] == [(USER, False)]  # one attempt only
    assert not sink.saw("MAIL")

    sink.fail("AUTH", f"535 5.7.8 bad password {PASSWORD}")  # a server echoing the secret
    result = send(pool, sink, password=PASSWORD)
    assert result.outcome is Outcome.ERROR and "bad password" in result.detail
    assert PASSWORD not in result.detail
    assert PASSWORD not in repr(SmtpAccount(**sink.account(password=PASSWORD)))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_mechanisms_and_non_ascii_password(
    smtp_sink_factory: SinkFactory, pool: SmtpPool, trust_smtp_certs: Any, mechanism: str
) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    sink = smtp_sink_factory("starttls", auth=("usér", "pässwörd-€"), auth_exclude_mechanism=[other])
    assert send(pool, sink).outcome is Outcome.SENT
    assert [(a.mechanism, a.login, a.success) for a in sink.auth_attempts] == [(mechanism, "usér", True)]


def test_message_over_the_size_limit_is_error_without_sending(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain", data_size_limit=200)
    result = send(pool, sink)
    assert (result.outcome, result.code) == (Outcome.ERROR, 552), result
    assert not sink.saw("MAIL")


def test_auth_temporary_failure_is_deferred(smtp_sink_factory: SinkFactory, pool: SmtpPool) -> None:
    sink = smtp_sink_factory("plain", auth=(USER, PASSWORD))
    sink.fail("AUTH", "454 4.7.0 temporary authentication failure")
    result = send(pool, sink)
    assert (result.outcome, result.code) == (Outcome.DEFERRED, 454), result
    assert send(pool, sink).outcome is Outcome.SENT


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("mail.localhost", True),
        ("10.0.0.1", False),
        ("::", False),
        ("smtp.gmail.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


# --------------------------------------------------------------------------- probe


def test_probe_starttls_with_auth(smtp_sink_factory: SinkFactory, trust_smtp_certs: Any) -> None:
    sink = smtp_sink_factory("starttls", auth=(USER, PASSWORD))
    steps = probe(SmtpAccount(**sink.account()))
    assert [(name, ok) for name, ok, _ in steps] == [
        ("connect", True),
        ("ehlo", True),
        ("starttls", True),
        ("auth", True),
    ]
    assert not sink.saw("MAIL") and sink.verbs()[-1] == "QUIT"
    assert all(PASSWORD not in detail for _, _, detail in steps)


def test_probe_implicit_tls_untrusted(smtp_sink_factory: SinkFactory, distrust_smtp_certs: None) -> None:
    sink = smtp_sink_factory("implicit_tls", auth=(USER, PASSWORD))
    steps = probe(SmtpAccount(**sink.account()))
    assert len(steps) == 1
    name, ok, detail = steps[0]
    assert (name, ok) == ("connect", False) and detail.startswith("TLS certificate verification failed")


def test_probe_refuses_clear_text_auth(smtp_sink_factory: SinkFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_session, "is_loopback_host", lambda host: False)
    sink = smtp_sink_factory("plain", auth=(USER, PASSWORD))
    steps = probe(SmtpAccount(**sink.account()))
    assert [(name, ok) for name, ok, _ in steps] == [
        ("connect", True),
        ("ehlo", True),
        ("starttls", False),
        ("auth", False),
    ]
    assert steps[-1][2] == NO_PLAINTEXT_AUTH
    assert not sink.saw("AUTH")


def test_probe_bad_password(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain", auth=(USER, PASSWORD))
    steps = probe(SmtpAccount(**sink.account(password="wrong-one")))
    assert steps[-1][:2] == ("auth", False) and "535" in steps[-1][2]


def test_probe_server_down() -> None:
    steps = probe(SmtpAccount("127.0.0.1", free_port(), None, None, False, timeout=2.0))
    assert steps == [("connect", False, steps[0][2])] and steps[0][2].startswith("connection refused")


def test_no_recipients_is_error(pool: SmtpPool) -> None:
    message, _ = build_message(mail(), message_id="x@y")
    account = SmtpAccount("127.0.0.1", free_port(), None, None, False)
    result = pool.send("acct", account, message, Envelope("a@b.c", []))
    assert result.outcome is Outcome.ERROR and pool.connections_opened == 0
