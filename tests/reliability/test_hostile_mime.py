"""Header injection that survives the API's CR/LF check: RFC 2047 encoded words whose decoded text holds
CR LF. Driven end to end: the API's validation, the sender, a real SMTP server reading the message."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mailproxy.models import AccountIn, MessageIn
from tests.conftest import message_payload
from tests.reliability.harness import World
from tests.smtp_servers import SinkFactory

ENCODED_CRLF = "=?utf-8?q?hi=0D=0AX-Injected:_yes?="


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("subject", {"subject": ENCODED_CRLF}),
        ("headers", {"headers": {"X-Campaign": ENCODED_CRLF}}),
        ("attachments", {"attachments": [{"filename": ENCODED_CRLF, "content": "aGk="}]}),
    ],
)
def test_encoded_word_line_breaks_never_become_header_lines(
    world: World, smtp_sink_factory: SinkFactory, field: str, change: dict[str, Any]
) -> None:
    sink = smtp_sink_factory("plain")
    world.services.accounts.put(AccountIn(id="smtp-main", **sink.account()))
    message = message_payload("smuggled", **change)
    try:
        MessageIn.model_validate(message)
    except ValidationError as exc:  # refused at the API: the field must be named
        assert field in str(exc)
        return
    world.submit(message)
    world.drain()
    assert world.status("smuggled")["status"] in ("sent", "error")
    for received in sink.messages:
        lines = received.data.split(b"\r\n")
        assert not [line for line in lines if line.lower().startswith(b"x-injected")], received.data[:600]
