"""`gmp watch`, `gmp messages raw` and `gmp jobs` against the local stack, a batch delivered to an aiosmtpd sink."""

from __future__ import annotations

import json

import pytest

from mailproxy_client import MailProxyClient
from tests.client.test_cli import Gmp, gmp, proxy  # noqa: F401 (fixtures)
from tests.smtp_servers import SinkFactory

pytestmark = pytest.mark.stack


def test_watch_follows_a_batch_until_nothing_is_pending(
    gmp: Gmp,  # noqa: F811
    proxy: MailProxyClient,  # noqa: F811
    smtp_sink_factory: SinkFactory,
) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("watch-acct", host=sink.host, port=sink.port)
    messages = [
        {
            "id": f"watch-{n}",
            "account_id": "watch-acct",
            "from": "app@example.com",
            "to": [f"r{n}@example.com"],
            "subject": f"watch {n}",
            "body": "hello",
            "batch_code": "watch-batch",
        }
        for n in range(3)
    ]
    assert proxy.add_messages(messages).queued == 3
    result = gmp("watch", "--batch", "watch-batch", "--json", "--interval", "0.2")
    assert result.code == 0, result.err
    polls = [json.loads(line) for line in result.out.splitlines()]
    assert polls[-1]["sent"] == 3 and polls[-1]["pending"] == 0 and polls[-1]["total"] == 3
    assert all(poll["total"] == 3 for poll in polls)
    table = gmp("watch", "--batch", "watch-batch", "--interval", "0.2")  # the bar, already complete
    assert table.code == 0 and "sent 3" in table.out and "pending 0" in table.out


def test_messages_raw_of_a_message_without_source_is_a_clear_404(gmp: Gmp) -> None:  # noqa: F811
    result = gmp("messages", "raw", "no-such-message")
    assert result.code == 1
    assert "404" in result.err and "no raw message kept" in result.err


def test_jobs_list_and_show_of_an_unknown_job(gmp: Gmp) -> None:  # noqa: F811
    listed = gmp("jobs", "--json")
    assert listed.code == 0 and isinstance(listed.json(), list)
    missing = gmp("jobs", "show", "0" * 25)
    assert missing.code == 1 and "404" in missing.err
