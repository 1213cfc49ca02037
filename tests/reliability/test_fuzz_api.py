"""Property-based fuzzing of the API from its own OpenAPI description (schemathesis): valid and invalid
data for every operation, sent with the admin token. Nothing answers 5xx, and every documented
response conforms to its schema and content type.

Generated data can name hosts (an account's `host`, attachment URLs...), so the fuzz runs in a network
namespace that has loopback only: `test_fuzz_runs_in_a_loopback_only_namespace` re-executes this
module there (`ip netns`); run directly, the fuzz tests skip unless the process already has no network
but loopback. `GMP_FUZZ_EXAMPLES` sets the examples per operation (default 20, random when set)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from functions.api.app import ApiContext, create_app
from mailproxy.models import AccountIn
from mailproxy.services import Services
from tests.conftest import API_TOKEN, AUTH

ROOT = Path(__file__).resolve().parents[2]
# Read at import: tests/conftest.py clears every GMP_* variable before each test.
IN_NAMESPACE = os.environ.get("GMP_FUZZ_NETNS") == "1"
EXAMPLES_SET = "GMP_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("GMP_FUZZ_EXAMPLES", "20"))


def _loopback_only() -> bool:
    try:
        return all(name == "lo" for _, name in socket.if_nameindex())
    except OSError:
        return False


ISOLATED = IN_NAMESPACE or _loopback_only()


_current: dict[str, Services] = {}
app = create_app(
    ApiContext(services=lambda: _current["services"], api_token=lambda: API_TOKEN, trigger_report=lambda: None)
)


async def served(scope: Any, receive: Any, send: Any) -> None:
    """The app as a server runs it: an unexpected exception has already been answered 500 by Starlette's
    ServerErrorMiddleware (which re-raises it for the server's log); the client sees the 500."""
    with contextlib.suppress(Exception):  # answered already; the app logged it
        await app(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", served)  # the app serves its schema without AWS


@pytest.fixture
def fuzzed_services(services: Services) -> Iterator[Services]:
    """The API of each operation's test works on a fresh moto (tests/conftest.py), with one account."""
    services.accounts.put(AccountIn(id="smtp-main", host="127.0.0.1", port=2525, user="u", password="fuzz-secret"))
    _current["services"] = services
    yield services
    _current.clear()


@pytest.mark.skipif(not ISOLATED, reason="run by test_fuzz_runs_in_a_loopback_only_namespace (needs no network)")
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not EXAMPLES_SET,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_every_generated_request_without_a_server_error(case: Any, fuzzed_services: Services) -> None:
    response = case.call(headers=AUTH)
    case.validate_response(
        response,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        headers=AUTH,
    )


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(ISOLATED, reason="already without a network: the fuzz tests run here directly")
def test_fuzz_runs_in_a_loopback_only_namespace() -> None:
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed: cannot make a loopback-only network namespace")
    namespace = f"gmp-fuzz-{os.getpid()}"
    made = _ip("netns", "add", namespace)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` is not available here ({made.stderr.strip()}); the fuzz needs a namespace")
    try:
        up = _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        assert up.returncode == 0, up.stderr
        links = _ip("netns", "exec", namespace, "ip", "-o", "link", "show")
        assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"], links.stdout
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "AWS_"))}
        env["GMP_FUZZ_NETNS"] = "1"
        if EXAMPLES_SET:
            env["GMP_FUZZ_EXAMPLES"] = str(EXAMPLES)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__))]
        child = subprocess.run(
            ["ip", "netns", "exec", namespace, *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        summary = (child.stdout + child.stderr).strip().splitlines()
        print("\n".join(summary[-5:]))
        assert child.returncode == 0, "\n".join(summary[-80:])
        assert " passed" in summary[-1] and "skipped" not in summary[-1].replace("1 skipped", ""), summary[-1]
    finally:
        _ip("netns", "delete", namespace)
