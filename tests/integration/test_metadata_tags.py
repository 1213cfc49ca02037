"""A message's metadata and tags: validated at ingestion (the reason names the field), echoed in report
entries and in GET /messages from the status item."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailproxy.config import Settings
from mailproxy.logic.reports import report_entry
from mailproxy.models import MessageView
from mailproxy.services import Services
from tests.conftest import AUTH, account_payload, message_payload
from tests.integration.test_sender import drain
from tests.smtp_servers import SinkFactory

METADATA = {"customer": "c-17", "attempt": 2, "score": 0.5, "vip": True}


def reject(api: TestClient, **fields: Any) -> str:
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [message_payload("m1", **fields)]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["queued"] == 0, body
    (rejection,) = body["rejected"]
    assert rejection["code"] == "invalid"
    reason: str = rejection["reason"]
    return reason


def test_valid_metadata_and_tags_are_accepted(api: TestClient, lambda_env: Settings) -> None:
    assert api.post("/account", headers=AUTH, json=account_payload()).status_code == 200
    payload = message_payload("m1", metadata=METADATA, tags=["spring-2030", "list:news", "a_b.c"])
    answer = api.post("/commands/add-messages", headers=AUTH, json={"messages": [payload]}).json()
    assert answer["queued"] == 1, answer


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": i for i in range(21)},
        {"k" * 41: 1},
        {"big": "x" * 600},
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {"none": None},
    ],
)
def test_bad_metadata_is_rejected_naming_the_field(api: TestClient, lambda_env: Settings, metadata: Any) -> None:
    assert "metadata" in reject(api, metadata=metadata)


@pytest.mark.parametrize("tags", [[f"t{i}" for i in range(11)], ["t" * 41], ["with space"], ["é"], [""], "t"])
def test_bad_tags_are_rejected_naming_the_field(api: TestClient, lambda_env: Settings, tags: Any) -> None:
    assert "tags" in reject(api, tags=tags)


def status_item(**fields: Any) -> dict[str, Any]:
    return {
        "id": "m1",
        "tenant_id": "default",
        "account_id": "smtp-main",
        "priority": 2,
        "status": "sent",
        "sent_ts": 100,
        "created_ts": 90,
        **fields,
    }


def test_report_entries_echo_metadata_tags_and_sandbox_from_the_status_item() -> None:
    wire = report_entry(status_item(metadata=METADATA, tags=["news"], sandbox=True)).wire()
    assert wire["metadata"] == METADATA and wire["tags"] == ["news"] and wire["sandbox"] is True


def test_report_entries_without_them_keep_the_seed_shape() -> None:
    wire = report_entry(status_item()).wire()
    assert not {"metadata", "tags", "sandbox"} & set(wire)


def test_message_view_carries_them() -> None:
    view = MessageView.model_validate(status_item(metadata=METADATA, tags=["news"]))
    assert view.metadata == METADATA and view.tags == ["news"] and view.sandbox is False


def test_a_bad_tag_filter_is_refused(api: TestClient, lambda_env: Settings) -> None:
    assert api.get("/messages", headers=AUTH, params={"tag": "bad tag"}).status_code == 422


def test_outcomes_are_counted_per_tag_in_one_metric_per_tag_and_status(
    api: TestClient,
    lambda_env: Settings,
    services: Services,
    smtp_sink_factory: SinkFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sink = smtp_sink_factory("plain")
    account = account_payload(port=sink.port, user=None, password=None)
    assert api.post("/account", headers=AUTH, json=account).status_code == 200
    messages = [
        message_payload("a", tags=["news", "spring"]),
        message_payload("b", tags=["news"]),
        message_payload("c"),
    ]
    assert api.post("/commands/add-messages", headers=AUTH, json={"messages": messages}).json()["queued"] == 3
    capsys.readouterr()
    drain(services)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    tagged = {
        (blob["tag"], name): blob[name]
        for blob in emitted
        if "tag" in blob
        for name in ("TaggedSent", "TaggedError", "TaggedDeferred")
        if name in blob
    }
    assert tagged == {("news", "TaggedSent"): [2.0], ("spring", "TaggedSent"): [1.0]}
    [news] = [blob for blob in emitted if blob.get("tag") == "news"]
    assert news["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "tag"]]
