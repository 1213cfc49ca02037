"""Starts the whole local stack (`python -m mailproxy_local.runner`, what `make run` execs) as a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.smtp_servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalStack:
    url: str
    token: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Token": self.token}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.headers, timeout=30, **kwargs)

    def moto_urls(self) -> list[str]:
        """The local stand-ins for AWS the stack printed at start."""
        return [found.group(1) for line in self.output if (found := re.search(r"stand-in \(moto\): (\S+)", line))]

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextmanager
def local_stack(env: dict[str, str] | None = None, *, senders: int = 2) -> Iterator[LocalStack]:
    port = free_port()
    token = "e2e-token-0123456789-abcdefghijklmnopqrstuvwxyz"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "AWS_"))}
    child_env.update({"GMP_PORT": str(port), "GMP_API_TOKEN": token, "GMP_REPORT_INTERVAL": "1", **(env or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "mailproxy_local.runner", "--senders", str(senders)],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = LocalStack(url=f"http://127.0.0.1:{port}", token=token, process=process)

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.output.append(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("local stack exited:\n" + "".join(stack.output))
            try:
                if requests.get(stack.url + "/health", timeout=1).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or still importing on a busy machine: the deadline decides
            if time.monotonic() > deadline:
                raise RuntimeError("local stack did not start:\n" + "".join(stack.output))
            time.sleep(0.2)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
