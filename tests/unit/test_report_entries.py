"""How a delivery report entry is built from a stored outbox item, the body a batch of them makes, and how
that body is signed (mailproxy/logic/reports.py): pure functions, no AWS and no server."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from mailproxy.logic.reports import ReportTarget, is_reportable, report_body, report_entry, signature

BASE = {"id": "m-1", "tenant_id": "acme", "account_id": "smtp-main", "priority": "2"}


def _item(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def test_a_sent_entry_carries_sent_ts_only() -> None:
    entry = report_entry(_item(status="sent", sent_ts=100, error_ts=90, error="old", deferred_ts=80))
    assert entry.wire() == {
        "id": "m-1",
        "tenant_id": "acme",
        "account_id": "smtp-main",
        "priority": 2,
        "sent_ts": 100,
        "error_ts": None,
        "error": None,
        "deferred_ts": None,
    }


def test_an_error_entry_carries_error_ts_and_error() -> None:
    entry = report_entry(_item(status="error", error_ts=90, error="550 no such user", sent_ts=1))
    assert (entry.sent_ts, entry.error_ts, entry.error, entry.deferred_ts) == (None, 90, "550 no such user", None)
    assert "deferred_reason" not in entry.wire()


def test_a_deferred_entry_carries_deferred_ts_and_reason() -> None:
    entry = report_entry(_item(status="deferred", deferred_ts=80, deferred_reason="rate limit", sent_ts=1))
    assert (entry.sent_ts, entry.error_ts, entry.deferred_ts) == (None, None, 80)
    assert entry.wire()["deferred_reason"] == "rate limit"


@pytest.mark.parametrize("status", ["queued", "sending"])
def test_an_attempt_begun_after_a_deferral_reports_the_deferral(status: str) -> None:
    entry = report_entry(_item(status=status, deferred_ts=80, deferred_reason="busy"))
    assert (entry.deferred_ts, entry.deferred_reason, entry.sent_ts) == (80, "busy", None)


def test_every_entry_names_its_tenant() -> None:
    assert report_entry(_item(status="sent", sent_ts=1, tenant_id="other")).wire()["tenant_id"] == "other"


@pytest.mark.parametrize(
    ("fields", "reportable"),
    [
        ({"status": "sent", "sent_ts": 1}, True),
        ({"status": "sent", "deferred_ts": 1}, False),  # torn: the outcome's own timestamp is missing
        ({"status": "error", "error_ts": 1}, True),
        ({"status": "error"}, False),
        ({"status": "deferred", "deferred_ts": 1}, True),
        ({"status": "queued", "deferred_ts": 1}, True),
        ({"status": "sending"}, False),
    ],
)
def test_only_an_item_with_its_outcome_timestamp_is_reportable(fields: dict[str, Any], reportable: bool) -> None:
    assert is_reportable(_item(**fields)) is reportable


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"delivery_report":[]}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body, 1700000000) == f"t=1700000000,v1={expected}"
    assert signature("s3cret", body, 1700000001) != signature("s3cret", body, 1700000000)
    assert signature("other", body, 1700000000) != signature("s3cret", body, 1700000000)


def test_headers_sign_the_body_and_carry_the_credential() -> None:
    body = b"{}"
    bearer = ReportTarget(url="https://client.example/sync", token="tok", signing_secret="s3cret").headers(body, 5)
    assert bearer["Authorization"] == "Bearer tok"
    assert bearer["X-GMP-Signature"] == signature("s3cret", body, 5)
    basic = ReportTarget(url="https://client.example/sync", user="u", password="p").headers(body, 5)
    assert basic["Authorization"] == "Basic dTpw"
    assert "X-GMP-Signature" not in basic


def test_the_body_is_compact_json_of_the_entries_in_order() -> None:
    sent = report_entry(_item(status="sent", sent_ts=100))
    deferred = report_entry(_item(id="m-2", status="deferred", deferred_ts=80, deferred_reason="rate limit"))
    body = report_body([sent, deferred])
    assert body == (
        b'{"delivery_report":['
        b'{"id":"m-1","tenant_id":"acme","account_id":"smtp-main","priority":2,'
        b'"sent_ts":100,"error_ts":null,"error":null,"deferred_ts":null},'
        b'{"id":"m-2","tenant_id":"acme","account_id":"smtp-main","priority":2,'
        b'"sent_ts":null,"error_ts":null,"error":null,"deferred_ts":80,"deferred_reason":"rate limit"}]}'
    )
    assert json.loads(body) == {"delivery_report": [sent.wire(), deferred.wire()]}


def test_an_empty_batch_is_an_empty_list() -> None:
    assert report_body([]) == b'{"delivery_report":[]}'


def test_the_body_is_ascii_with_other_characters_escaped() -> None:
    entry = report_entry(_item(status="error", error_ts=90, error="550 boîte inconnue"))
    body = report_body([entry])
    assert body.isascii()
    assert b"bo\\u00eete" in body
    assert json.loads(body)["delivery_report"][0]["error"] == "550 boîte inconnue"
