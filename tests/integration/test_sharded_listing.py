"""A tenant's index sharded (mailproxy/dal/tenant_index.py: one listing item per ingestion request, on one
of the tenant's shards): GET /messages merges every shard newest first, and its cursor (a position per
shard) pages through with no duplicate and no gap, filtered or not; the walk of bulk jobs reads every shard,
from inside a listing item too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import settings
from mailproxy.dal.message_queries import STALE_LISTING_MS, WalkPosition
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
    ids = [f"m-{n:03d}" for n in range(130)]  # created in this order, five to a request
    for start in range(0, len(ids), 5):
        add_in_bulk(services, ids[start : start + 5])
    shards = {item["listed_in"].split("#")[0] for item in services.queries.tenant_messages("default")}
    assert len(shards) > 4  # 26 listing items over 16 shards
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


def test_listing_items_spread_a_tenants_requests_over_every_shard(services: Services) -> None:
    references = {services.messages.index.add("default", ["m"], created_ms=n, expires_at=None) for n in range(400)}
    assert {reference.split("#")[0] for reference in references} == {str(shard) for shard in range(SHARDS)}


def test_a_walk_resumes_inside_one_requests_listing_item_without_repeating_or_skipping(services: Services) -> None:
    ids = [f"r-{n:03d}" for n in range(250)]
    add_in_bulk(services, ids)  # one request: one listing item of 250 ids
    position = WalkPosition()
    pages: list[list[str]] = []
    while True:
        items, following = services.queries.tenant_page("default", position, limit=100)
        pages.append([item["id"] for item in items])
        if following is None:
            break
        position = WalkPosition.from_dict(following.as_dict())  # as a job's checkpoint stores it
    assert [len(page) for page in pages if page] == [100, 100, 50]
    assert [i for page in pages for i in page] == ids


def test_a_message_stored_by_another_request_is_listed_once(api: TestClient, services: Services) -> None:
    add_in_bulk(services, ["dup", "other"])
    services.messages.index.add("default", ["dup"], created_ms=int(time.time() * 1000), expires_at=None)
    assert [i for page in listed(api, limit=10) for i in page] == ["other", "dup"]


def test_a_walk_removes_old_listing_items_whose_messages_are_all_gone(services: Services) -> None:
    old_ms = int(time.time() * 1000) - STALE_LISTING_MS - 1
    add_in_bulk(services, ["kept"])
    services.messages.index.add("default", ["gone-1", "gone-2"], created_ms=old_ms, expires_at=None)
    young = services.messages.index.add("default", ["writing"], created_ms=int(time.time() * 1000), expires_at=None)
    assert [item["id"] for item in services.queries.tenant_messages("default")] == ["kept"]
    remaining = [
        f"{shard}#{entry.listing}"
        for shard in range(SHARDS)
        for entry in services.queries.index.oldest("default", shard, start=None, created_before_ms=None)
    ]
    assert len(remaining) == 2 and young in remaining  # the empty old one is gone, the young one kept
