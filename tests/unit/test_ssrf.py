"""The SSRF guard (mailproxy/logic/ssrf.py), with fake resolvers: no test resolves a real name."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from mailproxy.logic.ssrf import (
    ALLOWLIST_VARIABLE,
    UnresolvableHost,
    check_host,
    classify,
    normalize_host,
    parse_allowlist,
    vetted_addresses,
)

NONE: frozenset[str] = frozenset()


def resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable[..., Sequence[Any]]:
    """getaddrinfo over a fixed table; a literal address resolves to itself; anything else fails."""

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if calls is not None:
            calls.append(host)
        if host in table:
            addresses = table[host]
        else:
            try:
                addresses = [str(ipaddress.ip_address(host))]
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port or 0, 0, 0) if ":" in a else (a, port or 0),
            )
            for a in addresses
        ]

    return resolve


def numeric_only(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
    """The system's getaddrinfo, forbidden to use DNS: numeric forms only."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)


REFUSED_IN_AWS = [
    ("127.0.0.1", "loopback"),
    ("127.9.8.7", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local: the instance metadata service"),
    ("fd00:ec2::254", "link-local: the instance metadata service (IPv6)"),
    ("169.254.170.2", "link-local: the ECS task metadata service"),
    ("169.254.1.2", "link-local"),
    ("fe80::1", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("100.64.0.1", "private: shared address space"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "not globally routable"),
    ("198.18.0.1", "not globally routable"),
    ("2001:db8::1", "not globally routable"),
    ("2001::1", "not globally routable"),
    ("::ffff:127.0.0.1", "loopback, inside the IPv6 address"),
    ("::ffff:169.254.169.254", "link-local: the instance metadata service, inside the IPv6 address"),
    ("::ffff:10.1.2.3", "private, inside the IPv6 address"),
    ("64:ff9b::a9fe:a9fe", "link-local: the instance metadata service, inside the IPv6 address"),
    ("2002:a9fe:a9fe::1", "link-local: the instance metadata service, inside the IPv6 address"),
    ("2002:0a00:0001::1", "private, inside the IPv6 address"),
    ("::7f00:1", "loopback, inside the IPv6 address"),
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2002:5db8:d822::1", "64:ff9b::808:808", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), REFUSED_IN_AWS)
def test_internal_addresses_are_refused_in_aws_mode_with_the_reason(address: str, why: str) -> None:
    assert classify(ipaddress.ip_address(address), mode="aws") == why
    with pytest.raises(ValueError, match=r"^host: 'smtp\.example\.com' resolves to ") as refused:
        check_host("smtp.example.com", mode="aws", allowlist=NONE, resolve=resolver({"smtp.example.com": [address]}))
    message = str(refused.value)
    assert f"resolves to {ipaddress.ip_address(address)} ({why})" in message
    assert "aws mode" in message and ALLOWLIST_VARIABLE in message


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed_in_both_modes(address: str) -> None:
    for mode in ("aws", "local"):
        check_host("smtp.example.com", mode=mode, allowlist=NONE, resolve=resolver({"smtp.example.com": [address]}))


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "192.168.1.10", "172.17.0.2", "fd00::5"]
)
def test_local_mode_allows_loopback_and_private_servers(address: str) -> None:
    check_host("mail.internal", mode="local", allowlist=NONE, resolve=resolver({"mail.internal": [address]}))


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "169.254.7.7", "fe80::1", "0.0.0.0", "224.0.0.251", "::ffff:169.254.169.254"],
)
def test_local_mode_still_refuses_metadata_link_local_unspecified_and_multicast(address: str) -> None:
    with pytest.raises(ValueError, match="local mode"):
        check_host("x.example", mode="local", allowlist=NONE, resolve=resolver({"x.example": [address]}))


def test_every_address_of_the_name_is_checked() -> None:
    table = {"mixed.example": ["93.184.216.34", "2606:4700::1", "10.0.0.7"]}
    with pytest.raises(ValueError, match=r"resolves to 10\.0\.0\.7 \(private\)"):
        check_host("mixed.example", mode="aws", allowlist=NONE, resolve=resolver(table))


@pytest.mark.parametrize(
    ("alias", "target"),
    [
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
    ],
)
def test_numeric_aliases_are_seen_through_by_the_system_resolver(alias: str, target: str) -> None:
    with pytest.raises(ValueError, match=f"resolves to {target}"):
        check_host(alias, mode="aws", allowlist=NONE, resolve=numeric_only)


def test_literal_addresses_with_brackets_and_odd_spelling_are_normalized() -> None:
    assert normalize_host(" [::1] ") == "::1" and normalize_host("SMTP.Example.COM.") == "smtp.example.com"
    with pytest.raises(ValueError, match="loopback"):
        check_host("[::1]", mode="aws", allowlist=NONE, resolve=numeric_only)


def test_an_allowlisted_name_is_allowed_whatever_it_resolves_to() -> None:
    table = {"relay.corp.example": ["10.20.30.40"]}
    allowlist = parse_allowlist(" Relay.Corp.Example. , other.example,,")
    assert allowlist == frozenset({"relay.corp.example", "other.example"})
    check_host("relay.corp.example", mode="aws", allowlist=allowlist, resolve=resolver(table))
    check_host("RELAY.corp.example.", mode="aws", allowlist=allowlist, resolve=resolver(table))
    with pytest.raises(ValueError):  # the allowlist names hosts: another name to the same address is refused
        check_host("evil.example", mode="aws", allowlist=allowlist, resolve=resolver({"evil.example": ["10.20.30.40"]}))
    check_host("[fd00::25]", mode="aws", allowlist=parse_allowlist(["[fd00::25]"]), resolve=resolver({}))


def test_a_name_that_does_not_resolve_is_its_own_error() -> None:
    with pytest.raises(UnresolvableHost, match=r"host: 'nowhere\.invalid' does not resolve"):
        check_host("nowhere.invalid", mode="aws", allowlist=NONE, resolve=resolver({}))
    with pytest.raises(UnresolvableHost):
        check_host("empty.example", mode="aws", allowlist=NONE, resolve=resolver({"empty.example": []}))
    assert issubclass(UnresolvableHost, ValueError)
    with pytest.raises(ValueError, match="empty"):
        check_host("  ", mode="aws", allowlist=NONE, resolve=resolver({}))


def test_the_name_is_resolved_once_and_the_vetted_addresses_are_returned_for_the_connect() -> None:
    calls: list[str] = []
    infos = vetted_addresses(
        "Smtp.Example.com",
        587,
        mode="aws",
        allowlist=NONE,
        resolve=resolver({"smtp.example.com": ["93.184.216.34", "2606:4700::1"]}, calls),
    )
    assert calls == ["smtp.example.com"]
    assert [i[4][:2] for i in infos] == [("93.184.216.34", 587), ("2606:4700::1", 587)]


def test_the_default_resolver_is_the_system_one_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", resolver({"metadata.attacker.example": ["169.254.169.254"]}))
    with pytest.raises(ValueError, match="instance metadata"):
        check_host("metadata.attacker.example", mode="aws", allowlist=NONE)
