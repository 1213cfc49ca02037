"""The suppression list: its store (normalization, pages, batch reads), its routes (tenant scoping,
validation, the audit trail) and the filtering functions the ingestion and the sender call."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from mailproxy.dal.records import StoredAccount
from mailproxy.dal.suppressions import normalize_address
from mailproxy.logic.suppression import filter_recipients
from mailproxy.models import AccountIn, MessageIn, RejectionCode, TenantIn
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload


@pytest.fixture
def acme_key(api: TestClient) -> dict[str, str]:
    """Tenants `acme` and `other`; the header of acme's own key."""
    for tenant in ("acme", "other"):
        assert api.post("/tenant", headers=AUTH, json={"id": tenant}).status_code == 200
    return {"X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]}


# -- the store ---------------------------------------------------------------------------------------------


def test_an_address_is_compared_whole_and_case_insensitively_without_its_display_name() -> None:
    assert normalize_address("Bob Smith <Bob.Smith@Example.COM>") == "bob.smith@example.com"
    assert normalize_address("  bob.smith@example.com ") == "bob.smith@example.com"


def test_suppressed_answers_the_listed_addresses_of_that_tenant_only(services: Services) -> None:
    services.suppressions.add("acme", "Gone@Example.com", "hard_bounce", "m-17")
    services.suppressions.add("other", "complainer@example.com", "complaint")
    asked = ["gone@example.com", "Someone <GONE@example.com>", "complainer@example.com", "fine@example.com"]
    assert services.suppressions.suppressed("acme", asked) == {"gone@example.com"}
    entries, _ = services.suppressions.list("acme")
    assert [(e.address, e.reason, e.source_message_id) for e in entries] == [
        ("Gone@Example.com", "hard_bounce", "m-17")
    ]


def test_suppressed_reads_more_addresses_than_one_batch_holds(services: Services) -> None:
    listed = [f"user{n}@example.com" for n in range(0, 250, 2)]
    assert services.suppressions.add_many("acme", listed, "manual") == len(listed)
    asked = [f"user{n}@example.com" for n in range(250)]
    assert services.suppressions.suppressed("acme", asked) == set(listed)


def test_an_unknown_reason_is_refused_before_anything_is_stored(services: Services) -> None:
    with pytest.raises(ValueError):
        services.suppressions.add("acme", "a@example.com", "disliked")
    assert services.suppressions.list("acme") == ([], None)


def test_adding_an_address_twice_keeps_one_entry_with_the_latest_reason(services: Services) -> None:
    assert services.suppressions.add_many("acme", ["a@example.com", "A@example.com"], "manual") == 1
    services.suppressions.add("acme", "a@example.com", "complaint", "m-1")
    entries, _ = services.suppressions.list("acme")
    assert [(e.reason, e.source_message_id) for e in entries] == [("complaint", "m-1")]


# -- the routes --------------------------------------------------------------------------------------------


def test_a_tenant_key_adds_lists_and_removes_its_own_addresses(api: TestClient, acme_key: dict[str, str]) -> None:
    body = {"addresses": ["Bounced <bounced@example.com>", "left@example.com"], "reason": "unsubscribe"}
    added = api.post("/suppressions", headers=acme_key, json=body)
    assert added.status_code == 200, added.text
    assert added.json() == {"ok": True, "tenant_id": "acme", "added": 2}
    page = api.get("/suppressions", headers=acme_key).json()
    assert [(s["address"], s["reason"]) for s in page["suppressions"]] == [
        ("bounced@example.com", "unsubscribe"),
        ("left@example.com", "unsubscribe"),
    ]
    removed = api.delete(f"/suppressions/{quote('Left@Example.com')}", headers=acme_key)
    assert removed.status_code == 200, removed.text
    again = api.delete("/suppressions/left@example.com", headers=acme_key)
    assert again.status_code == 404 and "address" in again.json()["error"]
    assert [s["address"] for s in api.get("/suppressions", headers=acme_key).json()["suppressions"]] == [
        "bounced@example.com"
    ]


def test_a_tenant_never_sees_or_changes_another_tenants_list(api: TestClient, acme_key: dict[str, str]) -> None:
    other = {"tenant_id": "other", "addresses": ["theirs@example.com"]}
    assert api.post("/suppressions", headers=AUTH, json=other).status_code == 200
    assert api.get("/suppressions", headers=acme_key).json()["suppressions"] == []
    assert api.get("/suppressions?tenant_id=other", headers=acme_key).status_code == 403
    assert api.post("/suppressions", headers=acme_key, json=other).status_code == 403
    assert api.delete("/suppressions/theirs@example.com?tenant_id=other", headers=acme_key).status_code == 403
    assert api.delete("/suppressions/theirs@example.com", headers=acme_key).status_code == 404
    listed = api.get("/suppressions?tenant_id=other", headers=AUTH).json()
    assert listed["tenant_id"] == "other" and [s["address"] for s in listed["suppressions"]] == ["theirs@example.com"]


def test_the_list_comes_page_by_page_with_a_cursor(api: TestClient, acme_key: dict[str, str]) -> None:
    addresses = [f"user{n:02}@example.com" for n in range(7)]
    assert api.post("/suppressions", headers=acme_key, json={"addresses": addresses}).status_code == 200
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/suppressions", headers=acme_key, params=query).json()
        seen += [s["address"] for s in page["suppressions"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == addresses
    bad = api.get("/suppressions", headers=acme_key, params={"cursor": "%%%"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"addresses": ["not an address"]}, "addresses.0"),
        ({"addresses": []}, "addresses"),
        ({"addresses": [f"u{n}@example.com" for n in range(1001)]}, "addresses"),
        ({"addresses": ["a@example.com"], "reason": "disliked"}, "reason"),
        ({}, "addresses"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    api: TestClient, acme_key: dict[str, str], body: dict[str, object], field: str
) -> None:
    answer = api.post("/suppressions", headers=acme_key, json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_changes_to_the_list_are_in_the_audit_log_and_reads_are_not(api: TestClient, acme_key: dict[str, str]) -> None:
    api.post("/suppressions", headers=acme_key, json={"addresses": ["a@example.com", "b@example.com"]})
    api.get("/suppressions", headers=acme_key)
    api.delete("/suppressions/a@example.com", headers=acme_key)
    entries = api.get("/command-log", headers=AUTH, params={"endpoint_filter": "suppressions"}).json()["commands"]
    assert [(e["endpoint"], e["tenant_id"]) for e in entries] == [
        ("POST /suppressions", "acme"),
        ("DELETE /suppressions/{address}", "acme"),
    ]
    assert entries[0]["summary"]["body"]["addresses_count"] == 2


# -- the filtering functions -------------------------------------------------------------------------------


def _message(message_id: str, **fields: object) -> MessageIn:
    return MessageIn.model_validate(message_payload(message_id, tenant_id="acme", **fields))


def test_filter_drops_suppressed_recipients_and_rejects_a_message_left_with_none(services: Services) -> None:
    services.suppressions.add_many("acme", ["gone@example.com", "cc-gone@example.com"], "hard_bounce")
    account = _account(services)
    messages = [
        _message("mixed", to=["Gone <Gone@example.com>", "kept@example.com"], cc=["cc-gone@example.com"]),
        _message("all-gone", to=["gone@example.com"], bcc=["cc-gone@example.com"]),
        _message("untouched", to=["kept@example.com"]),
    ]
    kept, rejected = filter_recipients(services, "acme", account, messages)
    assert [(m.id, m.to, m.cc) for m in kept] == [
        ("mixed", ["kept@example.com"], []),
        ("untouched", ["kept@example.com"], []),
    ]
    assert [(r.id, r.code) for r in rejected] == [("all-gone", RejectionCode.SUPPRESSED)]
    assert "suppression list" in rejected[0].reason


def test_a_message_to_cc_only_survivors_is_kept(services: Services) -> None:
    services.suppressions.add("acme", "gone@example.com", "complaint")
    kept, rejected = filter_recipients(
        services, "acme", _account(services), [_message("m", to=["gone@example.com"], cc=["cc@example.com"])]
    )
    assert rejected == [] and [(m.to, m.cc) for m in kept] == [([], ["cc@example.com"])]


def test_an_account_or_tenant_that_turned_suppression_off_is_not_filtered(services: Services) -> None:
    services.suppressions.add("acme", "gone@example.com", "hard_bounce")
    message = _message("m", to=["gone@example.com"])
    transactional = _account(services, suppression=False)
    assert filter_recipients(services, "acme", transactional, [message]) == ([message], [])
    services.tenants.put(TenantIn(id="acme", suppression=False))
    assert filter_recipients(services, "acme", _account(services), [message]) == ([message], [])


def test_the_suppression_option_round_trips_through_the_api(api: TestClient) -> None:
    assert api.post("/tenant", headers=AUTH, json={"id": "acme", "suppression": False}).status_code == 200
    assert api.get("/tenant/acme", headers=AUTH).json()["tenant"]["suppression"] is False
    body = account_payload(tenant_id="acme", suppression=False)
    assert api.post("/account", headers=AUTH, json=body).status_code == 200
    [account] = api.get("/accounts?tenant_id=acme", headers=AUTH).json()["accounts"]
    assert account["suppression"] is False
    update = api.post("/tenants/update", headers=AUTH, json={"tenant_id": "acme", "suppression": True})
    assert update.status_code == 200 and update.json()["suppression"] is True


def _account(services: Services, **fields: object) -> StoredAccount:
    services.accounts.put(AccountIn.model_validate(account_payload(tenant_id="acme", **fields)))
    stored = services.accounts.get("acme", "smtp-main")
    assert stored is not None
    return stored
