"""The by_tenant index sharded per tenant (mailproxy/dal/keys.py, tenant_index_pk): GET /messages merges
every shard newest first, and its cursor (a position per shard) pages through with no duplicate and no gap,
filtered or not; the walk of bulk jobs reads every shard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import settings
from mailproxy.services import Services
from tests.conftest import AUTH
from tests.integration.test_jobs import add_in_bulk

SHARDS = 16


@pytest.fixture(autouse=True)
def many_shards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GMP_TENANT_INDEX_SHARDS", str(SHARDS))
    settings.cache_clear()  # the key functions read the process's settings
    yield
    settings.cache_clear()


def listed(api: TestClient, **params: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        answer = api.get("/messages", headers=AUTH, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        pages.append([message["id"] for message in answer.json()["messages"]])
        cursor = answer.json()["cursor"]
        if cursor is None:
            return pages


def test_pages_over_many_shards_come_newest_first_without_duplicates_or_gaps(
    api: TestClient, services: Services
) -> None:
    ids = [f"m-{n:03d}" for n in range(130)]  # created in this order
    add_in_bulk(services, ids)
    stored = {item["tenant_index_pk"] for item in services.queries.tenant_messages("default")}
    assert stored == {f"default#{shard}" for shard in range(SHARDS)}  # every shard holds some
    pages = listed(api, limit=7)
    assert all(len(page) == 7 for page in pages[:-1])
    assert [i for page in pages for i in page] == ids[::-1]


def test_a_filtered_listing_pages_through_every_shard(api: TestClient, services: Services) -> None:
    add_in_bulk(services, [f"a-{n:03d}" for n in range(40)], account_id="smtp-a")
    add_in_bulk(services, [f"b-{n:03d}" for n in range(40)], account_id="smtp-b")
    listed_b = [i for page in listed(api, limit=6, account_id="smtp-b") for i in page]
    assert listed_b == [f"b-{n:03d}" for n in range(40)][::-1]


def test_a_cursor_is_refused_for_another_tenant_and_when_forged(api: TestClient, services: Services) -> None:
    add_in_bulk(services, [f"m-{n}" for n in range(5)])
    cursor = api.get("/messages", headers=AUTH, params={"limit": 2}).json()["cursor"]
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).status_code == 200
    other = api.get("/messages", headers=AUTH, params={"tenant_id": "acme", "cursor": cursor})
    assert other.status_code == 400 and "cursor" in other.text
    assert api.get("/messages", headers=AUTH, params={"cursor": "eyJ0IjoxfQ"}).status_code == 400


def test_the_walk_of_bulk_jobs_reads_every_shard_once(services: Services) -> None:
    ids = [f"w-{n:03d}" for n in range(150)]
    add_in_bulk(services, ids)
    walked = [item["id"] for item in services.queries.tenant_messages("default")]
    assert sorted(walked) == ids
