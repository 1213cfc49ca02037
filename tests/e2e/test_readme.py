"""The README's local tour, executed as written: its shell blocks, run with bash, in order, on the local stack.

`make run` is represented by `local_stack()`, which starts the module `make run` execs
(`mailproxy_local.runner`) with the environment the README's first block exports. The only substitutions:
the proxy's host/port (the stack listens on a free port, not 8000), the report endpoint's host/port (a real
HTTP server of the test) and, per the seed document's account, smtp.gmail.com:587 replaced by an aiosmtpd
sink on 127.0.0.1 that accepts the README's user and password, so that nothing leaves loopback. The token is
the one the README's own `openssl rand -hex 32` generated.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import LocalStack, local_stack
from tests.report_server import ReportEndpoint, report_endpoint
from tests.smtp_servers import SmtpSink

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
README_SYNC = "http://127.0.0.1:8080"
SMTP_USER, SMTP_PASSWORD = "your-email@gmail.com", "app-specific-password"


def tour_blocks() -> list[str]:
    """The ```bash blocks of the README's "Local tour" section (its subsections included), in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Local tour")
    following = re.search(r"^## ", text[start + 3 :], flags=re.MULTILINE)
    section = text[start : start + 3 + following.start()] if following else text[start:]
    return re.findall(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    """Split a shell block into commands: a command goes on while a quote is open, a line ends with a
    backslash, or a here-document is unfinished."""
    found: list[str] = []
    current: list[str] = []
    heredoc: str | None = None
    for line in block.splitlines():
        if not current and not line.strip():
            continue
        current.append(line)
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            else:
                continue
        else:
            marker = re.search(r"<<-?\s*'?(\w+)'?", line)
            if marker:
                heredoc = marker.group(1)
                continue
        text = "\n".join(current)
        if text.count("'") % 2 == 0 and not line.rstrip().endswith("\\"):
            found.append(text)
            current = []
    assert not current, f"unfinished command in the README: {current}"
    return found


def bash(script: str, env: dict[str, str], *, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )


def retry_until(run: Callable[[], subprocess.CompletedProcess[str]], ok: Callable[[str], bool]) -> str:
    """Run a command again until its output satisfies `ok`, as a person re-running it would (delivery takes
    a moment)."""
    deadline = time.monotonic() + 30
    while True:
        result = run()
        assert result.returncode == 0, result.stderr
        if ok(result.stdout):
            return result.stdout
        assert time.monotonic() < deadline, f"never satisfied: {result.stdout}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    # The README's account is smtp.gmail.com:587 with a user and password; this sink stands in for it on
    # 127.0.0.1 (plain SMTP with AUTH: the proxy sends credentials in clear only to loopback hosts).
    with SmtpSink("plain", auth=(SMTP_USER, SMTP_PASSWORD)) as running:
        yield running


@pytest.fixture(scope="module")
def reports() -> Iterator[ReportEndpoint]:
    with report_endpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def environment(reports: ReportEndpoint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The README's first block, run by bash: the variables it exports (the token from openssl)."""
    first = tour_blocks()[0]
    assert "make run" in first.splitlines()[-1]
    assert "exec $(PY) -m mailproxy_local.runner" in (ROOT / "Makefile").read_text()  # what local_stack() runs
    exports = "\n".join(line for line in first.splitlines() if line.startswith("export "))
    sync_port = reports.url.split("://", 1)[1].split("/", 1)[0]
    exports = exports.replace(README_SYNC, f"http://{sync_port}")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "AWS_"))}
    result = bash(exports + "\nenv", clean, cwd=tmp_path_factory.mktemp("readme"))
    assert result.returncode == 0, result.stderr
    exported = dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("GMP_"))
    assert re.fullmatch(r"[0-9a-f]{64}", exported["GMP_API_TOKEN"])
    assert exported["GMP_CLIENT_SYNC_URL"] == reports.url
    return exported


@pytest.fixture(scope="module")
def stack(environment: dict[str, str]) -> Iterator[LocalStack]:
    # `make run`, with the README's environment.
    with local_stack(environment) as running:
        yield running


@pytest.fixture
def shell_env(stack: LocalStack, environment: dict[str, str]) -> dict[str, str]:
    """The second terminal: the README's exports, `gmp` on the PATH (as in .venv/bin), no other GMP_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "AWS_"))}
    env.update(environment)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    return env


def substitute(command: str, stack: LocalStack, sink: SmtpSink) -> str:
    command = command.replace(README_URL, stack.url)
    command = command.replace('"host": "smtp.gmail.com", "port": 587', f'"host": "{sink.host}", "port": {sink.port}')
    return command.replace("--host smtp.gmail.com --port 587", f"--host {sink.host} --port {sink.port}")


def test_curl_tour(
    stack: LocalStack, sink: SmtpSink, reports: ReportEndpoint, shell_env: dict[str, str], tmp_path: Path
) -> None:
    block = tour_blocks()[1]
    assert block.count(README_URL) == 9 and block.count('"host": "smtp.gmail.com", "port": 587') == 1
    lines = commands(block)
    setup = [c for c in lines if not c.startswith("curl")]
    assert setup == ['T="X-API-Token: $GMP_API_TOKEN"']
    calls = [substitute(c, stack, sink) for c in lines if c.startswith("curl")]
    assert len(calls) == 9

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return bash("\n".join([*setup, command]), shell_env, cwd=tmp_path)

    def answer(command: str) -> dict[str, Any]:
        result = run(command)
        assert result.returncode == 0, result.stderr
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    status, account, messages, sent, accounts, run_now, metrics, delete, unauthorized = calls
    assert answer(status)["ok"] is True
    assert answer(account) == {"ok": True, "id": "smtp-main", "tenant_id": "default"}
    assert answer(messages) == {"ok": True, "queued": 1, "rejected": []}
    retry_until(lambda: run(sent), lambda out: '"id":"MSG-001"' in out.replace(" ", ""))
    listed = answer(accounts)
    [smtp_main] = listed["accounts"]
    assert smtp_main["id"] == "smtp-main" and smtp_main["password"] == "***"
    assert SMTP_PASSWORD not in json.dumps(listed)
    assert answer(run_now)["ok"] is True
    # The sender's counters are written at the end of its batch, a moment after the status shows `sent`.
    labels = 'tenant_id="default",tenant_name="default",account_id="smtp-main",account_name="smtp-main"'
    sent_series = f"gmp_sent_total{{{labels}}} 1"
    retry_until(lambda: run(metrics), lambda out: sent_series in out)
    assert answer(delete) == {"ok": True, "id": "smtp-main"}
    head = run(unauthorized).stdout.splitlines()[0]
    assert head.startswith("HTTP/1.1 401")

    [received] = sink.wait_for_messages(1, timeout=10)
    assert received.message["Subject"] == "Hello"
    assert received.auth_user == SMTP_USER
    assert received.rcpt_tos == ["someone@example.com"]
    assert reports.wait_for(lambda r: any(i["id"] == "MSG-001" and i["sent_ts"] for i in r.items()), timeout=15)


def test_cli_tour(stack: LocalStack, sink: SmtpSink, shell_env: dict[str, str], tmp_path: Path) -> None:
    """The CLI block, after the curl block (which deleted smtp-main). GMP_URL carries the stack's host/port in
    place of gmp's default http://127.0.0.1:8000; every prompt is answered with the README's password."""
    block = tour_blocks()[2]
    env = {**shell_env, "GMP_URL": stack.url}
    assert block.count("--host smtp.gmail.com --port 587") == 2
    lines = [substitute(c, stack, sink) for c in commands(block)]
    assert [c.split()[1] if c.startswith("gmp") else c.split()[0] for c in lines] == [
        "status",
        "accounts",
        "test-smtp",
        "send",
        "messages",
        "accounts",
        "cat",
        "send-bulk",
        "run-now",
        "metrics",
        "accounts",
    ]

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return bash(command, env, cwd=tmp_path, stdin=SMTP_PASSWORD + "\n")

    outputs: list[str] = []
    for command in lines:
        if command.startswith("gmp messages"):
            outputs.append(retry_until(functools.partial(run, command), lambda out: "MSG-002" in out))
            continue
        result = run(command)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        outputs.append(result.stdout)

    status, added, probe, sent, listed, accounts, _, bulk, run_now, metrics, deleted = outputs
    assert "dynamodb" in status and "ok" in status
    assert added.strip() == "account smtp-main saved"
    assert "all steps passed" in probe and "authenticated as your-email@gmail.com" in probe
    assert sent.strip() == "queued MSG-002"
    assert "MSG-002" in listed and "sent" in listed
    assert "***" in accounts and SMTP_PASSWORD not in accounts
    assert "2 messages: queued 2, duplicates 0" in bulk
    assert "dispatch started" in run_now
    assert "# TYPE gmp_sent_total counter" in metrics
    assert deleted.strip() == "account smtp-main deleted"
    subjects = [m.message["Subject"] for m in sink.wait_for_messages(4, timeout=30)]
    assert {"Hello", "1", "2"} <= set(subjects)
