"""pytest fixtures around tests/smtp_servers.py.

Register once for the whole suite in tests/conftest.py::

    pytest_plugins = ["tests.integration.conftest_smtp"]

(or, per module, the same ``pytest_plugins`` line at the top of a test module).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_servers import CertAuthority, Mode, SinkFactory, SmtpSink


@pytest.fixture(scope="session")
def smtp_certs() -> CertAuthority:
    """One throwaway CA + server certificate (127.0.0.1, localhost, ::1) for the whole run."""
    return CertAuthority()


@pytest.fixture
def trust_smtp_certs(
    smtp_certs: CertAuthority, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Make the code under test trust the sinks' CA: SSL_CERT_FILE points at a bundle holding only it
    (SSL_CERT_DIR unset). Returns the bundle path (pass it to subprocesses' environment too)."""
    path = smtp_certs.write_ca_bundle(tmp_path_factory.mktemp("smtp-ca") / "ca.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return path


@pytest.fixture
def distrust_smtp_certs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back to the system trust store (SSL_CERT_FILE/SSL_CERT_DIR unset): the sinks' CA is untrusted."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def smtp_sink_factory(smtp_certs: CertAuthority, monkeypatch: pytest.MonkeyPatch) -> Iterator[SinkFactory]:
    """``make(mode="plain", **SmtpSink kwargs) -> started SmtpSink``; every sink is stopped at teardown.
    An implicit-TLS sink's (ephemeral) port is added to GMP_SMTP_IMPLICIT_TLS_PORTS, as 465 is by default,
    so that ``use_tls`` true means implicit TLS towards it (the rule by port, mailproxy/logic/smtp)."""
    sinks: list[SmtpSink] = []
    implicit_ports: list[str] = []

    def make(mode: Mode = "plain", **kwargs: Any) -> SmtpSink:
        kwargs.setdefault("certs", smtp_certs)
        sink = SmtpSink(mode, **kwargs).start()
        sinks.append(sink)
        if mode == "implicit_tls":
            implicit_ports.append(str(sink.port))
            monkeypatch.setenv("GMP_SMTP_IMPLICIT_TLS_PORTS", ",".join(["465", *implicit_ports]))
        return sink

    yield make
    for sink in sinks:
        sink.stop()


@pytest.fixture
def smtp_sink(smtp_sink_factory: SinkFactory) -> SmtpSink:
    """A plain sink without AUTH on 127.0.0.1."""
    return smtp_sink_factory("plain")
