"""The suppression list from the client (`suppressions`, `iter_suppressions`, `add_suppressions`,
`remove_suppression`) and from `gmp suppressions list|add|remove`, and the bounce mailbox's client methods,
against the local stack."""

from __future__ import annotations

import pytest

from mailproxy_client import MailProxyClient, NotFound
from tests.client.test_cli import Gmp, gmp, proxy  # noqa: F401 - the fixtures of the gmp tests

pytestmark = pytest.mark.stack


def test_the_client_adds_pages_through_and_removes_suppressed_addresses(proxy: MailProxyClient) -> None:  # noqa: F811
    addresses = [f"client{n}@example.com" for n in range(5)]
    assert proxy.add_suppressions(addresses, "unsubscribe")["added"] == 5
    first = proxy.suppressions(limit=2)
    assert len(first.suppressions) == 2 and first.cursor is not None
    listed = [entry for entry in proxy.iter_suppressions(page_size=2) if entry.address.startswith("client")]
    assert [(entry.address, entry.reason) for entry in listed] == [(a, "unsubscribe") for a in addresses]
    assert proxy.remove_suppression("Client0@Example.com")["ok"] is True
    with pytest.raises(NotFound):
        proxy.remove_suppression("client0@example.com")


def test_gmp_suppressions_add_list_remove(gmp: Gmp) -> None:  # noqa: F811
    added = gmp("suppressions", "add", "cli-a@example.com", "cli-b@example.com", "--reason", "complaint")
    assert added.code == 0, added.err
    assert "2 address(es) suppressed" in added.out

    listed = gmp("suppressions", "list")
    assert listed.code == 0
    row = next(line for line in listed.out.splitlines() if "cli-a@example.com" in line)
    assert "complaint" in row
    assert gmp("suppressions").out == listed.out  # `suppressions` alone lists
    as_json = [entry for entry in gmp("suppressions", "--json").json() if entry["address"].startswith("cli-")]
    assert [(entry["address"], entry["reason"]) for entry in as_json] == [
        ("cli-a@example.com", "complaint"),
        ("cli-b@example.com", "complaint"),
    ]

    removed = gmp("suppressions", "remove", "cli-a@example.com", "--json")
    assert removed.code == 0 and removed.json()["address"] == "cli-a@example.com"
    again = gmp("suppressions", "remove", "cli-a@example.com")
    assert again.code == 1 and "HTTP 404" in again.err and "suppression list" in again.err
    refused = gmp("suppressions", "add", "not-an-address")
    assert refused.code == 1 and "addresses" in refused.err


def test_the_client_sets_reads_and_reloads_the_bounce_mailbox(proxy: MailProxyClient) -> None:  # noqa: F811
    password = "client-bounce-password"
    saved = proxy.set_bounce_config(enabled=True, imap_host="127.0.0.1", imap_user="bounces", imap_password=password)
    assert saved["ok"] is True
    shown = proxy.bounce_config()
    assert (shown["enabled"], shown["imap_host"], shown["has_password"]) == (True, "127.0.0.1", True)
    assert password not in str(shown)
    assert proxy.reload_bounce()["enabled"] is True
