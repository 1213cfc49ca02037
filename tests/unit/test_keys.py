"""Key layout of the tables (docs/design.md): pure string building, pinned because stored keys outlive code."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mailproxy.config import ConfigError, load_settings, settings
from mailproxy.dal.keys import (
    account_pk,
    due_pk,
    due_shard,
    due_shards,
    job_pk,
    message_pk,
    rate_pk,
    report_pk,
    report_shard,
    report_shards,
    report_sk,
    tenant_index_partition,
    tenant_index_shards,
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
    assert due_shard("acme", "m-1") == due_shard("acme", "m-1")
    shards = {due_shard("acme", f"m-{i}") for i in range(200)}
    assert shards == set(due_shards())  # spread over every shard, never outside them
    assert due_shard("t", "é#x") in due_shards()


def test_shard_separates_tenant_from_message_id() -> None:
    # ("ab", "c") and ("a", "bc") are different messages: a separator keeps their hashes independent.
    pairs = [(f"t{i}", f"m{i}") for i in range(50)]
    assert any(due_shard(t, m) != due_shard(t + m[:1], m[1:]) for t, m in pairs)


def test_due_and_report_partitions() -> None:
    assert due_pk(3) == "DUE#3"
    assert report_pk("acme", 2) == "RPT#acme#2"
    assert report_pk("acme", 2) != report_pk("other", 2)


def test_report_sort_key_orders_by_outcome_time_oldest_first() -> None:
    keys = [report_sk(ts, "t", "m") for ts in (1_700_000_000_000, 999, 1_700_000_000_001, 5)]
    assert sorted(keys) == [report_sk(ts, "t", "m") for ts in (5, 999, 1_700_000_000_000, 1_700_000_000_001)]
    assert report_sk(1_700_000_000_000, "acme", "m-1") == "1700000000000#acme#m-1"
    assert int(report_sk(42, "t", "m").split("#", 1)[0]) == 42  # the reporter reads the age back from it


@pytest.fixture
def shard_counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set the shard counts as a deployment does (GMP_*_SHARDS); the cached settings are read afresh."""

    def set_counts(**counts: int) -> None:
        for name, count in counts.items():
            monkeypatch.setenv(f"GMP_{name.upper()}", str(count))
        settings.cache_clear()

    settings.cache_clear()
    yield set_counts
    settings.cache_clear()


def test_shard_counts_come_from_the_settings_with_the_documented_defaults(shard_counts: Callable[..., None]) -> None:
    assert (due_shards(), report_shards(), tenant_index_shards()) == (range(4), range(4), range(8))
    shard_counts(due_shards=16, report_shards=6, tenant_index_shards=32)
    assert (due_shards(), report_shards(), tenant_index_shards()) == (range(16), range(6), range(32))
    assert {due_shard("acme", f"m-{i}") for i in range(500)} == set(range(16))
    assert {report_shard("acme", f"m-{i}") for i in range(500)} == set(range(6))


def test_a_shard_count_below_the_one_deployments_start_with_is_refused(shard_counts: Callable[..., None]) -> None:
    # Readers query shards 0..count-1: a smaller count than the one items were written with would hide them.
    for name, smallest in (("due_shards", 4), ("report_shards", 4), ("tenant_index_shards", 8)):
        with pytest.raises(ConfigError, match=f"GMP_{name.upper()}"):
            shard_counts(**{name: smallest - 1})
            load_settings()


def test_tenant_index_partition_names_the_tenant_and_a_shard() -> None:
    assert tenant_index_partition("acme", 3) == "LIST#acme#3"


def test_job_items_are_partitioned_per_tenant() -> None:
    assert job_pk("acme") == "JOB#acme" != job_pk("other")
