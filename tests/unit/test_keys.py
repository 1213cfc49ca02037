"""Key layout of the tables (docs/design.md): pure string building, pinned because stored keys outlive code."""

from __future__ import annotations

from mailproxy.dal.keys import (
    SHARDS,
    account_pk,
    created_key,
    due_pk,
    message_pk,
    rate_pk,
    report_pk,
    report_sk,
    shard_of,
)


def test_message_account_and_rate_keys_name_the_tenant_first() -> None:
    assert message_pk("acme", "m-1") == "MSG#acme#m-1"
    assert account_pk("acme") == "ACCOUNT#acme"
    assert rate_pk("acme", "smtp-main") == "RATE#acme#smtp-main"
    assert message_pk("acme", "m-1") != message_pk("other", "m-1")


def test_ids_with_hash_or_unicode_are_kept_as_they_are() -> None:
    assert message_pk("t", "a#b") == "MSG#t#a#b"
    assert message_pk("tenant-ü", "mèssage-✉") == "MSG#tenant-ü#mèssage-✉"
    assert report_sk(1, "t", "a#b") == "0000000000001#t#a#b"


def test_shard_is_stable_and_in_range() -> None:
    assert shard_of("acme", "m-1") == shard_of("acme", "m-1")
    shards = {shard_of("acme", f"m-{i}") for i in range(200)}
    assert shards == set(range(SHARDS))  # spread over every shard, never outside them
    assert shard_of("t", "é#x") in range(SHARDS)


def test_shard_separates_tenant_from_message_id() -> None:
    # ("ab", "c") and ("a", "bc") are different messages: a separator keeps their hashes independent.
    pairs = [(f"t{i}", f"m{i}") for i in range(50)]
    assert any(shard_of(t, m) != shard_of(t + m[:1], m[1:]) for t, m in pairs)


def test_due_and_report_partitions() -> None:
    assert due_pk(3) == "DUE#3"
    assert report_pk("acme", 2) == "RPT#acme#2"
    assert report_pk("acme", 2) != report_pk("other", 2)


def test_report_sort_key_orders_by_outcome_time_oldest_first() -> None:
    keys = [report_sk(ts, "t", "m") for ts in (1_700_000_000_000, 999, 1_700_000_000_001, 5)]
    assert sorted(keys) == [report_sk(ts, "t", "m") for ts in (5, 999, 1_700_000_000_000, 1_700_000_000_001)]
    assert report_sk(1_700_000_000_000, "acme", "m-1") == "1700000000000#acme#m-1"
    assert int(report_sk(42, "t", "m").split("#", 1)[0]) == 42  # the reporter reads the age back from it


def test_created_key_orders_newest_last_and_oldest_first() -> None:
    created = [created_key(ms, f"m{ms}") for ms in (20, 3, 1_000, 7)]
    assert sorted(created) == [created_key(ms, f"m{ms}") for ms in (3, 7, 20, 1_000)]
    assert sorted(created, reverse=True)[0] == created_key(1_000, "m1000")  # newest first when read backwards
    assert created_key(5, "m") == "0000000000005#m"
