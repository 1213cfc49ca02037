"""`gmp test-smtp`: the handshake alone, step by step, no mail sent."""

from __future__ import annotations

from mailproxy.logic.smtp.errors import Failure, scrub
from mailproxy.logic.smtp.session import connect
from mailproxy.logic.smtp.transport import Addresses, SmtpAccount


def probe(account: SmtpAccount, addresses: Addresses | None = None) -> list[tuple[str, bool, str]]:
    """For `gmp test-smtp`: connect, EHLO, STARTTLS (if applicable), AUTH — no mail sent.

    Returns the steps as (name, ok, detail); the steps stop at the first failure. Step names:
    ``connect`` (includes the implicit TLS handshake), ``ehlo``, ``starttls`` (unless implicit TLS:
    the same rule by port as the sender, ``transport.tls_mode``), ``auth``.
    """
    steps: list[tuple[str, bool, str]] = []

    def record(name: str, ok: bool, detail: str) -> None:
        steps.append((name, ok, scrub(detail, account.password)))

    try:
        connection = connect(account, record, addresses)
    except Failure:
        return steps
    connection.close(polite=True)
    return steps
