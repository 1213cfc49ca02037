"""`gmp`, invoked in process (`mailproxy_client.cli.main([...])`) against the local stack, plus once as the installed
console script. SMTP checks talk to aiosmtpd sinks on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailproxy_client import MailProxyClient
from mailproxy_client.cli import main
from tests.e2e.stack import LocalStack
from tests.smtp_servers import SinkFactory, free_port

pytestmark = pytest.mark.stack


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Gmp = Callable[..., Result]


@pytest.fixture
def gmp(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Gmp:
    """Run `gmp ARGS` in process with GMP_URL/GMP_API_TOKEN of the stack; `stdin=` feeds standard input."""
    monkeypatch.setenv("GMP_URL", stack.url)
    monkeypatch.setenv("GMP_API_TOKEN", stack.token)
    monkeypatch.setenv("COLUMNS", "200")  # rich's table width when not on a terminal

    def run(*args: str, stdin: str = "") -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def proxy(stack: LocalStack) -> MailProxyClient:
    return MailProxyClient(stack.url, stack.token)


def wait_sent(proxy: MailProxyClient, account_id: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(list(proxy.iter_messages(status="sent", account_id=account_id))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} messages sent for {account_id}"
        time.sleep(0.2)


def test_status(gmp: Gmp) -> None:
    result = gmp("status")
    assert result.code == 0
    assert "ok" in result.out
    assert "dynamodb" in result.out and "sqs" in result.out
    as_json = gmp("status", "--json")
    assert as_json.json()["dependencies"] == {"dynamodb": "ok", "sqs": "ok"}
    assert gmp("--json", "health").json() == {"status": "ok"}


def test_accounts_add_list_delete(gmp: Gmp, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain", auth=("sender", "pw-from-stdin"))
    added = gmp(
        "accounts",
        "add",
        "cli-acct",
        "--host",
        sink.host,
        "--port",
        str(sink.port),
        "--user",
        "sender",
        "--password-stdin",
        "--limit-per-hour",
        "100",
        "--limit-behavior",
        "reject",
        stdin="pw-from-stdin\n",
    )
    assert added.code == 0, added.err
    assert "account cli-acct saved" in added.out

    listed = gmp("accounts", "list")
    assert listed.code == 0
    row = next(line for line in listed.out.splitlines() if "cli-acct" in line)
    assert "***" in row and "STARTTLS" in row and "100/h (reject)" in row and str(sink.port) in row
    assert "pw-from-stdin" not in listed.out
    assert gmp("accounts").out == listed.out  # `accounts` alone lists
    [as_json] = [a for a in gmp("accounts", "--json").json() if a["id"] == "cli-acct"]
    assert as_json["password"] == "***"

    deleted = gmp("accounts", "delete", "cli-acct")
    assert (deleted.code, deleted.out.strip()) == (0, "account cli-acct deleted")
    again = gmp("accounts", "delete", "cli-acct")
    assert again.code == 1
    assert again.out == ""
    assert again.err.strip() == "gmp: error: HTTP 404: account 'cli-acct' not found"


def test_password_is_read_from_a_pipe_without_the_flag(gmp: Gmp, proxy: MailProxyClient) -> None:
    result = gmp("accounts", "add", "cli-piped", "--host", "127.0.0.1", "--port", "2525", "--user", "u", stdin="pw\n")
    assert result.code == 0, result.err
    [account] = [a for a in proxy.accounts() if a.id == "cli-piped"]
    assert account.password == "***"
    missing = gmp("accounts", "add", "cli-piped", "--host", "127.0.0.1", "--port", "2525", "--user", "u")
    assert missing.code == 2
    assert "--password-stdin" in missing.err


def test_send_one_message_from_flags_then_again(
    gmp: Gmp, proxy: MailProxyClient, smtp_sink_factory: SinkFactory, tmp_path: Path
) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("cli-send", host=sink.host, port=sink.port)
    attachment = tmp_path / "notes.txt"
    attachment.write_text("attached text")
    args = [
        "send",
        "--id",
        "CLI-MSG-1",
        "--account",
        "cli-send",
        "--from",
        "Sender <sender@example.com>",
        "--to",
        "a@example.com,b@example.com",
        "--cc",
        "c@example.com",
        "--subject",
        "Hello from gmp",
        "--body",
        "<b>hi</b>",
        "--html",
        "--priority",
        "high",
        "--header",
        "X-Campaign: spring",
        "--attach",
        str(attachment),
    ]
    sent = gmp(*args)
    assert (sent.code, sent.out.strip()) == (0, "queued CLI-MSG-1")
    [received] = sink.wait_for_messages(1, timeout=30)
    assert received.message["Subject"] == "Hello from gmp"
    assert received.message["X-Campaign"] == "spring"
    assert sorted(received.rcpt_tos) == ["a@example.com", "b@example.com", "c@example.com"]
    assert [p.get_filename() for p in received.message.iter_attachments()] == ["notes.txt"]

    again = gmp(*args)
    assert again.code == 0
    assert "already known: CLI-MSG-1" in again.out


def test_send_from_a_file_with_flags_overriding(
    gmp: Gmp, proxy: MailProxyClient, smtp_sink_factory: SinkFactory, tmp_path: Path
) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("cli-file", host=sink.host, port=sink.port)
    path = tmp_path / "msg.json"
    path.write_text(
        json.dumps(
            {
                "id": "CLI-FILE-1",
                "account_id": "cli-file",
                "from": "sender@example.com",
                "to": ["rcpt@example.com"],
                "subject": "from the file",
                "body": "body",
            }
        )
    )
    result = gmp("send", "--file", str(path), "--subject", "overridden")
    assert result.code == 0, result.err
    [received] = sink.wait_for_messages(1, timeout=30)
    assert received.message["Subject"] == "overridden"

    generated = gmp("send", "--account", "cli-file", "--from", "s@example.com", "--to", "r@example.com")
    assert generated.code == 0
    assert generated.out.startswith("queued gmp-")


def test_send_usage_errors_and_rejections(gmp: Gmp, tmp_path: Path) -> None:
    missing = gmp("send", "--account", "x", "--from", "s@example.com")
    assert missing.code == 2
    assert missing.err.strip() == "gmp: error: missing --to"

    rejected = gmp("send", "--account", "no-such", "--from", "s@example.com", "--to", "r@example.com", "--id", "R1")
    assert rejected.code == 1
    assert "rejected R1: account_id: unknown account 'no-such'" in rejected.err

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    result = gmp("send", "--file", str(bad))
    assert result.code == 2
    assert "not valid JSON" in result.err
    assert gmp("send", "--file", str(tmp_path / "absent.json")).code == 2
    assert gmp("send", "--priority", "urgent", "--to", "a@example.com").code == 2


def test_messages_table_and_filters(gmp: Gmp, proxy: MailProxyClient, smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("cli-list", host=sink.host, port=sink.port)
    for n in range(3):
        assert (
            gmp(
                "send",
                "--id",
                f"CLI-LIST-{n}",
                "--account",
                "cli-list",
                "--from",
                "s@example.com",
                "--to",
                "r@example.com",
            ).code
            == 0
        )
    wait_sent(proxy, "cli-list", 3)

    table = gmp("messages", "--status", "sent", "--account", "cli-list")
    assert table.code == 0
    rows = [line for line in table.out.splitlines() if "CLI-LIST-" in line]
    assert len(rows) == 3
    assert all("sent" in row and "cli-list" in row for row in rows)

    limited = gmp("messages", "--account", "cli-list", "--limit", "2", "--json").json()
    assert len(limited) == 2
    assert {m["status"] for m in limited} == {"sent"}
    assert gmp("messages", "--status", "error", "--account", "cli-list").out.strip() == "no messages"
    assert gmp("messages", "--bounced", "--account", "cli-list", "--json").json() == []  # none came back
    assert gmp("messages", "--status", "bogus").code == 2


def test_send_bulk_json_array_and_jsonl(
    gmp: Gmp, proxy: MailProxyClient, smtp_sink_factory: SinkFactory, tmp_path: Path
) -> None:
    sink = smtp_sink_factory("plain")
    proxy.put_account("cli-bulk", host=sink.host, port=sink.port)

    def msg(n: int, **extra: Any) -> dict[str, Any]:
        return {
            "id": f"BULK-{n}",
            "account_id": "cli-bulk",
            "from": "s@example.com",
            "to": ["r@example.com"],
            "subject": f"bulk {n}",
            "body": "b",
            **extra,
        }

    array = tmp_path / "bulk.json"
    array.write_text(json.dumps([msg(n) for n in range(5)] + [msg(99, to=["not-an-address"])]))
    first = gmp("send-bulk", str(array), "--batch-size", "2")
    assert first.code == 1  # one rejected
    assert "6 messages: queued 5, duplicates 0 (already known, not queued again), rejected 1" in first.out
    assert "BULK-99" in first.out and "to.0" in first.out
    assert "sending" in first.err  # the progress bar, on stderr

    again = gmp("send-bulk", str(array), "--no-progress")
    assert again.code == 1
    assert "queued 0, duplicates 5" in again.out
    assert again.err == ""

    lines = tmp_path / "bulk.jsonl"
    lines.write_text("\n".join(json.dumps(msg(n)) for n in range(5, 8)) + "\n\n")
    jsonl = gmp("send-bulk", str(lines), "--json")
    assert jsonl.code == 0
    assert jsonl.json() == {"ok": True, "queued": 3, "rejected": [], "duplicates": []}
    wait_sent(proxy, "cli-bulk", 8)
    assert len(sink.messages) == 8

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(msg(1)) + "\n{oops\n")
    result = gmp("send-bulk", str(broken))
    assert result.code == 2
    assert f"{broken}:2: not valid JSON" in result.err
    assert gmp("send-bulk", str(array), "--batch-size", "1001").code == 2


def test_test_smtp_steps(gmp: Gmp, smtp_sink_factory: SinkFactory, tmp_path: Path) -> None:
    """Through POST /commands/test-smtp: the proxy (trusting the sinks' CA, see conftest.py) runs the steps."""
    sink = smtp_sink_factory("starttls", auth=("sender", "right-password"))
    ok = gmp(
        "test-smtp",
        "--host",
        sink.host,
        "--port",
        str(sink.port),
        "--user",
        "sender",
        "--password-stdin",
        stdin="right-password\n",
    )
    assert ok.code == 0, ok.out + ok.err
    steps = [line.split()[:2] for line in ok.out.splitlines()[1:5]]
    assert steps == [["connect", "ok"], ["ehlo", "ok"], ["starttls", "ok"], ["auth", "ok"]]
    assert "all steps passed" in ok.out
    assert sink.messages == []
    assert not sink.saw("MAIL", "RCPT", "DATA")

    account = tmp_path / "account.json"
    account.write_text(
        json.dumps(
            {"host": sink.host, "port": sink.port, "user": "sender", "password": "wrong-pw-42", "use_tls": False}
        )
    )
    wrong = gmp("test-smtp", str(account), "--json")
    assert wrong.code == 1
    report = wrong.json()
    assert report["ok"] is False
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("connect", True),
        ("ehlo", True),
        ("starttls", True),
        ("auth", False),
    ]
    assert "wrong-pw-42" not in wrong.out

    inline = json.dumps({"host": "127.0.0.1", "port": free_port()})
    refused = gmp("test-smtp", inline)
    assert refused.code == 1
    assert "connect" in refused.out and "FAILED" in refused.out and "connection refused" in refused.out
    assert gmp("test-smtp").code == 2


def test_test_smtp_of_a_stored_account(gmp: Gmp, smtp_sink_factory: SinkFactory) -> None:
    """--account-id: the proxy checks the account with the password it stores; the CLI never sees it."""
    sink = smtp_sink_factory("starttls", auth=("sender", "stored-pw-77"))
    add = ("accounts", "add", "probe-me", "--host", sink.host, "--port", str(sink.port), "--user", "sender")
    assert gmp(*add, "--password-stdin", stdin="stored-pw-77\n").code == 0
    ok = gmp("test-smtp", "--account-id", "probe-me")
    assert ok.code == 0, ok.out + ok.err
    assert ok.out.splitlines()[0] == "testing account probe-me from the proxy; no mail is sent"
    assert [line.split()[:2] for line in ok.out.splitlines()[1:5]][-1] == ["auth", "ok"]
    assert "all steps passed" in ok.out
    assert not sink.saw("MAIL", "RCPT", "DATA")

    unknown = gmp("test-smtp", "--account-id", "no-such-account")
    assert unknown.code == 1
    assert unknown.err.strip() == "gmp: error: HTTP 404: account 'no-such-account' not found"
    mixed = gmp("test-smtp", "--account-id", "probe-me", "--host", sink.host)
    assert mixed.code == 2
    assert "--account-id" in mixed.err


def test_run_now_and_metrics(gmp: Gmp) -> None:
    run = gmp("run-now")
    assert run.code == 0
    assert "dispatch started" in run.out
    metrics = gmp("metrics")
    assert metrics.code == 0
    assert "# TYPE gmp_sent_total counter" in metrics.out


def test_configuration_and_connection_errors(gmp: Gmp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GMP_API_TOKEN")
    no_token = gmp("status")
    assert no_token.code == 2
    assert no_token.err.strip() == "gmp: error: no API token: set GMP_API_TOKEN (or pass --token)"

    wrong = gmp("--token", "wrong", "status")
    assert wrong.code == 1
    assert "HTTP 401" in wrong.err

    down = gmp("status", "--url", f"http://127.0.0.1:{free_port()}", "--token", "t", "--retries", "0")
    assert down.code == 1
    assert down.err.startswith("gmp: error: cannot reach")
    assert len(down.err.strip().splitlines()) == 1

    assert gmp("--url", "ftp://x", "--token", "t", "status").code == 2
    assert gmp("no-such-command").code == 2
    assert gmp().code == 2
    assert gmp("--help").code == 0


def test_installed_console_script(stack: LocalStack, smtp_sink_factory: SinkFactory) -> None:
    script = Path(sys.executable).with_name("gmp")
    assert script.is_file(), "run `make install` (pip install --no-deps -e client) to install the gmp script"
    sink = smtp_sink_factory("plain")
    env = {**os.environ, "GMP_URL": stack.url, "GMP_API_TOKEN": stack.token, "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60)

    status = run("status")
    assert status.returncode == 0, status.stderr
    assert "dynamodb" in status.stdout
    added = run("accounts", "add", "cli-script", "--host", sink.host, "--port", str(sink.port))
    assert added.returncode == 0, added.stderr
    sent = run(
        "send", "--id", "CLI-SCRIPT-1", "--account", "cli-script", "--from", "s@example.com", "--to", "r@example.com"
    )
    assert sent.stdout.strip() == "queued CLI-SCRIPT-1"
    sink.wait_for_messages(1, timeout=30)
    failed = run("accounts", "delete", "no-such-account")
    assert failed.returncode == 1
    assert failed.stderr.strip() == "gmp: error: HTTP 404: account 'no-such-account' not found"
