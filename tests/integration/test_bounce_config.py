"""The deployment's bounce mailbox through `instance/set_bounce_config`, `get_bounce_config` and
`reload_bounce` (admin only, the password encrypted at rest and never shown, the SMTP hosts' SSRF guard), and
the PEC fields of an account (`accounts/add_pec`, `POST /account`), their inbox password masked and sealed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailproxy.dal.bounce_config import BOUNCE_CONFIG_KEY, MAILBOX_STATE_KEY
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload

IMAP_PASSWORD = "bounce-mailbox-password-never-shown"
PEC_PASSWORD = "pec-inbox-password-never-shown"
MAILBOX = {
    "enabled": True,
    "imap_host": "127.0.0.1",
    "imap_port": 1993,
    "imap_user": "bounces",
    "imap_password": IMAP_PASSWORD,
    "imap_folder": "Bounces",
    "poll_interval": 120,
    "return_path": "bounces@example.com",
}


@pytest.fixture
def tenant_key(api: TestClient) -> dict[str, str]:
    assert api.post("/tenant", headers=AUTH, json={"id": "acme"}).status_code == 200
    return {"X-API-Token": api.post("/tenant/acme/api-key", headers=AUTH).json()["api_key"]}


def _raw_item(services: Services, key: dict[str, dict[str, str]]) -> dict[str, object] | None:
    answer = services.dynamodb.get_item(TableName=services.settings.config_table, Key=key, ConsistentRead=True)
    return answer.get("Item")  # type: ignore[return-value]


def test_an_unset_mailbox_reads_as_disabled_defaults(api: TestClient) -> None:
    answer = api.get("/instance/get_bounce_config", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {
        "ok": True,
        "enabled": False,
        "imap_host": None,
        "imap_port": 993,
        "imap_user": None,
        "has_password": False,
        "imap_folder": "INBOX",
        "imap_ssl": True,
        "poll_interval": 60,
        "return_path": None,
    }


def test_the_mailbox_is_set_and_read_back_without_its_password(api: TestClient, services: Services) -> None:
    saved = api.post("/instance/set_bounce_config", headers=AUTH, json=MAILBOX)
    assert saved.status_code == 200, saved.text
    assert saved.json()["ok"] is True
    shown = api.get("/instance/get_bounce_config", headers=AUTH)
    assert IMAP_PASSWORD not in shown.text and "imap_password" not in shown.json()
    assert shown.json() == {
        **{k: v for k, v in MAILBOX.items() if k != "imap_password"},
        "ok": True,
        "has_password": True,
        "imap_ssl": True,
    }
    raw = _raw_item(services, BOUNCE_CONFIG_KEY)
    assert raw is not None and IMAP_PASSWORD not in str(raw)
    stored = services.bounce_config.get()
    assert services.bounce_config.password(stored) == IMAP_PASSWORD


def test_fields_left_out_or_null_keep_their_stored_values(api: TestClient, services: Services) -> None:
    api.post("/instance/set_bounce_config", headers=AUTH, json=MAILBOX)
    change = {"poll_interval": 300, "imap_host": None, "imap_password": None}
    assert api.post("/instance/set_bounce_config", headers=AUTH, json=change).status_code == 200
    shown = api.get("/instance/get_bounce_config", headers=AUTH).json()
    assert (shown["poll_interval"], shown["imap_host"], shown["has_password"]) == (300, "127.0.0.1", True)
    assert services.bounce_config.password(services.bounce_config.get()) == IMAP_PASSWORD


def test_an_enabled_mailbox_needs_a_host(api: TestClient) -> None:
    answer = api.post("/instance/set_bounce_config", headers=AUTH, json={"enabled": True})
    assert answer.status_code == 400 and "imap_host" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"imap_port": 0}, "imap_port"),
        ({"poll_interval": 1}, "poll_interval"),
        ({"return_path": "not an address"}, "return_path"),
        ({"imap_host": "bad host\r\nname"}, "imap_host"),
    ],
)
def test_bad_fields_are_a_422_naming_them(api: TestClient, body: dict[str, object], field: str) -> None:
    answer = api.post("/instance/set_bounce_config", headers=AUTH, json=body)
    assert answer.status_code == 422 and field in answer.text


def test_an_imap_host_the_ssrf_guard_refuses_is_a_422_and_nothing_is_stored(api: TestClient) -> None:
    answer = api.post("/instance/set_bounce_config", headers=AUTH, json={**MAILBOX, "imap_host": "169.254.169.254"})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("imap_host:")
    assert api.get("/instance/get_bounce_config", headers=AUTH).json()["imap_host"] is None


def test_reload_forgets_the_pollers_mailbox_state(api: TestClient, services: Services) -> None:
    api.post("/instance/set_bounce_config", headers=AUTH, json=MAILBOX)
    state = {**MAILBOX_STATE_KEY, "uidvalidity": {"N": "7"}, "last_uid": {"N": "42"}}
    services.dynamodb.put_item(TableName=services.settings.config_table, Item=state)
    answer = api.post("/instance/reload_bounce", headers=AUTH, json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True and answer.json()["enabled"] is True
    assert _raw_item(services, MAILBOX_STATE_KEY) is None


def test_the_bounce_methods_are_for_the_admin_only(api: TestClient, tenant_key: dict[str, str]) -> None:
    assert api.get("/instance/get_bounce_config", headers=tenant_key).status_code == 403
    assert api.post("/instance/set_bounce_config", headers=tenant_key, json=MAILBOX).status_code == 403
    assert api.post("/instance/reload_bounce", headers=tenant_key, json={}).status_code == 403
    assert api.get("/instance/get_bounce_config").status_code == 401


# -- PEC accounts ------------------------------------------------------------------------------------------


def test_a_pec_account_round_trips_its_inbox_with_the_password_masked(api: TestClient, services: Services) -> None:
    body = {
        **account_payload(tenant_id="acme"),
        "imap_host": "127.0.0.1",
        "imap_port": 1993,
        "imap_user": "pec-user",
        "imap_password": PEC_PASSWORD,
        "imap_folder": "Ricevute",
    }
    answer = api.post("/accounts/add_pec", headers=AUTH, json=body)
    assert answer.status_code == 200, answer.text
    row = answer.json()
    assert PEC_PASSWORD not in answer.text
    assert (row["is_pec_account"], row["imap_host"], row["imap_port"], row["imap_user"], row["imap_folder"]) == (
        True,
        "127.0.0.1",
        1993,
        "pec-user",
        "Ricevute",
    )
    assert row["imap_password"] == "***"
    listed = api.get("/accounts?tenant_id=acme", headers=AUTH)
    assert PEC_PASSWORD not in listed.text and listed.json()["accounts"][0]["is_pec_account"] is True
    stored = services.accounts.get("acme", "smtp-main")
    assert stored is not None and PEC_PASSWORD not in str(stored.model_dump())
    assert services.accounts.imap_credentials(stored) == ("pec-user", PEC_PASSWORD)


def test_a_pec_inbox_without_its_own_credentials_uses_the_smtp_ones(api: TestClient, services: Services) -> None:
    body = {**account_payload(tenant_id="acme"), "is_pec_account": True, "imap_host": "127.0.0.1"}
    assert api.post("/account", headers=AUTH, json=body).status_code == 200
    [row] = api.get("/accounts?tenant_id=acme", headers=AUTH).json()["accounts"]
    assert (row["imap_port"], row["imap_folder"], row["imap_user"], row["imap_password"]) == (993, "INBOX", None, None)
    stored = services.accounts.get("acme", "smtp-main")
    assert stored is not None
    assert services.accounts.imap_credentials(stored) == ("sender", account_payload()["password"])


def test_a_pec_account_needs_its_inbox_host(api: TestClient) -> None:
    body = {**account_payload(tenant_id="acme"), "is_pec_account": True}
    answer = api.post("/account", headers=AUTH, json=body)
    assert answer.status_code == 422 and "imap_host" in answer.text
    assert api.post("/accounts/add_pec", headers=AUTH, json=account_payload(tenant_id="acme")).status_code == 422


def test_add_pec_refuses_an_inbox_the_ssrf_guard_refuses(api: TestClient) -> None:
    body = {**account_payload(tenant_id="acme"), "imap_host": "169.254.169.254"}
    answer = api.post("/accounts/add_pec", headers=AUTH, json=body)
    assert answer.status_code == 422 and answer.json()["error"].startswith("imap_host:")


def test_post_account_refuses_a_pec_inbox_the_ssrf_guard_refuses(api: TestClient, services: Services) -> None:
    body = {**account_payload(tenant_id="acme"), "is_pec_account": True, "imap_host": "169.254.169.254"}
    answer = api.post("/account", headers=AUTH, json=body)
    assert answer.status_code == 422 and answer.json()["error"].startswith("imap_host:")
    assert services.accounts.get("acme", body["id"]) is None
