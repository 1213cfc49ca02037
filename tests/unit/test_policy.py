"""The API's rules (mailproxy/logic/policy.py): whom a key may act on, the SSRF mode rules for SMTP hosts and
tenant URLs, the account-timeout cap, the probe's timeout. Pure: no moto, names resolved by a fake resolver."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from mailproxy.config import Settings
from mailproxy.logic.policy import (
    PROBE_WAIT_SECONDS,
    Forbidden,
    Invalid,
    Principal,
    Refused,
    check_account_timeout,
    check_batch_size,
    probe_timeout,
    refuse_internal_host,
    refuse_internal_url,
)
from mailproxy.models import MAX_MESSAGES_PER_REQUEST, AccountIn, SuspendRequest

ANSWERS = {
    "smtp.example.com": "93.184.216.34",
    "metadata.attacker.example": "169.254.169.254",
    "relay.corp.example": "10.20.30.40",
    "localhost": "127.0.0.1",
}


def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    """getaddrinfo over ANSWERS; literal addresses resolve to themselves; anything else does not resolve."""
    address = ANSWERS.get(host, host)
    try:
        socket.inet_aton(address)
    except OSError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]


def settings(mode: str = "aws", **values: Any) -> Settings:
    return Settings(mode=mode, **values)


# -------------------------------------------------------------------------------------------- principal


def test_the_admin_acts_on_the_tenant_it_names_or_the_default() -> None:
    admin = Principal(None)
    assert admin.is_admin
    assert admin.scope("acme") == "acme"
    assert admin.scope(None) == "default"
    admin.require_admin()


def test_a_tenant_key_acts_on_its_own_tenant_only() -> None:
    acme = Principal("acme")
    assert not acme.is_admin
    assert acme.scope(None) == "acme" and acme.scope("acme") == "acme"
    with pytest.raises(Forbidden, match=r"tenant_id: this key acts on tenant 'acme' only"):
        acme.scope("globex")
    with pytest.raises(Forbidden, match="needs the admin token"):
        acme.require_admin()


def test_scope_of_reads_only_a_tenant_id_the_request_names() -> None:
    """AccountIn defaults tenant_id to `default`: left out, it is not a request for the default tenant."""
    account = AccountIn(id="a", host="smtp.example.com", port=587)
    assert Principal("acme").scope_of(account) == "acme"
    assert Principal(None).scope_of(account) == "default"
    with pytest.raises(Forbidden):
        Principal("acme").scope_of(AccountIn(id="a", host="smtp.example.com", port=587, tenant_id="default"))
    assert Principal(None).scope_of(SuspendRequest(tenant_id="globex")) == "globex"
    with pytest.raises(Forbidden):
        Principal("acme").scope_of(SuspendRequest(tenant_id="globex"))


# ---------------------------------------------------------------------------------------------- limits


def test_more_messages_than_a_request_may_carry_are_refused() -> None:
    check_batch_size(MAX_MESSAGES_PER_REQUEST)
    with pytest.raises(Refused, match=rf"messages: at most {MAX_MESSAGES_PER_REQUEST} per request, got 1001"):
        check_batch_size(MAX_MESSAGES_PER_REQUEST + 1)


def test_the_account_timeout_is_capped_by_the_sender_timeout() -> None:
    configured = settings(sender_timeout=60)
    check_account_timeout(50, configured)  # 60 s less 10 s for the sender's own writes
    with pytest.raises(Invalid) as refused:
        check_account_timeout(50.5, configured)
    message = str(refused.value)
    assert message.startswith("timeout: at most 50 seconds") and "GMP_SENDER_TIMEOUT 60 s less 10 s" in message


def test_the_probe_timeout_is_the_accounts_cut_to_the_probe_wait() -> None:
    assert probe_timeout(2.0) == 2.0
    assert probe_timeout(300) == PROBE_WAIT_SECONDS
    assert PROBE_WAIT_SECONDS * 4 < 29  # four steps at their slowest still answer inside API Gateway's 29 s


# ------------------------------------------------------------------------------------------ SSRF rules


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("10.0.0.5", "private"),
        ("metadata.attacker.example", "instance metadata"),
        ("relay.corp.example", "private"),
    ],
)
def test_aws_mode_refuses_an_smtp_host_resolving_inside(host: str, why: str) -> None:
    with pytest.raises(Invalid) as refused:
        refuse_internal_host(host, settings("aws"), resolve=resolve)
    assert str(refused.value).startswith("host:") and why in str(refused.value)
    assert "GMP_SMTP_HOST_ALLOWLIST" in str(refused.value)


def test_aws_mode_accepts_a_public_host_and_an_allowlisted_internal_one() -> None:
    refuse_internal_host("smtp.example.com", settings("aws"), resolve=resolve)
    allowing = settings("aws", smtp_host_allowlist="Relay.Corp.Example, other.example")
    refuse_internal_host("relay.corp.example", allowing, resolve=resolve)


def test_local_mode_allows_loopback_and_private_but_not_the_metadata_address() -> None:
    local = settings("local")
    for host in ("127.0.0.1", "localhost", "relay.corp.example"):
        refuse_internal_host(host, local, resolve=resolve)
    with pytest.raises(Invalid, match="instance metadata"):
        refuse_internal_host("metadata.attacker.example", local, resolve=resolve)


def test_a_name_that_does_not_resolve_is_refused_in_aws_mode_only() -> None:
    with pytest.raises(Invalid, match="does not resolve"):
        refuse_internal_host("gone.example", settings("aws"), resolve=resolve)
    refuse_internal_host("gone.example", settings("local"), resolve=resolve)  # it may exist later (a test server)


def test_tenant_urls_are_checked_in_aws_mode_only() -> None:
    refuse_internal_url("http://127.0.0.1:9/app", settings("local"), resolve=resolve)
    refuse_internal_url(None, settings("aws"), resolve=resolve)
    refuse_internal_url("https://smtp.example.com/app", settings("aws"), resolve=resolve)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://smtp.example.com/app", "client_base_url: must be https in aws mode"),
        ("https://localhost/app", "client_base_url: host: 'localhost' resolves to 127.0.0.1 (loopback)"),
        ("https://metadata.attacker.example", "client_base_url: host: 'metadata.attacker.example' resolves to"),
        ("https://[::1/app", "client_base_url: not a URL"),
    ],
)
def test_aws_mode_refuses_a_tenant_url_that_is_not_https_to_a_public_host(url: str, expected: str) -> None:
    with pytest.raises(Invalid) as refused:
        refuse_internal_url(url, settings("aws"), resolve=resolve)
    assert str(refused.value).startswith(expected)
