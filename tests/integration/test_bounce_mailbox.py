"""The bounce and PEC pollers against a real Dovecot (tests/imap_server.py): notices arrive by IMAP APPEND as
a remote MTA's mail would, the poller reads them over IMAPS and records them on the messages (moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import count

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.dal.counters import Tally
from mailproxy.dal.messages import NewMessage, Outcome
from mailproxy.dal.records import StoredBounceConfig
from mailproxy.dal.schema import LocalResources
from mailproxy.logic.bounces.correlation import correlation_key
from mailproxy.logic.bounces.mailbox import (
    HANDLED_KEYWORD,
    PROCESSED_FOLDER,
    UNPARSED_KEYWORD,
    Mailbox,
    PollResult,
    poll,
)
from mailproxy.logic.bounces.rates import complaint_rates
from mailproxy.logic.reports import Reporter, ReportTarget
from mailproxy.models import MessageStatus, TenantIn
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from tests.bounce_mails import (
    RECIPIENT,
    TEST_KEY_SECRET,
    arf_complaint,
    gmail_dsn,
    not_a_bounce,
    original,
    pec_receipt,
    postfix_dsn,
)
from tests.conftest import AUTH, account_payload, make_settings
from tests.imap_server import DovecotServer, dovecot_fixture  # noqa: F401  (the `dovecot` fixture)
from tests.report_server import ReportEndpoint, report_endpoint

KEY = correlation_key(TEST_KEY_SECRET)
_folders = count()


@pytest.fixture
def settings(aws: LocalResources, dovecot: DovecotServer) -> Settings:
    """The deployment trusts the test CA for IMAPS and signs with the test key (the handler reads both)."""
    return make_settings(aws, imap_ca_file=str(dovecot.ca_file), correlation_secret=TEST_KEY_SECRET)


def sent_message(services: Services, tenant_id: str, message_id: str, *, now: int) -> None:
    new = NewMessage(tenant_id, message_id, "smtp-main", 1, now * 1000, None, None, f"<{message_id}@x>", {})
    services.messages.put_batch([new], now=now, enqueue_grace=900)
    claimed = services.messages.claim(tenant_id, message_id, now=now, lease_seconds=60)
    assert claimed is not None
    assert services.messages.record(claimed, Outcome(MessageStatus.SENT, now))


@pytest.fixture
def folder(dovecot: DovecotServer) -> Iterator[str]:
    """A folder of its own per test, in the one Dovecot of the module."""
    name = f"Bounces{next(_folders)}"
    dovecot.create_folder("bounces", name)
    yield name


def mailbox_of(dovecot: DovecotServer, folder: str, *, user: str = "bounces", tenant_id: str | None = None) -> Mailbox:
    return Mailbox(
        key=f"test#{user}#{folder}",
        host=dovecot.host,
        port=dovecot.port,
        user=user,
        password=dovecot.users[user],
        folder=folder,
        tenant_id=tenant_id,
    )


def run(services: Services, dovecot: DovecotServer, mailbox: Mailbox, now: int) -> PollResult:
    return poll(services, mailbox, key=KEY, now=now, ca_file=str(dovecot.ca_file), force=True)


@pytest.fixture
def client() -> Iterator[ReportEndpoint]:
    with report_endpoint() as endpoint:
        yield endpoint


def report_run(services: Services, client: ReportEndpoint, *, now: float) -> None:
    """A scheduled reporter's run posting every tenant's outbox to `client`."""
    target = ReportTarget(client.url)
    reporter = Reporter(services, lambda tenant_id: target, logger=logger, metrics=metrics, clock=lambda: now)
    reporter.run(budget_seconds=20, batch_size=100)


def test_hard_bounce_is_recorded_reported_and_suppressed(
    services: Services,
    dovecot: DovecotServer,
    folder: str,
) -> None:
    now = int(time.time())
    sent_message(services, "acme", "m1", now=now)
    dovecot.append("bounces", postfix_dsn(original("acme", "m1", KEY)), folder)

    result = run(services, dovecot, mailbox_of(dovecot, folder), now)

    assert (result.applied, result.unparsed) == (1, 0)
    item = services.messages.get("acme", "m1")
    assert item is not None
    assert (item["bounce_type"], item["bounce_code"], item["bounce_ts"]) == ("hard", "511", now)
    assert "User unknown" in item["bounce_reason"]
    assert item["history"][-1]["event"] == "bounced"
    assert any(entry["id"] == "m1" for entry in services.outbox.pending(10, "acme"))
    assert services.suppressions.suppressed("acme", [RECIPIENT]) == {RECIPIENT}
    assert all(HANDLED_KEYWORD in flags and "\\Seen" in flags for flags in dovecot.messages("bounces", folder).values())


def test_a_hard_bounce_reaches_the_client_with_its_fields_is_listed_by_the_bounced_filter_and_suppresses(
    services: Services, dovecot: DovecotServer, folder: str, client: ReportEndpoint, api: TestClient
) -> None:
    now = int(time.time())
    sent_message(services, "default", "bounced1", now=now)
    sent_message(services, "default", "fine1", now=now)
    report_run(services, client, now=now)  # the sent outcomes reach the client (or were reported before)
    client.received.clear()
    dovecot.append("bounces", postfix_dsn(original("default", "bounced1", KEY)), folder)

    run(services, dovecot, mailbox_of(dovecot, folder), now + 60)
    report_run(services, client, now=now + 61)

    [entry] = client.items()
    assert entry["id"] == "bounced1" and entry["sent_ts"] == now  # still sent: the bounce came after
    assert (entry["bounce_type"], entry["bounce_code"], entry["bounce_ts"]) == ("hard", "511", now + 60)
    assert "User unknown" in entry["bounce_reason"] and "pec_event" not in entry
    listed = api.get("/messages", headers=AUTH, params={"bounced": "true"}).json()["messages"]
    assert [(m["id"], m["bounce_type"]) for m in listed] == [("bounced1", "hard")]
    others = api.get("/messages", headers=AUTH, params={"bounced": "false"}).json()["messages"]
    assert [m["id"] for m in others] == ["fine1"] and others[0]["bounce_type"] is None
    assert api.post("/account", headers=AUTH, json=account_payload()).status_code == 200
    again = {"id": "again", "account_id": "smtp-main", "from": "s@example.com", "to": [RECIPIENT], "subject": "x"}
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [again]}).json()
    assert answer["queued"] == 0 and [r["code"] for r in answer["rejected"]] == ["suppressed"]
    assert services.messages.get("default", "again") is None  # never queued, so never delivered


def test_soft_bounce_is_recorded_and_suppresses_nothing(
    services: Services,
    dovecot: DovecotServer,
    folder: str,
) -> None:
    now = int(time.time())
    sent_message(services, "acme", "m2", now=now)
    dovecot.append("bounces", gmail_dsn(original("acme", "m2", KEY)), folder)

    run(services, dovecot, mailbox_of(dovecot, folder), now)

    item = services.messages.get("acme", "m2")
    assert item is not None and (item["bounce_type"], item["bounce_code"]) == ("soft", "422")
    assert services.suppressions.suppressed("acme", [RECIPIENT]) == set()


def test_complaint_is_recorded_as_its_own_type(
    services: Services,
    dovecot: DovecotServer,
    folder: str,
) -> None:
    now = int(time.time())
    sent_message(services, "acme", "m3", now=now)
    dovecot.append("bounces", arf_complaint(original("acme", "m3", KEY)), folder)

    run(services, dovecot, mailbox_of(dovecot, folder), now)

    item = services.messages.get("acme", "m3")
    assert item is not None and item["bounce_type"] == "complaint"
    assert services.suppressions.suppressed("acme", [RECIPIENT]) == {RECIPIENT}


def test_forged_correlation_id_changes_nothing(
    services: Services,
    dovecot: DovecotServer,
    folder: str,
) -> None:
    now = int(time.time())
    sent_message(services, "victim", "m4", now=now)
    other_key = correlation_key("another deployment")
    dovecot.append("bounces", postfix_dsn(original("victim", "m4", other_key)), folder)

    result = run(services, dovecot, mailbox_of(dovecot, folder), now)

    assert result.unparsed == 1
    item = services.messages.get("victim", "m4")
    assert item is not None and "bounce_type" not in item
    assert services.outbox.pending(10, "victim") == []


def test_receipt_for_another_tenants_message_is_ignored_in_a_pec_inbox(
    services: Services,
    dovecot: DovecotServer,
) -> None:
    now = int(time.time())
    sent_message(services, "tenant-b", "m5", now=now)
    dovecot.create_folder("pec", "OtherTenant")
    dovecot.append("pec", pec_receipt(original("tenant-b", "m5", KEY), "avvenuta-consegna"), "OtherTenant")

    result = run(services, dovecot, mailbox_of(dovecot, "OtherTenant", user="pec", tenant_id="tenant-a"), now)

    assert (result.applied, result.ignored) == (0, 1)
    item = services.messages.get("tenant-b", "m5")
    assert item is not None and "pec_event" not in item


def test_malformed_mail_is_left_flagged_and_counted(
    services: Services,
    dovecot: DovecotServer,
    folder: str,
) -> None:
    dovecot.append("bounces", not_a_bounce(), folder)
    dovecot.append("bounces", b"\x00\xff garbage without headers\r\n", folder)

    result = run(services, dovecot, mailbox_of(dovecot, folder), int(time.time()))

    assert result.unparsed == 2
    flags = dovecot.messages("bounces", folder)
    assert len(flags) == 2
    assert all(UNPARSED_KEYWORD in f and "\\Flagged" in f and "\\Seen" not in f for f in flags.values())


def test_mail_polled_twice_is_handled_once(services: Services, dovecot: DovecotServer, folder: str) -> None:
    now = int(time.time())
    sent_message(services, "acme", "m6", now=now)
    dovecot.append("bounces", postfix_dsn(original("acme", "m6", KEY)), folder)
    mailbox = mailbox_of(dovecot, folder)

    first = run(services, dovecot, mailbox, now)
    services.mailbox_state.advance(mailbox.key, uidvalidity=0, last_uid=0, now=now)  # as after a UIDVALIDITY change
    second = run(services, dovecot, mailbox, now + 1)

    assert (first.applied, second.applied, second.duplicates) == (1, 0, 0)
    item = services.messages.get("acme", "m6")
    assert item is not None and [e["event"] for e in item["history"]].count("bounced") == 1


def test_mail_applied_by_a_run_that_died_before_marking_it_is_not_recorded_again(
    services: Services, dovecot: DovecotServer, folder: str
) -> None:
    now = int(time.time())
    sent_message(services, "acme", "m9", now=now)
    dovecot.append("bounces", postfix_dsn(original("acme", "m9", KEY)), folder)
    mailbox = mailbox_of(dovecot, folder)
    run(services, dovecot, mailbox, now)
    dovecot.unmark("bounces", folder, rf"(\Seen {HANDLED_KEYWORD})")  # as if the run had died after the apply
    services.mailbox_state.advance(mailbox.key, uidvalidity=0, last_uid=0, now=now)

    again = run(services, dovecot, mailbox, now + 1)

    assert (again.applied, again.duplicates) == (0, 1)
    item = services.messages.get("acme", "m9")
    assert item is not None and [e["event"] for e in item["history"]].count("bounced") == 1
    assert all(HANDLED_KEYWORD in flags for flags in dovecot.messages("bounces", folder).values())


def test_handled_mail_moves_to_processed_and_unparsed_mail_stays(services: Services, dovecot: DovecotServer) -> None:
    now = int(time.time())
    sent_message(services, "acme", "m8", now=now)
    dovecot.create_folder("archive", PROCESSED_FOLDER)
    dovecot.append("archive", postfix_dsn(original("acme", "m8", KEY)))
    dovecot.append("archive", not_a_bounce())

    result = run(services, dovecot, mailbox_of(dovecot, "INBOX", user="archive"), now)

    assert (result.applied, result.unparsed) == (1, 1)
    [left] = dovecot.messages("archive").values()
    assert UNPARSED_KEYWORD in left
    [moved] = dovecot.messages("archive", PROCESSED_FOLDER).values()
    assert HANDLED_KEYWORD in moved and "\\Seen" in moved


def test_pec_acceptance_then_delivery_are_recorded_and_reported_in_order(
    services: Services, dovecot: DovecotServer, client: ReportEndpoint
) -> None:
    now = int(time.time())
    services.tenants.put(TenantIn(id="pa"))
    sent_message(services, "pa", "p1", now=now)
    services.mailbox_state.await_acceptance("pa", "p1", sent_ts=now, message_id_header="<p1@sender.example>")
    dovecot.create_folder("pec", "Receipts")
    sent = original("pa", "p1", KEY)
    mailbox = mailbox_of(dovecot, "Receipts", user="pec", tenant_id="pa")

    dovecot.append("pec", pec_receipt(sent, "accettazione"), "Receipts")
    run(services, dovecot, mailbox, now + 5)
    report_run(services, client, now=now + 6)
    dovecot.append("pec", pec_receipt(sent, "avvenuta-consegna"), "Receipts")
    run(services, dovecot, mailbox, now + 10)
    report_run(services, client, now=now + 11)

    item = services.messages.get("pa", "p1")
    assert item is not None
    events = [e["event"] for e in item["history"] if e["event"].startswith("pec_")]
    assert events == ["pec_acceptance", "pec_delivery"]
    assert (item["pec_event"], item["pec_details"]) == ("pec_delivery", "PEC avvenuta-consegna")
    reported = [(e["pec_event"], e["pec_ts"]) for e in client.items() if e["id"] == "p1" and "pec_event" in e]
    assert reported == [("pec_acceptance", now + 5), ("pec_delivery", now + 10)]
    assert services.mailbox_state.overdue("pa", sent_before=now + 10**6) == []


def test_a_short_pec_receipt_finds_its_message_by_the_referenced_message_id_in_that_tenants_inbox_only(
    services: Services,
    dovecot: DovecotServer,
) -> None:
    now = int(time.time())
    for tenant in ("pc", "other"):
        sent_message(services, tenant, "p3", now=now)
    services.mailbox_state.await_acceptance("pc", "p3", sent_ts=now, message_id_header="<p3@sender.example>")
    dovecot.create_folder("pec", "Short")
    short = pec_receipt(original("pc", "p3", KEY), "avvenuta-consegna", attach_original=False)
    dovecot.append("pec", short, "Short")
    dovecot.append("pec", short, "Short")

    elsewhere = run(services, dovecot, mailbox_of(dovecot, "Short", user="pec", tenant_id="other"), now + 5)
    assert (elsewhere.applied, elsewhere.unparsed) == (0, 2)
    dovecot.create_folder("pec", "Short2")
    dovecot.append("pec", short, "Short2")
    result = run(services, dovecot, mailbox_of(dovecot, "Short2", user="pec", tenant_id="pc"), now + 5)

    assert result.applied == 1
    item = services.messages.get("pc", "p3")
    assert item is not None and item["pec_event"] == "pec_delivery"
    untouched = services.messages.get("other", "p3")
    assert untouched is not None and "pec_event" not in untouched


def test_pec_message_without_acceptance_times_out(
    services: Services,
    dovecot: DovecotServer,
) -> None:
    now = int(time.time())
    sent_message(services, "pb", "p2", now=now)
    services.mailbox_state.await_acceptance("pb", "p2", sent_ts=now, message_id_header="<p2@sender.example>")
    dovecot.create_folder("pec", "Quiet")
    mailbox = mailbox_of(dovecot, "Quiet", user="pec", tenant_id="pb")
    timeout = services.settings.pec_acceptance_timeout

    before = run(services, dovecot, mailbox, now + timeout - 1)
    after = run(services, dovecot, mailbox, now + timeout + 1)

    assert (before.timeouts, after.timeouts) == (0, 1)
    item = services.messages.get("pb", "p2")
    assert item is not None and item["pec_event"] == "pec_timeout"
    assert item["history"][-1]["event"] == "pec_timeout"


def test_scheduled_bouncer_polls_the_configured_mailbox_at_its_interval(
    services: Services, lambda_env: Settings, dovecot: DovecotServer, folder: str
) -> None:
    from functions.bouncer.handler import handler

    now = int(time.time())
    sent_message(services, "acme", "m7", now=now)
    config = StoredBounceConfig(
        enabled=True, imap_host=dovecot.host, imap_port=dovecot.port, imap_user="bounces", imap_folder=folder
    )
    services.bounce_config.put(config, dovecot.users["bounces"])
    dovecot.append("bounces", postfix_dsn(original("acme", "m7", KEY)), folder)

    first = handler({"source": "schedule"}, LocalLambdaContext("gmp-bouncer"))
    second = handler({"source": "schedule"}, LocalLambdaContext("gmp-bouncer"))  # within poll_interval

    assert (first["mailboxes"], first["applied"], first["failed"]) == (1, 1, 0)
    assert second["mailboxes"] == 0
    item = services.messages.get("acme", "m7")
    assert item is not None and item["bounce_type"] == "hard"


def test_bounces_are_counted_by_type_and_account_and_the_highest_complaint_rate_is_published(
    services: Services, lambda_env: Settings, dovecot: DovecotServer, folder: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.bouncer.handler import handler

    now = int(time.time())
    for message_id in ("c1", "h1", "s1"):
        sent_message(services, "acme", message_id, now=now)
    tally = Tally()
    tally.count("acme", "smtp-main", "sent", 400)  # what the senders counted for the account
    services.counters.add(tally)
    services.bounce_config.put(
        StoredBounceConfig(
            enabled=True, imap_host=dovecot.host, imap_port=dovecot.port, imap_user="bounces", imap_folder=folder
        ),
        dovecot.users["bounces"],
    )
    dovecot.append("bounces", arf_complaint(original("acme", "c1", KEY)), folder)
    dovecot.append("bounces", postfix_dsn(original("acme", "h1", KEY)), folder)
    dovecot.append("bounces", gmail_dsn(original("acme", "s1", KEY)), folder)
    capsys.readouterr()

    run = handler({"source": "schedule"}, LocalLambdaContext("gmp-bouncer"))

    assert (run["bounced_hard"], run["bounced_soft"], run["complaints"]) == (1, 1, 1)
    [pair] = [p for p in services.counters.read() if p.account_id == "smtp-main"]
    assert (pair.get("bounced_hard"), pair.get("bounced_soft"), pair.get("complaints")) == (1, 1, 1)
    [rate] = complaint_rates(services)
    assert (rate.tenant_id, rate.account_id, rate.percent) == ("acme", "smtp-main", 0.25)
    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert (emf["BouncesHard"], emf["BouncesSoft"], emf["Complaints"]) == ([1.0], [1.0], [1.0])
    assert emf["HighestComplaintRate"] == [0.25]


def test_unreachable_mailbox_is_counted_and_does_not_fail_the_run(
    services: Services, lambda_env: Settings, dovecot: DovecotServer
) -> None:
    from functions.bouncer.handler import handler

    config = StoredBounceConfig(enabled=True, imap_host=dovecot.host, imap_port=dovecot.port, imap_user="bounces")
    services.bounce_config.put(config, "wrong password")

    answer = handler({"source": "schedule"}, LocalLambdaContext("gmp-bouncer"))

    assert (answer["ok"], answer["failed"], answer["mailboxes"]) == (True, 1, 0)
