"""`use_tls` true off the implicit-TLS port is STARTTLS, required: against real aiosmtpd servers."""

from __future__ import annotations

from typing import Any

import pytest

from mailproxy.logic.mime import OutgoingMail, build_message
from mailproxy.logic.smtp import Outcome, SmtpAccount, SmtpPool, probe
from tests.smtp_servers import SinkFactory

pytestmark = pytest.mark.timeout(30)


def send(sink: Any, **account: Any) -> Any:
    outgoing = OutgoingMail(from_addr="sender@example.com", to=["rcpt@example.org"], subject="s", body="b")
    message, envelope = build_message(outgoing, message_id="tls@mail.test")
    with SmtpPool() as pool:
        return pool.send("acct", SmtpAccount(**sink.account(**account)), message, envelope)


def test_use_tls_true_on_a_submission_port_is_delivered_over_starttls(
    smtp_sink_factory: SinkFactory, trust_smtp_certs: Any
) -> None:
    sink = smtp_sink_factory("starttls", auth=("mailer", "pw-123456"), require_starttls=True)
    result = send(sink, use_tls=True)
    assert result.outcome is Outcome.SENT, result
    (received,) = sink.messages
    assert received.tls and received.auth_user == "mailer"
    assert sink.verbs()[:3] == ["EHLO", "STARTTLS", "EHLO"]


def test_use_tls_true_fails_permanently_when_starttls_is_not_offered(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    result = send(sink, use_tls=True)
    assert result.outcome is Outcome.ERROR
    assert "STARTTLS required" in result.detail and "does not offer it" in result.detail
    assert sink.messages == [] and not sink.saw("MAIL")


def test_use_tls_false_still_sends_plain_when_starttls_is_not_offered(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    assert send(sink, use_tls=False).outcome is Outcome.SENT
    assert not sink.messages[0].tls


def test_use_tls_true_on_an_implicit_port_is_tls_from_the_first_byte(
    smtp_sink_factory: SinkFactory, trust_smtp_certs: Any
) -> None:
    sink = smtp_sink_factory("implicit_tls")  # its port joins GMP_SMTP_IMPLICIT_TLS_PORTS, as 465 is
    assert send(sink, use_tls=True).outcome is Outcome.SENT
    assert all(command.tls for command in sink.commands) and "STARTTLS" not in sink.verbs()


def test_the_probe_follows_the_same_rule(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    steps = probe(SmtpAccount(**sink.account(use_tls=True)))
    assert [(name, ok) for name, ok, _ in steps] == [("connect", True), ("ehlo", True), ("starttls", False)]
    assert "STARTTLS required" in steps[-1][2]
