"""Parsing bounce, complaint and PEC mail (pure: no servers), and the correlation header it relies on."""

from __future__ import annotations

import pytest

from mailproxy.logic.bounces.correlation import correlation_id, correlation_key, parse_correlation_id
from mailproxy.logic.bounces.parse import BounceNotice, PecReceipt, Unparsed, parse_mail
from mailproxy.logic.mime import OutgoingMail, build_message
from tests.bounce_mails import (
    RECIPIENT,
    TEST_KEY_SECRET,
    arf_complaint,
    exim_bounce,
    gmail_dsn,
    not_a_bounce,
    office365_dsn,
    original,
    pec_receipt,
    postfix_dsn,
)

KEY = correlation_key(TEST_KEY_SECRET)
NOW = 1_800_000_000


def bounce(raw: bytes) -> BounceNotice:
    parsed = parse_mail(raw, key=KEY, now=NOW)
    assert isinstance(parsed, BounceNotice), parsed
    return parsed


def test_correlation_id_round_trips_and_names_tenant_and_id() -> None:
    value = correlation_id("acme", "inv.42", key=KEY)
    assert parse_correlation_id(value, key=KEY) == ("acme", "inv.42")


@pytest.mark.parametrize(
    "value",
    [
        correlation_id("acme", "m1", key=correlation_key("another key")),  # signed by someone else
        correlation_id("acme", "m1", key=KEY).replace("YWNtZQ", "b3RoZXI"),  # tenant swapped for "other"
        "not-a-correlation-id",
        "a.b.c",
        "",
    ],
)
def test_correlation_id_that_does_not_verify_names_nothing(value: str) -> None:
    assert parse_correlation_id(value, key=KEY) is None


def test_every_built_message_carries_the_correlation_header_and_a_client_cannot_set_it() -> None:
    mail = OutgoingMail(
        from_addr="a@example.com", to=["b@example.com"], subject="s", body="b", headers={"X-Genro-Mail-ID": "forged"}
    )
    message, _ = build_message(mail, message_id="<1@example.com>", correlation=correlation_id("t", "1", key=KEY))
    assert message.get_all("X-Genro-Mail-ID") == [correlation_id("t", "1", key=KEY)]


def test_postfix_dsn_is_a_hard_bounce_with_its_status_and_diagnostic() -> None:
    notice = bounce(postfix_dsn(original("acme", "m1", KEY)))
    assert (notice.tenant_id, notice.message_id, notice.recipient) == ("acme", "m1", RECIPIENT)
    assert (notice.bounce_type, notice.bounce_code, notice.bounce_ts) == ("hard", "511", NOW)
    assert notice.bounce_reason is not None and notice.bounce_reason.startswith("550 5.1.1")


def test_delayed_dsn_with_only_the_returned_headers_is_a_soft_bounce() -> None:
    notice = bounce(gmail_dsn(original("acme", "m2", KEY)))
    assert (notice.message_id, notice.bounce_type, notice.bounce_code) == ("m2", "soft", "422")


def test_4xx_status_in_a_failed_dsn_is_soft() -> None:
    notice = bounce(postfix_dsn(original("acme", "m1", KEY), status="4.4.1"))
    assert (notice.bounce_type, notice.bounce_code) == ("soft", "441")


def test_office365_dsn_keeps_a_long_enhanced_status() -> None:
    notice = bounce(office365_dsn(original("acme", "m3", KEY)))
    assert (notice.bounce_type, notice.bounce_code) == ("hard", "5.1.10")
    assert notice.bounce_reason is not None and "RecipientNotFound" in notice.bounce_reason


def test_exim_plain_text_bounce_is_found_by_the_detectors_and_the_quoted_header() -> None:
    notice = bounce(exim_bounce(original("acme", "m4", KEY)))
    assert (notice.message_id, notice.recipient, notice.bounce_type, notice.bounce_code) == (
        "m4",
        RECIPIENT,
        "hard",
        "511",
    )


def test_arf_report_is_a_complaint() -> None:
    notice = bounce(arf_complaint(original("acme", "m5", KEY)))
    assert (notice.bounce_type, notice.recipient, notice.bounce_reason) == ("complaint", RECIPIENT, "complaint: abuse")


@pytest.mark.parametrize(
    ("receipt", "event"),
    [
        ("accettazione", "pec_acceptance"),
        ("non-accettazione", "pec_error"),
        ("presa-in-carico", "pec_relay"),
        ("avvenuta-consegna", "pec_delivery"),
        ("mancata-consegna", "pec_error"),
    ],
)
def test_pec_receipts_map_to_their_events(receipt: str, event: str) -> None:
    parsed = parse_mail(pec_receipt(original("pa", "p1", KEY), receipt), key=KEY, now=NOW)
    assert isinstance(parsed, PecReceipt)
    assert (parsed.tenant_id, parsed.message_id, parsed.pec_event, parsed.pec_ts) == ("pa", "p1", event, NOW)
    assert parsed.pec_details == f"PEC {receipt}"


def test_pec_receipt_without_the_original_is_uncorrelated() -> None:
    parsed = parse_mail(pec_receipt(original("pa", "p1", KEY), "accettazione", attach_original=False), key=KEY, now=NOW)
    assert isinstance(parsed, Unparsed) and parsed.reason == "uncorrelated"


def test_bounce_with_a_forged_header_is_a_bad_correlation() -> None:
    parsed = parse_mail(
        postfix_dsn(original("acme", "m1", KEY, correlation="YWNtZQ.bTE.AAAAAAAAAAAAAAAAAAAAAA")), key=KEY, now=NOW
    )
    assert isinstance(parsed, Unparsed) and parsed.reason == "bad_correlation"


@pytest.mark.parametrize(
    "raw", [not_a_bounce(), b"", b"\x00\xff garbage\r\n", b"Content-Type: multipart/report\r\n\r\n"]
)
def test_ordinary_or_broken_mail_is_not_a_notice(raw: bytes) -> None:
    parsed = parse_mail(raw, key=KEY, now=NOW)
    assert isinstance(parsed, Unparsed) and parsed.reason == "not_a_notice"
