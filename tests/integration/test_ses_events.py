"""SES notifications for accounts that send through SES SMTP: the account's configuration set goes out as
X-SES-CONFIGURATION-SET, and the Bounce / Complaint / Delivery events SES publishes (the JSON shapes of
AWS's "Examples of event data that Amazon SES publishes to Amazon SNS", built around the headers the SMTP
server really received) are recorded by the SES events handler as the bounce mailbox's DSNs are."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.ses_events.handler import handler
from mailproxy.config import Settings
from mailproxy.logic.bounces.ses import SES_CONFIGURATION_SET_HEADER
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain, status
from tests.smtp_servers import ReceivedMessage, SinkFactory, SmtpSink

CONFIGURATION_SET = "gmp-events"
RECIPIENT = "someone@example.net"


@pytest.fixture
def sink(smtp_sink_factory: SinkFactory) -> SmtpSink:
    return smtp_sink_factory("plain")


@pytest.fixture
def sent(api: TestClient, lambda_env: Settings, services: Services, sink: SmtpSink) -> ReceivedMessage:
    """Message `m1` to RECIPIENT, sent through an account with a SES configuration set: what SES received."""
    payload = account_payload(port=sink.port, user=None, password=None, ses_configuration_set=CONFIGURATION_SET)
    assert api.post("/account", headers=AUTH, json=payload).status_code == 200
    message = message_payload("m1", to=[RECIPIENT], headers={SES_CONFIGURATION_SET_HEADER: "the-clients-own"})
    assert api.post("/commands/add-messages", headers=AUTH, json={"messages": [message]}).status_code == 200
    drain(services)
    (received,) = sink.messages
    return received


def mail_object(received: ReceivedMessage) -> dict[str, Any]:
    """The `mail` object of an SES event: the original's headers as SES read them."""
    return {
        "timestamp": "2030-01-01T10:00:00.000Z",
        "source": received.mail_from,
        "sendingAccountId": "123456789012",
        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "destination": received.rcpt_tos,
        "headersTruncated": False,
        "headers": [{"name": name, "value": str(value)} for name, value in received.message.items()],
        "commonHeaders": {"from": [received.mail_from], "to": received.rcpt_tos, "subject": "hello"},
        "tags": {"ses:configuration-set": [CONFIGURATION_SET]},
    }


def bounce_event(received: ReceivedMessage, bounce_type: str = "Permanent", feedback_id: str = "fb-1") -> str:
    return json.dumps(
        {
            "eventType": "Bounce",
            "bounce": {
                "feedbackId": feedback_id,
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": RECIPIENT,
                        "action": "failed",
                        "status": "5.1.1" if bounce_type == "Permanent" else "4.4.7",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                        if bounce_type == "Permanent"
                        else "smtp; 451 4.4.7 delivery time expired",
                    }
                ],
                "timestamp": "2030-01-01T10:00:05.000Z",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
            "mail": mail_object(received),
        }
    )


def complaint_event(received: ReceivedMessage) -> str:
    return json.dumps(
        {
            "eventType": "Complaint",
            "complaint": {
                "feedbackId": "fb-complaint",
                "complaintSubType": None,
                "complainedRecipients": [{"emailAddress": RECIPIENT}],
                "timestamp": "2030-01-01T10:10:00.000Z",
                "userAgent": "Mozilla/5.0",
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2030-01-01T10:09:00.000Z",
            },
            "mail": mail_object(received),
        }
    )


def delivery_event(received: ReceivedMessage) -> str:
    return json.dumps(
        {
            "eventType": "Delivery",
            "delivery": {
                "timestamp": "2030-01-01T10:00:01.000Z",
                "processingTimeMillis": 546,
                "recipients": [RECIPIENT],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
            "mail": mail_object(received),
        }
    )


def sqs_event(*bodies: str) -> dict[str, Any]:
    """The SQS event Lambda hands the handler for messages of the queue subscribed to the SES topic."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{number}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1893492000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gmp-ses-events",
                "awsRegion": "us-east-1",
            }
            for number, body in enumerate(bodies)
        ]
    }


def handle(*bodies: str) -> dict[str, Any]:
    answer: dict[str, Any] = handler(sqs_event(*bodies), LocalLambdaContext("gmp-ses-events"))
    return answer


def test_the_accounts_configuration_set_is_sent_as_its_header_instead_of_the_clients(sent: ReceivedMessage) -> None:
    assert sent.message.get_all(SES_CONFIGURATION_SET_HEADER) == [CONFIGURATION_SET]


def test_a_bad_configuration_set_name_is_a_422_naming_the_field(api: TestClient) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(ses_configuration_set="no spaces"))
    assert answer.status_code == 422 and "ses_configuration_set" in answer.json()["error"]


def test_a_permanent_bounce_is_recorded_reported_and_suppresses_the_address(
    sent: ReceivedMessage, services: Services
) -> None:
    assert handle(bounce_event(sent)) == {"batchItemFailures": []}
    item = status(services, "m1")
    assert (item["bounce_type"], item["bounce_code"], item["bounce_ts"]) == ("hard", "511", 1893492005)
    assert item["bounce_reason"] == "smtp; 550 5.1.1 user unknown"
    assert item["history"][-1]["event"] == "bounced"
    assert [e["id"] for e in services.outbox.pending(10)] == ["m1"]
    assert services.suppressions.suppressed("default", [RECIPIENT]) == {RECIPIENT}


def test_a_transient_bounce_is_soft_and_suppresses_nothing(sent: ReceivedMessage, services: Services) -> None:
    handle(bounce_event(sent, "Transient"))
    item = status(services, "m1")
    assert (item["bounce_type"], item["bounce_code"]) == ("soft", "447")
    assert services.suppressions.suppressed("default", [RECIPIENT]) == set()


def test_a_complaint_is_its_own_type_and_suppresses_the_address(sent: ReceivedMessage, services: Services) -> None:
    handle(complaint_event(sent))
    item = status(services, "m1")
    assert (item["bounce_type"], item["bounce_reason"]) == ("complaint", "complaint: abuse")
    assert services.suppressions.suppressed("default", [RECIPIENT]) == {RECIPIENT}
    [pair] = [p for p in services.counters.read() if p.account_id == "smtp-main"]
    assert (pair.get("sent"), pair.get("complaints")) == (1, 1)


def test_a_delivery_event_records_nothing(sent: ReceivedMessage, services: Services) -> None:
    before = status(services, "m1")
    assert handle(delivery_event(sent)) == {"batchItemFailures": []}
    assert status(services, "m1") == before


def test_a_notification_delivered_twice_is_recorded_once(sent: ReceivedMessage, services: Services) -> None:
    handle(bounce_event(sent))
    handle(bounce_event(sent))
    events = [e["event"] for e in status(services, "m1")["history"]]
    assert events.count("bounced") == 1


def test_a_notification_in_its_sns_envelope_is_read_too(sent: ReceivedMessage, services: Services) -> None:
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:gmp-ses-events",
        "Message": bounce_event(sent),
        "Timestamp": "2030-01-01T10:00:06.000Z",
        "SignatureVersion": "1",
    }
    handle(json.dumps(envelope))
    assert status(services, "m1")["bounce_type"] == "hard"


def test_an_event_for_mail_that_is_not_ours_changes_nothing(sent: ReceivedMessage, services: Services) -> None:
    event = json.loads(bounce_event(sent))
    for header in event["mail"]["headers"]:
        if header["name"].lower() == "x-genro-mail-id":
            header["value"] = header["value"][:-4] + "AAAA"  # an edited id: its signature no longer holds
    before = status(services, "m1")
    assert handle(json.dumps(event)) == {"batchItemFailures": []}
    assert status(services, "m1") == before
    assert services.suppressions.suppressed("default", [RECIPIENT]) == set()


def test_a_body_that_is_no_ses_event_fails_only_its_record(sent: ReceivedMessage, services: Services) -> None:
    answer = handle("not json at all", bounce_event(sent))
    assert len(answer["batchItemFailures"]) == 1
    assert status(services, "m1")["bounce_type"] == "hard"
