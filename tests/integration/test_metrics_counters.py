"""/metrics as the original's Grafana dashboard reads it (UPSTREAM-API.md §4): the series its queries name, with
their labels and the right counts after real sends, computed from counters and never from a Scan."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from functions.sender import handler as sender
from mailproxy import runtime
from mailproxy.config import Settings
from mailproxy.dal.counters import METRICS_PK
from mailproxy.logic import jobs
from mailproxy.models import AccountIn, TenantIn
from mailproxy.observability import metrics as powertools_metrics
from mailproxy.services import Services
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import lambda_record
from tests.conftest import AUTH, account_payload, message_payload
from tests.smtp_servers import SinkFactory, SmtpSink

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "genro-mail-proxy.json"
ORIGINAL_NAMES = {
    "gmp_sent_total",
    "gmp_errors_total",
    "gmp_deferred_total",
    "gmp_rate_limited_total",
    "gmp_pending_messages",
}
ORIGINAL_LABELS = {"tenant_id", "tenant_name", "account_id", "account_name"}

# -- the dashboard's queries -------------------------------------------------------------------------------

_METRIC = re.compile(r"\bgmp_[a-z_]+\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(gmp_[a-z_]+)\s*,\s*([a-zA-Z_]+)\s*\)")


def dashboard_queries() -> list[str]:
    """Every PromQL text of the dashboard: each panel's targets and each templating query."""
    board = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def labels_by_metric(queries: list[str]) -> dict[str, set[str]]:
    """metric name -> the labels a query grouping, matching or listing that metric uses."""
    used: dict[str, set[str]] = {}
    for query in queries:
        labels = {name.strip() for group in _GROUPING.findall(query) for name in group.split(",") if name.strip()}
        labels |= {name for matchers in _MATCHERS.findall(query) for name in _MATCHER_NAME.findall(matchers)}
        for metric, label in _LABEL_VALUES.findall(query):
            used.setdefault(metric, set()).add(label)
        for metric in _METRIC.findall(query):
            used.setdefault(metric, set()).update(labels)
    return used


# -- the exposition ----------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+]+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> tuple[Series, dict[str, str]]:
    """Samples and `# TYPE`s of Prometheus text format 0.0.4; any line that is not one of its forms fails."""
    samples: Series = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, raw_labels, value = match.groups()
        labels = _LABEL.findall(raw_labels or "")
        assert ",".join(f'{k}="{v}"' for k, v in labels) == (raw_labels or ""), f"bad labels: {line!r}"
        unescaped = {(k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")) for k, v in labels}
        key = (name, frozenset(unescaped))
        assert key not in samples, f"duplicate series: {line!r}"
        samples[key] = float(value)
    return samples, types


def value(samples: Series, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def account_labels(tenant_id: str, tenant_name: str, account_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "tenant_name": tenant_name, "account_id": account_id, "account_name": account_id}


def scrape(api: TestClient) -> tuple[Series, dict[str, str]]:
    answer = api.get("/metrics", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_exposition(answer.text)


# -- driving the sender ------------------------------------------------------------------------------------


def add_account(api: TestClient, sink: SmtpSink, account_id: str, tenant_id: str = "default", **extra: Any) -> None:
    fields = {**sink.account(), "id": account_id, "tenant_id": tenant_id, **extra}
    answer = api.post("/account", headers=AUTH, json=fields)
    assert answer.status_code == 200, answer.text


def submit(api: TestClient, *messages: dict[str, Any]) -> None:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": list(messages)})
    assert answer.status_code == 200 and answer.json()["rejected"] == [], answer.text


def one_batch(services: Services) -> int:
    """Every queued record in ONE sender invocation, so that each account's quota is reserved once for all
    of its messages, whatever the clock says (a drain over several receives could straddle a window)."""
    records = []
    for url in (services.queues.urgent_url, services.queues.bulk_url):
        while received := services.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            records += [
                lambda_record(dict(m), "arn:aws:sqs:us-east-1:123456789012:gmp-bulk", "us-east-1") for m in received
            ]
    answer = sender.handler({"Records": records}, LocalLambdaContext("gmp-sender"))
    assert answer == {"batchItemFailures": []}
    return len(records)


class DynamoCalls:
    """The DynamoDB operations a client makes and the items they return, seen through botocore's events."""

    def __init__(self, services: Services) -> None:
        self.operations: Counter[str] = Counter()
        self.items = 0
        services.dynamodb.meta.events.register("after-call.dynamodb", self._after)

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.operations[model.name] += 1
        self.items += len(parsed.get("Items", [])) + ("Item" in parsed)

    def reset(self) -> None:
        self.operations.clear()
        self.items = 0


@pytest.fixture
def sink(smtp_sink_factory: SinkFactory) -> SmtpSink:
    sink = smtp_sink_factory("plain")
    sink.fail("RCPT", "550 5.1.1 no such user", times=None, match="bounce@")
    sink.fail("RCPT", "451 4.7.1 try again later", times=None, match="later@")
    return sink


# -- tests -------------------------------------------------------------------------------------------------


def test_dashboard_queries_name_exactly_the_originals_series_and_labels() -> None:
    used = labels_by_metric(dashboard_queries())
    assert set(used) == ORIGINAL_NAMES
    assert set().union(*used.values()) == ORIGINAL_LABELS
    assert all(used[name] for name in ORIGINAL_NAMES - {"gmp_pending_messages"})  # each counter is broken down


def test_every_dashboard_series_is_exposed_with_its_labels_and_the_counts_of_real_sends(
    lambda_env: Settings, services: Services, api: TestClient, sink: SmtpSink
) -> None:
    assert api.post("/tenant", headers=AUTH, json={"id": "acme", "name": 'Acme "Mail"'}).status_code == 200
    add_account(api, sink, "acme-main", "acme")
    add_account(api, sink, "acme-idle", "acme")
    add_account(api, sink, "capped", limit_per_day=1, limit_behavior="reject")
    add_account(api, sink, "paced", limit_per_day=1)
    in_a_week = int(time.time()) + 7 * 86400
    acme = {"tenant_id": "acme", "account_id": "acme-main"}
    submit(
        api,
        message_payload("a-ok", **acme, to=["ok@example.com"]),
        message_payload("a-bounce", **acme, to=["bounce@example.com"]),  # 550: error
        message_payload("a-later", **acme, to=["later@example.com"]),  # 451: deferred
        message_payload("a-held", **acme, deferred_ts=in_a_week),  # removed before it is due
        *[message_payload(f"c-{n}", account_id="capped") for n in range(2)],  # 1 sent, 1 refused by the limit
        *[message_payload(f"p-{n}", account_id="paced") for n in range(2)],  # 1 sent, 1 deferred by the limit
    )
    removed = api.post("/commands/delete-messages", headers=AUTH, json={"tenant_id": "acme", "ids": ["a-held"]})
    assert removed.json()["removed"] == ["a-held"]
    assert one_batch(services) == 7
    assert len(sink.messages) == 3

    samples, types = scrape(api)
    exposed_labels: dict[str, set[str]] = {}
    for name, pairs in samples:
        exposed_labels.setdefault(name, set()).update(label for label, _ in pairs)
    for name, wanted in labels_by_metric(dashboard_queries()).items():
        assert name in types, f"{name} is not exposed"
        assert wanted <= exposed_labels[name], f"{name} lacks {wanted - exposed_labels[name]}"
        every_series = [set(dict(key)) for metric, key in samples if metric == name]
        assert all(series == exposed_labels[name] for series in every_series), name
    assert {types[name] for name in ORIGINAL_NAMES - {"gmp_pending_messages"}} == {"counter"}
    assert types["gmp_pending_messages"] == "gauge"

    main = account_labels("acme", 'Acme "Mail"', "acme-main")
    idle = account_labels("acme", 'Acme "Mail"', "acme-idle")  # no mail yet: its series exist from the start
    capped = account_labels("default", "default", "capped")
    paced = account_labels("default", "default", "paced")
    expected = {
        "gmp_sent_total": (1, 1, 1),
        "gmp_errors_total": (1, 1, 0),
        "gmp_deferred_total": (1, 0, 1),
        "gmp_rate_limited_total": (0, 1, 1),
    }
    for name, counts in expected.items():
        assert (value(samples, name, **main), value(samples, name, **capped), value(samples, name, **paced)) == counts
        assert value(samples, name, **idle) == 0
    # The messages table, the truth, agrees: a-later and one of p-0/p-1 wait; the rest ended or were removed.
    ids = {("acme", i) for i in ("a-ok", "a-bounce", "a-later")} | {("default", f"{k}-{n}") for k in "cp" for n in "01"}
    unfinished = [i for i in ids if services.messages.get(*i)["status"] in ("queued", "deferred")]  # type: ignore[index]
    assert value(samples, "gmp_pending_messages") == len(unfinished) == 2
    assert services.messages.get("acme", "a-held") is None
    assert ("gmp_queue_depth", frozenset({("queue", "bulk")})) in samples  # our own series stays


def test_a_scrape_reads_the_same_few_items_for_3_or_300_messages_and_never_scans(
    services: Services, api: TestClient
) -> None:
    api.post("/account", headers=AUTH, json=account_payload())
    submit(api, *[message_payload(f"m{n}") for n in range(3)])
    calls = DynamoCalls(services)
    few, _ = scrape(api)
    with_3 = (dict(calls.operations), calls.items)

    submit(api, *[message_payload(f"m{n}") for n in range(3, 300)])
    calls.reset()
    many, _ = scrape(api)
    assert (dict(calls.operations), calls.items) == with_3
    # tenants, the default tenant's accounts, the counter items: one Query each (docs/operations.md)
    assert with_3[0] == {"Query": 3}
    assert value(few, "gmp_pending_messages") == 3 and value(many, "gmp_pending_messages") == 300


def test_a_batch_writes_one_counter_update_per_account_not_one_per_message(
    lambda_env: Settings, services: Services, api: TestClient, sink: SmtpSink
) -> None:
    add_account(api, sink, "smtp-main")
    add_account(api, sink, "smtp-other")
    submit(
        api,
        *[message_payload(f"m{n}") for n in range(6)],
        *[message_payload(f"o{n}", account_id="smtp-other") for n in range(3)],
    )
    updates: list[str] = []

    def counter_update(params: dict[str, Any], **_: Any) -> None:
        if params["Key"]["pk"]["S"] == METRICS_PK:
            updates.append(params["Key"]["sk"]["S"])

    runtime.services().dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", counter_update)
    assert one_batch(services) == 9
    assert sorted(updates) == ["default#smtp-main", "default#smtp-other"]
    samples, _ = scrape(api)
    assert value(samples, "gmp_sent_total", **account_labels("default", "default", "smtp-main")) == 6
    assert value(samples, "gmp_sent_total", **account_labels("default", "default", "smtp-other")) == 3


def test_a_failing_counter_update_is_counted_and_the_batch_still_delivers(
    lambda_env: Settings, services: Services, api: TestClient, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_account(api, sink, "smtp-main")
    submit(api, message_payload("m1"), message_payload("m2"))
    added: Counter[str] = Counter()
    original = powertools_metrics.add_metric

    def record(name: str, unit: Any, value: float, **kwargs: Any) -> None:
        added[name] += int(value)
        original(name=name, unit=unit, value=value, **kwargs)

    monkeypatch.setattr(powertools_metrics, "add_metric", record)

    def throttled(params: dict[str, Any], **_: Any) -> None:
        if params["Key"]["pk"]["S"] == METRICS_PK:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "UpdateItem")  # type: ignore[arg-type]

    runtime.services().dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", throttled)
    assert one_batch(services) == 2
    assert len(sink.messages) == 2
    assert [services.messages.get("default", m)["status"] for m in ("m1", "m2")] == ["sent", "sent"]  # type: ignore[index]
    assert added["MetricCounterFailures"] == 1 and added["Sent"] == 2
    samples, _ = scrape(api)  # best effort: these two sends are not counted, and nothing is counted twice
    assert value(samples, "gmp_sent_total", **account_labels("default", "default", "smtp-main")) == 0


def test_deleting_a_tenant_forgets_its_counters_so_a_new_one_of_that_id_starts_at_zero(
    services: Services, api: TestClient
) -> None:
    for tenant in ("acme", "acme2"):
        services.tenants.put(TenantIn(id=tenant))
        services.accounts.put(AccountIn(id="main", tenant_id=tenant, host="127.0.0.1", port=2525))
        submit(api, message_payload(f"{tenant}-1", tenant_id=tenant, account_id="main"))
    samples, _ = scrape(api)
    assert value(samples, "gmp_pending_messages") == 2

    jobs.start(services, "acme", "delete_tenant", {}, now=time.time())
    services.tenants.put(TenantIn(id="acme"))
    services.accounts.put(AccountIn(id="main", tenant_id="acme", host="127.0.0.1", port=2525))
    samples, _ = scrape(api)
    assert value(samples, "gmp_pending_messages") == 1  # acme2's message; acme's removed mail is gone with it
    acme2 = [c for c in services.counters.read() if c.tenant_id == "acme2"]
    assert [(c.account_id, c.counts) for c in acme2] == [("main", {"queued": 1})]
    assert value(samples, "gmp_sent_total", **account_labels("acme", "acme", "main")) == 0
