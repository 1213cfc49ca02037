"""`use_tls` by port (UPSTREAM-API.md §6, with the seed's `false`): the pure rule and how an account stores it."""

from __future__ import annotations

import pytest

from mailproxy.logic.smtp import SmtpAccount
from mailproxy.logic.smtp.transport import TlsMode, implicit_tls_ports, tls_mode
from mailproxy.models import AccountIn


@pytest.mark.parametrize(
    ("use_tls", "port", "expected"),
    [
        (True, 465, TlsMode.IMPLICIT),
        (True, 587, TlsMode.STARTTLS_REQUIRED),
        (True, 25, TlsMode.STARTTLS_REQUIRED),
        (False, 465, TlsMode.STARTTLS_WHEN_OFFERED),
        (False, 587, TlsMode.STARTTLS_WHEN_OFFERED),
        (None, 465, TlsMode.IMPLICIT),
        (None, 587, TlsMode.STARTTLS_WHEN_OFFERED),
    ],
)
def test_use_tls_and_port_decide_the_tls_mode(use_tls: bool | None, port: int, expected: TlsMode) -> None:
    assert tls_mode(use_tls, port) is expected


def test_an_extra_implicit_port_makes_true_mean_implicit_there() -> None:
    assert tls_mode(True, 2465, frozenset({465, 2465})) is TlsMode.IMPLICIT
    assert tls_mode(True, 587, frozenset({465, 2465})) is TlsMode.STARTTLS_REQUIRED


def test_implicit_ports_default_to_465_and_read_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GMP_SMTP_IMPLICIT_TLS_PORTS", raising=False)
    assert implicit_tls_ports() == frozenset({465})
    monkeypatch.setenv("GMP_SMTP_IMPLICIT_TLS_PORTS", "465, 2465")
    assert implicit_tls_ports() == frozenset({465, 2465})
    account = SmtpAccount(host="smtp.example.com", port=2465, user=None, password=None, use_tls=True)
    assert account.tls_mode is TlsMode.IMPLICIT


@pytest.mark.parametrize("value", ["465,abc", "0", "70000"])
def test_a_bad_implicit_port_list_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("GMP_SMTP_IMPLICIT_TLS_PORTS", value)
    with pytest.raises(ValueError, match="GMP_SMTP_IMPLICIT_TLS_PORTS"):
        implicit_tls_ports()


@pytest.mark.parametrize(("port", "stored"), [(465, True), (587, False), (25, False)])
def test_an_account_without_use_tls_is_stored_as_its_port_decides(port: int, stored: bool) -> None:
    assert AccountIn(id="a", host="smtp.example.com", port=port).use_tls is stored
    assert (
        AccountIn.model_validate({"id": "a", "host": "smtp.example.com", "port": port, "use_tls": None}).use_tls
        is stored
    )


def test_an_explicit_use_tls_is_kept_whatever_the_port() -> None:
    assert AccountIn(id="a", host="smtp.example.com", port=587, use_tls=True).use_tls is True
    assert AccountIn(id="a", host="smtp.example.com", port=465, use_tls=False).use_tls is False
