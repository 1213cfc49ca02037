"""`make run`'s stack as a user meets it: a subprocess, talked to over HTTP, delivering to a real SMTP
server and reporting to a real HTTP endpoint."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from tests.e2e.stack import local_stack
from tests.report_server import report_endpoint
from tests.smtp_servers import SinkFactory


def test_message_posted_to_the_api_is_delivered_and_reported_sent(
    smtp_sink_factory: SinkFactory, trust_smtp_certs: Path
) -> None:
    sink = smtp_sink_factory("starttls", auth=("sender", "app-specific-password"))
    environment = {
        "GMP_CLIENT_SYNC_URL": "",
        "GMP_CLIENT_SYNC_TOKEN": "sync-token",
        "SSL_CERT_FILE": str(trust_smtp_certs),
    }
    with report_endpoint() as client:
        environment["GMP_CLIENT_SYNC_URL"] = client.url
        with local_stack(environment) as stack:
            assert stack.call("GET", "/status").json()["ok"] is True
            account = {
                "id": "smtp-main",
                "host": "127.0.0.1",
                "port": sink.port,
                "user": "sender",
                "password": "app-specific-password",
                "use_tls": False,
            }
            assert stack.call("POST", "/account", json=account).json()["ok"] is True
            message = {
                "id": "MSG-001",
                "account_id": "smtp-main",
                "from": "sender@example.com",
                "to": ["rcpt@example.com"],
                "subject": "Hello",
                "body": "Hi there",
            }
            posted = stack.call("POST", "/commands/add-messages", json={"messages": [message]}).json()
            assert posted == {"ok": True, "queued": 1, "rejected": []}

            [received] = sink.wait_for_messages(1, timeout=30)
            assert received.message["Subject"] == "Hello"
            assert received.auth_user == "sender"
            sent_at = time.monotonic()
            assert client.wait_for(lambda c: any(i["id"] == "MSG-001" and i["sent_ts"] for i in c.items()), timeout=15)
            assert time.monotonic() - sent_at <= 2 * 1 + 3  # within two reporter intervals (1 s here), plus slack
            report = client.acknowledged[-1]
            assert report.headers["authorization"] == "Bearer sync-token"
            assert set(report.items[0]) == {
                "id",
                "tenant_id",
                "account_id",
                "priority",
                "sent_ts",
                "error_ts",
                "error",
                "deferred_ts",
            }

            [listed] = stack.call("GET", "/messages").json()["messages"]
            assert listed["status"] == "sent"
            assert "app-specific-password" not in stack.call("GET", "/accounts").text
            assert stack.call("DELETE", "/account/smtp-main").json()["ok"] is True
            assert requests.get(stack.url + "/status", timeout=5).status_code == 401

            moto_urls = stack.moto_urls()
            assert len(moto_urls) == 2  # SQS + S3, and DynamoDB
            assert stack.stop() == 0
            for url in moto_urls:
                try:
                    requests.get(url, timeout=2)
                    raise AssertionError(f"the moto child at {url} outlived the stack")
                except requests.ConnectionError:
                    pass
            assert "app-specific-password" not in "".join(stack.output)
