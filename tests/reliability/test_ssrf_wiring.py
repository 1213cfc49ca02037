"""The SSRF guard (mailproxy/logic/ssrf.py) wired into the proxy: `POST /account` refuses an internal host
in aws mode, the sender refuses it again at connect time (DNS rebinding) and connects only to the
addresses it checked, and attachment URLs go through the same guard.

Enable once the wiring described in docs/reliability.md ("SSRF guard: wiring") is in place. Every name
is resolved by a fake resolver (socket.getaddrinfo replaced): no test resolves a real name."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.app import ApiContext, create_app
from mailproxy.config import settings as cached_settings
from mailproxy.dal.schema import LocalResources
from mailproxy.models import AccountIn
from mailproxy.services import Services
from tests.conftest import API_TOKEN, AUTH, account_payload, make_settings, message_payload
from tests.reliability.harness import World
from tests.smtp_servers import SinkFactory, free_port

_real_getaddrinfo = socket.getaddrinfo


class FakeDns:
    """socket.getaddrinfo over a table the test edits (names may change answer: rebinding); literal
    addresses resolve to themselves; other names fail. Counts the lookups per name."""

    def __init__(self) -> None:
        self.table: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = {}

    def answer(self, name: str, *answers: list[str]) -> None:
        """Successive lookups of `name` get successive answers; the last one repeats."""
        self.table[name] = list(answers)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = str(host).lower().rstrip(".")
        self.lookups[name] = self.lookups.get(name, 0) + 1
        if name in self.table:
            answers = self.table[name]
            addresses = answers[min(self.lookups[name], len(answers)) - 1]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, int(port or 0), 0, 0) if ":" in a else (a, int(port or 0)),
                )
                for a in addresses
            ]
        try:  # numeric forms only (the system's own parsing of 127.1, 2130706433...): never DNS
            return _real_getaddrinfo(name.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def api_for(aws: LocalResources, mode: str, allowlist: str = "") -> TestClient:
    services = Services.create(make_settings(aws, mode=mode, smtp_host_allowlist=allowlist))
    app = create_app(ApiContext(services=lambda: services, api_token=lambda: API_TOKEN, trigger_report=lambda: None))
    return TestClient(app, raise_server_exceptions=False)


def account(host: str) -> dict[str, Any]:
    return account_payload(host=host, user=None, password=None)  # no password: no KMS needed in aws mode


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("169.254.169.254", "instance metadata"),
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("10.0.0.5", "private"),
        ("metadata.attacker.example", "instance metadata"),
        ("mixed.attacker.example", "private"),
        ("2130706433", "loopback"),
    ],
)
def test_aws_mode_refuses_an_account_whose_host_resolves_inside(
    aws: LocalResources, dns: FakeDns, host: str, why: str
) -> None:
    dns.answer("metadata.attacker.example", ["169.254.169.254"])
    dns.answer("mixed.attacker.example", ["93.184.216.34", "10.9.8.7"])
    answer = api_for(aws, "aws").post("/account", headers=AUTH, json=account(host))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert "host" in error and why in error and "GMP_SMTP_HOST_ALLOWLIST" in error


def test_aws_mode_accepts_a_public_host_and_an_allowlisted_internal_one(aws: LocalResources, dns: FakeDns) -> None:
    dns.answer("smtp.example.com", ["93.184.216.34", "2606:4700::1"])
    dns.answer("relay.corp.example", ["10.20.30.40"])
    api = api_for(aws, "aws", allowlist="relay.corp.example, other.example")
    assert api.post("/account", headers=AUTH, json=account("smtp.example.com")).status_code == 200
    assert api.post("/account", headers=AUTH, json={**account("Relay.Corp.Example."), "id": "relay"}).status_code == 200


def test_local_mode_accepts_loopback_and_private_but_not_the_metadata_address(
    aws: LocalResources, dns: FakeDns
) -> None:
    api = api_for(aws, "local")
    assert api.post("/account", headers=AUTH, json=account("127.0.0.1")).status_code == 200
    assert api.post("/account", headers=AUTH, json={**account("192.168.1.20"), "id": "lan"}).status_code == 200
    refused = api.post("/account", headers=AUTH, json={**account("169.254.169.254"), "id": "imds"})
    assert refused.status_code == 422 and "host" in refused.json()["error"]


def reconfigure(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Change the functions' environment (as a redeploy would) and drop their cached settings/services."""
    from mailproxy import runtime

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    cached_settings.cache_clear()
    runtime.services.cache_clear()


def test_dns_rebinding_after_the_account_check_is_refused_at_connect_time(
    world: World, smtp_sink_factory: SinkFactory, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name was public when the account was created; now it points at the proxy's own network. The
    sender checks again when it connects: nothing reaches the internal server, the message ends in error."""
    internal = smtp_sink_factory("plain")  # stands for a service inside the VPC
    world.sinks.append(internal)
    reconfigure(monkeypatch, GMP_MODE="aws", GMP_CORRELATION_SECRET="a-deployment-secret-for-tests")
    world.services.accounts.put(
        AccountIn(id="smtp-main", host="rebind.attacker.example", port=internal.port, timeout=2)
    )
    dns.answer("rebind.attacker.example", ["127.0.0.1"])
    world.submit(message_payload("m0"))
    world.drain()
    item = world.status("m0")
    assert internal.connections == 0 and internal.messages == []
    assert item["status"] == "error", item
    assert "127.0.0.1" in item["error"] and "loopback" in item["error"]
    # The test's report receiver is plain http on loopback, which aws mode refuses (docs/reliability.md,
    # "Poison reports and tenants"; test_poison_reports.py::test_http_report_url_is_refused_in_aws_mode):
    # the report waits ...
    assert world.report()["posted"] == 0
    reconfigure(monkeypatch, GMP_MODE="local")  # ... and goes out from a local-mode reporter
    world.report()
    assert world.final_reports()["m0"] == 1


def test_the_sender_connects_to_the_address_it_checked_and_resolves_once(
    world: World, smtp_sink_factory: SinkFactory, dns: FakeDns
) -> None:
    """A rebinding between the check and the connect: the first answer (checked) is used; a second lookup,
    which would return a refused address, never happens. (Local mode: loopback is allowed, multicast not.)"""
    sink = smtp_sink_factory("plain")
    world.sinks.append(sink)
    world.services.accounts.put(AccountIn(id="smtp-main", host="flip.example", port=sink.port, timeout=2))
    dns.answer("flip.example", ["127.0.0.1"], ["224.0.0.1"])
    world.submit(message_payload("m0"))
    world.drain()
    assert world.status("m0")["status"] == "sent"
    assert dns.lookups["flip.example"] == 1 and len(sink.messages) == 1


def test_an_unresolvable_host_at_connect_time_is_deferred_not_an_error(
    world: World, smtp_sink_factory: SinkFactory, dns: FakeDns
) -> None:
    world.services.accounts.put(AccountIn(id="smtp-main", host="gone.example", port=free_port(), timeout=2))
    world.submit(message_payload("m0"))
    world.drain()
    item = world.status("m0")
    assert item["status"] == "deferred" and "resolve" in item["deferred_reason"]


@pytest.fixture
def tcp_listener() -> Iterator[tuple[int, Callable[[], int]]]:
    """A bare TCP listener on loopback that counts the connections it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            accepted[0] += 1
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield server.getsockname()[1], lambda: accepted[0]
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_attachment_urls_pointing_inside_are_refused_before_any_connection(
    world: World,
    smtp_sink_factory: SinkFactory,
    dns: FakeDns,
    monkeypatch: pytest.MonkeyPatch,
    tcp_listener: tuple[int, Callable[[], int]],
) -> None:
    port, connections = tcp_listener
    sink = smtp_sink_factory("plain")
    world.sinks.append(sink)
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    reconfigure(monkeypatch, GMP_MODE="aws", GMP_CORRELATION_SECRET="a-deployment-secret-for-tests")
    dns.answer("files.attacker.example", ["127.0.0.1"])
    attachment = {"filename": "a.pdf", "storage_path": f"https://files.attacker.example:{port}/a.pdf"}
    world.submit(message_payload("m0", attachments=[attachment]))
    world.drain()
    item = world.status("m0")
    assert connections() == 0
    assert item["status"] == "error" and "loopback" in item["error"]
    assert sink.messages == []
