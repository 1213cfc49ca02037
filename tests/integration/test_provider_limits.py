"""Provider limits held across concurrent sender invocations against real SMTP servers: `max_concurrent`
connections per account (dal/connections.py, released on every path, expiring on a crash) and
`limit_per_second`; a message over them waits without consuming an attempt."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.sender import handler as sender
from mailproxy.config import SENDER_SAFETY_SECONDS, Settings
from mailproxy.dal.queues import QueueEntry
from mailproxy.logic.bounces.correlation import deployment_key
from mailproxy.logic.delivery import BatchDelivery
from mailproxy.logic.ingest import add_messages
from mailproxy.logic.smtp import SendResult, SmtpPool
from mailproxy.models import AccountIn, AddMessagesRequest
from mailproxy.observability import logger, metrics
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import lambda_record
from tests.conftest import AUTH, account_payload, message_payload
from tests.smtp_servers import SinkFactory, SmtpSink

TENANT, ACCOUNT = "default", "smtp-main"
SMTP_TIMEOUT = 1.0


def add_account(services: Services, sink: SmtpSink, **limits: Any) -> None:
    services.accounts.put(AccountIn(id=ACCOUNT, **sink.account(timeout=SMTP_TIMEOUT), **limits))


def submit(services: Services, count: int) -> list[str]:
    ids = [f"m{n}" for n in range(count)]
    answer = add_messages(
        services, AddMessagesRequest(messages=[message_payload(i) for i in ids]), now_ms=int(time.time() * 1000)
    )
    assert answer.rejected == []
    return ids


def batches_from_queue(services: Services, size: int, count: int) -> list[list[dict[str, Any]]]:
    """SQS records in `count` batches of `size`, as the event source mapping would hand them to invocations."""
    arn = "arn:aws:sqs:us-east-1:123456789012:gmp-bulk"
    batches: list[list[dict[str, Any]]] = []
    while len(batches) < count:
        received = services.sqs.receive_message(QueueUrl=services.queues.bulk_url, MaxNumberOfMessages=size)
        if received.get("Messages"):
            batches.append([lambda_record(dict(m), arn, "us-east-1") for m in received["Messages"]])
    return batches


def invoke_concurrently(batches: list[list[dict[str, Any]]]) -> None:
    start = threading.Barrier(len(batches))

    def invoke(records: list[dict[str, Any]]) -> None:
        start.wait()
        sender.handler({"Records": records}, LocalLambdaContext("gmp-sender"))

    runs = [threading.Thread(target=invoke, args=(batch,)) for batch in batches]
    for run in runs:
        run.start()
    for run in runs:
        run.join()


def statuses(services: Services, ids: list[str]) -> list[dict[str, Any]]:
    items = [services.messages.get(TENANT, i) for i in ids]
    assert all(item is not None for item in items)
    return [item for item in items if item is not None]


def every_slot_is_free(services: Services, max_concurrent: int) -> bool:
    """All of the account's slots can be taken now (then given back)."""
    slots = [
        services.connections.acquire(TENANT, ACCOUNT, max_concurrent, now=time.time(), lease_seconds=60)
        for _ in range(max_concurrent)
    ]
    for slot in slots:
        if slot is not None:
            services.connections.release(slot)
    return all(slots)


@pytest.fixture
def hold_slot(services: Services) -> Iterator[None]:
    """Another invocation holds the account's only connection slot (a live lease)."""
    slot = services.connections.acquire(
        TENANT, ACCOUNT, 1, now=time.time(), lease_seconds=services.settings.claim_lease_seconds
    )
    assert slot is not None
    yield
    services.connections.release(slot)


def test_concurrent_senders_never_open_more_connections_than_max_concurrent(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    sink.stall("EOM", 0.05, times=None)  # transactions overlap across the invocations
    add_account(services, sink, max_concurrent=2)
    ids = submit(services, 15)
    invoke_concurrently(batches_from_queue(services, size=3, count=5))
    assert 1 <= sink.peak_open_connections <= 2
    items = statuses(services, ids)
    sent = [item for item in items if item["status"] == "sent"]
    waiting = [item for item in items if item["status"] != "sent"]
    assert sent and len(sink.messages) == len(sent)
    assert all(item["deferred_reason"] == "max_concurrent" and item["attempts"] == 0 for item in waiting)
    assert every_slot_is_free(services, 2)


def test_message_finding_every_connection_slot_held_is_deferred_without_an_attempt(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, hold_slot: None
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink, max_concurrent=1)
    ids = submit(services, 3)
    before = int(time.time())
    invoke_concurrently(batches_from_queue(services, size=3, count=1))
    items = statuses(services, ids)
    assert {item["status"] for item in items} == {"deferred"}
    assert {item["deferred_reason"] for item in items} == {"max_concurrent"}
    assert {item["attempts"] for item in items} == {0}
    assert all(before < item["not_before"] <= int(time.time()) + 10 for item in items)
    assert sink.connections == 0


def test_slot_of_a_crashed_holder_is_reusable_after_its_lease(services: Services) -> None:
    now = 1_800_000_000.0
    crashed = services.connections.acquire(TENANT, ACCOUNT, 1, now=now, lease_seconds=90)
    assert crashed is not None  # never released
    assert services.connections.acquire(TENANT, ACCOUNT, 1, now=now + 89, lease_seconds=90) is None
    successor = services.connections.acquire(TENANT, ACCOUNT, 1, now=now + 91, lease_seconds=90)
    assert successor is not None
    assert not services.connections.release(crashed)  # the late holder cannot free its successor's slot
    assert services.connections.acquire(TENANT, ACCOUNT, 1, now=now + 92, lease_seconds=90) is None
    assert services.connections.release(successor)


def test_sender_uses_the_slot_of_a_crashed_holder_once_its_lease_ran_out(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink, max_concurrent=1)
    lease = services.settings.claim_lease_seconds
    assert services.connections.acquire(TENANT, ACCOUNT, 1, now=time.time() - lease - 1, lease_seconds=lease)
    ids = submit(services, 2)
    invoke_concurrently(batches_from_queue(services, size=2, count=1))
    assert {item["status"] for item in statuses(services, ids)} == {"sent"}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda sink: sink.fail("MAIL", "451 4.3.0 try later", times=None), id="temporary-reply"),
        pytest.param(lambda sink: sink.fail("RCPT", "550 5.1.1 no such user", times=None), id="permanent-reply"),
        pytest.param(lambda sink: sink.stall("EOM", SMTP_TIMEOUT + 1, times=None), id="timeout"),
    ],
)
def test_connection_slot_is_released_after_an_smtp_error(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory, fault: Any
) -> None:
    sink = smtp_sink_factory("plain")
    fault(sink)
    add_account(services, sink, max_concurrent=1)
    ids = submit(services, 2)
    invoke_concurrently(batches_from_queue(services, size=2, count=1))
    assert "sent" not in {item["status"] for item in statuses(services, ids)}
    assert sink.connections >= 1
    assert every_slot_is_free(services, 1)


class Crash(BaseException):
    """Not an Exception: nothing in the batch catches it, as with a bug that escapes the sender."""


class FailingPool(SmtpPool):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def send(self, *args: Any, **kwargs: Any) -> SendResult:
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("boom"), Crash()], ids=["caught", "escaping"])
def test_connection_slot_is_released_after_an_exception_inside_the_send(
    services: Services, smtp_sink_factory: SinkFactory, error: BaseException
) -> None:
    add_account(services, smtp_sink_factory("plain"), max_concurrent=1)
    submit(services, 1)
    entry = QueueEntry(TENANT, "m0", ACCOUNT, 2)
    escapes = pytest.raises(Crash) if isinstance(error, Crash) else contextlib.nullcontext()
    with (
        escapes,
        BatchDelivery(
            services,
            correlation_key=deployment_key(services.settings),
            logger=logger,
            metrics=metrics,
            pool=FailingPool(error),
        ) as delivery,
    ):
        delivery.prepare([entry])
        assert delivery.deliver(entry) == "deferred"  # a caught exception costs the message an attempt
    assert every_slot_is_free(services, 1)


def fill_per_second_counter(services: Services, seconds: float) -> None:
    """One send counted in every bucket of the per-second window for the next `seconds`, as other senders'
    would be."""
    now = time.time()
    for step in range(int(seconds * 10) + 1):
        services.rate_limits.reserve(TENANT, ACCOUNT, {"second": 1_000}, 1, now + step / 10)


def test_message_over_the_per_second_limit_is_deferred_with_attempts_unchanged(
    services: Services, smtp_sink_factory: SinkFactory
) -> None:
    sink = smtp_sink_factory("plain")
    add_account(services, sink, limit_per_second=1)
    submit(services, 1)
    fill_per_second_counter(services, seconds=5)
    entry = QueueEntry(TENANT, "m0", ACCOUNT, 2)
    # Too little time left in the invocation to wait for a slot of the second.
    spare = SMTP_TIMEOUT + SENDER_SAFETY_SECONDS + 0.5
    with BatchDelivery(
        services,
        correlation_key=deployment_key(services.settings),
        logger=logger,
        metrics=metrics,
        remaining_seconds=lambda: spare,
    ) as delivery:
        delivery.prepare([entry])
        assert delivery.deliver(entry) == "deferred"
    item = statuses(services, ["m0"])[0]
    assert item["deferred_reason"] == "rate limit: 1 per second"
    assert item["attempts"] == 0
    assert sink.connections == 0


def test_per_second_limit_holds_across_concurrent_senders(
    lambda_env: Settings, services: Services, smtp_sink_factory: SinkFactory
) -> None:
    limit = 4
    sink = smtp_sink_factory("plain")
    add_account(services, sink, limit_per_second=limit)
    ids = submit(services, 12)
    invoke_concurrently(batches_from_queue(services, size=4, count=3))
    arrivals = sorted(message.received_at for message in sink.messages)
    assert len(arrivals) >= limit
    # No second holds more than `limit` arrivals: any limit + 1 of them in a row span more than a second.
    assert all(later - first > 1.0 for first, later in zip(arrivals, arrivals[limit:], strict=False))
    waiting = [item for item in statuses(services, ids) if item["status"] != "sent"]
    assert all(item["deferred_reason"] == f"rate limit: {limit} per second" for item in waiting)
    assert all(item["attempts"] == 0 for item in waiting)


# -- the account fields through the API ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 101}, "max_concurrent"),
        ({"max_concurrent": "many"}, "max_concurrent"),
        ({"limit_per_second": 0}, "limit_per_second"),
        ({"limit_per_second": 10**12}, "limit_per_second"),
    ],
)
def test_bad_provider_limit_is_422_naming_the_field(api: TestClient, change: dict[str, object], field: str) -> None:
    answer = api.post("/account", headers=AUTH, json=account_payload(**change))
    assert answer.status_code == 422
    assert field in answer.json()["error"]


def test_provider_limits_are_stored_and_returned_on_both_surfaces(api: TestClient) -> None:
    limits = {"limit_per_second": 14, "max_concurrent": 3}
    assert api.post("/account", headers=AUTH, json=account_payload(**limits)).status_code == 200
    [listed] = api.get("/accounts", headers=AUTH).json()["accounts"]
    assert {k: listed[k] for k in limits} == limits
    body = account_payload(id="relay", tenant_id="default", **limits)
    added = api.post("/accounts/add", headers=AUTH, json=body).json()
    assert {k: added[k] for k in limits} == limits
