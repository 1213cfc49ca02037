"""The poison cases of tests/reliability/test_poison.py as a new user meets them on `make run`: the local
stack as a subprocess, real SMTP servers (one of them hostile), a real report receiver, HTTP only."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.stack import LocalStack, local_stack
from tests.reliability.test_poison import hostile_smtp_server, slow_endless_ehlo
from tests.report_server import report_endpoint
from tests.smtp_servers import SmtpSink, free_port

pytestmark = pytest.mark.stack


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


def message(message_id: str, account_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": message_id, "account_id": account_id, "from": "app@example.com", "to": ["rcpt@example.com"],
            "subject": message_id, "body": "hello", **extra}  # fmt: skip


def statuses(stack: LocalStack, tenant_id: str = "default") -> dict[str, str]:
    listed = stack.call("GET", "/messages", params={"tenant_id": tenant_id}).json()["messages"]
    return {m["id"]: m["status"] for m in listed}


def test_poison_cases_on_the_local_stack() -> None:
    with (
        report_endpoint() as receiver,
        SmtpSink("plain") as sink,
        hostile_smtp_server(slow_endless_ehlo) as hostile_port,
    ):
        environment = {
            "GMP_CLIENT_SYNC_URL": receiver.url,
            "GMP_MAX_ATTEMPTS": "2",
            "GMP_BACKOFF_BASE": "1",
            "GMP_BACKOFF_CAP": "2",
            "GMP_REPORT_BATCH_SIZE": "5",
        }
        with local_stack(environment) as stack:
            healthy = {"host": sink.host, "port": sink.port, "use_tls": False, "timeout": 5}
            assert stack.call("POST", "/account", json={"id": "healthy", **healthy}).json()["ok"]

            # An account timeout the sender could never honour: refused at the door, naming the limit.
            refused = stack.call("POST", "/account", json={"id": "slow", **healthy, "timeout": 120})
            assert refused.status_code == 422 and refused.json()["error"].startswith("timeout: at most 50 seconds")

            # A server answering EHLO with an endless slow reply: that message ends, the others go on.
            hostile = {"host": "127.0.0.1", "port": hostile_port, "use_tls": False, "timeout": 1}
            assert stack.call("POST", "/account", json={"id": "hostile", **hostile}).json()["ok"]

            # A tenant whose report endpoint is down, with more pending reports than one report batch.
            down = f"http://127.0.0.1:{free_port()}"
            assert stack.call("POST", "/tenant", json={"id": "down", "client_base_url": down}).json()["ok"]
            assert stack.call("POST", "/account", json={"id": "down-smtp", "tenant_id": "down", **healthy}).json()["ok"]
            down_mail = [message(f"down-{n}", "down-smtp", tenant_id="down") for n in range(12)]
            assert stack.call("POST", "/commands/add-messages", json={"messages": down_mail}).json()["queued"] == 12
            assert wait_until(lambda: set(statuses(stack, "down").values()) == {"sent"})

            mail = [message("poison", "hostile"), *(message(f"ok-{n}", "healthy") for n in range(5))]
            assert stack.call("POST", "/commands/add-messages", json={"messages": mail}).json()["queued"] == 6
            ok_ids = {f"ok-{n}" for n in range(5)}
            assert wait_until(lambda: ok_ids <= {i["id"] for i in receiver.items() if i["sent_ts"]}), (
                "the default tenant's reports are held up by another tenant's failing endpoint"
            )
            assert wait_until(lambda: statuses(stack).get("poison") == "error", timeout=90)
            poison = next(m for m in stack.call("GET", "/messages").json()["messages"] if m["id"] == "poison")
            assert "ran past its deadline" in poison["error"] or "longer than 100 lines" in poison["error"]
            assert wait_until(lambda: any(i["id"] == "poison" and i["error_ts"] for i in receiver.items()))
            assert not any(i["id"].startswith("down-") for i in receiver.items())  # they wait for their own endpoint

            # A recipient list far over the cap, and a request larger than API Gateway + Lambda accept.
            many = ", ".join(f"user{n}@example.com" for n in range(5000))
            answer = stack.call(
                "POST", "/commands/add-messages", json={"messages": [message("many", "healthy", to=many)]}
            )
            assert "100 addresses" in answer.json()["rejected"][0]["reason"]
            huge = stack.call(
                "POST", "/commands/add-messages", json={"messages": [message("huge", "healthy", body="x" * 6_500_000)]}
            )
            assert huge.status_code == 413 and "storage_path" in huge.json()["error"]

            sent = [m for m in sink.messages if str(m.message["Subject"]).startswith("ok-")]
            assert sorted(str(m.message["Subject"]) for m in sent) == sorted(ok_ids)  # each once
