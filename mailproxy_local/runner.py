"""`make run`: the whole proxy on one machine. A moto server stands in for DynamoDB, SQS and S3; the API
runs under uvicorn; pollers drive the sender handler as SQS would and the stream reporter as the table's
stream would; a timer runs the reporter handler."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import boto3

from mailproxy.config import ConfigError, load_settings
from mailproxy.crypto import new_local_key
from mailproxy.dal.schema import create_resources
from mailproxy_local.lambda_context import LocalLambdaContext
from mailproxy_local.poller import SqsPoller
from mailproxy_local.stream_poller import StreamPoller

LOCAL_REGION = "us-east-1"
BOUNCE_SCHEDULE_SECONDS = 60  # the bouncer's schedule in AWS (stacks/bouncer.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: Linux ends it when the runner dies, even by SIGKILL (no orphaned servers)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the finally clause below still stops the child on any normal exit


_PR_SET_PDEATHSIG = 1


@contextmanager
def moto_server(port: int | None = None, *, serialize: bool = False) -> Iterator[str]:
    """A moto server in a child process on a free loopback port; stopped on exit. `serialize`: one request
    at a time, so that conditional writes are atomic as in DynamoDB (see moto_launcher)."""
    port = port or free_port()
    extra = ["--serialize"] if serialize else []
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "mailproxy_local.moto_launcher", *extra, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # safe: the runner starts its servers before any thread
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).close()  # noqa: S310 - loopback
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def point_at(endpoint: str, dynamodb_endpoint: str) -> None:
    """Every boto3 client of this process (and of its children) talks to the local stand-ins, never to AWS.
    DynamoDB has a server of its own, so that it and SQS each get a core."""
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_endpoint,
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106
        AWS_DEFAULT_REGION=LOCAL_REGION,
        AWS_REGION=LOCAL_REGION,
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gmp-local", description=__doc__)
    parser.add_argument("--senders", type=int, default=2, help="concurrent sender pollers (Lambda concurrency)")
    args = parser.parse_args(argv)
    try:
        base = load_settings()
    except ConfigError as exc:
        print(f"genro-mail-proxy: {exc}", file=sys.stderr)
        return 2
    generated_token = None
    if base.api_token is None:
        generated_token = secrets.token_urlsafe(32)
        os.environ["GMP_API_TOKEN"] = generated_token
    os.environ.setdefault("GMP_LOCAL_KEY", new_local_key())
    os.environ["GMP_MODE"] = "local"
    os.environ.setdefault("GMP_PUBLIC_URL", f"http://{base.host}:{base.port}")  # hosted unsubscribe links

    # SIGTERM ends the stack like Ctrl-C: the context managers below stop every child on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with moto_server() as endpoint, moto_server(serialize=True) as dynamodb_endpoint:
            point_at(endpoint, dynamodb_endpoint)
            resources = create_resources(boto3.session.Session())
            os.environ.update(resources.environment())
            return _serve(endpoint, dynamodb_endpoint, generated_token, args.senders)
    except KeyboardInterrupt:
        print("genro-mail-proxy (local) stopped", flush=True)
        return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _serve(endpoint: str, dynamodb_endpoint: str, generated_token: str | None, senders: int) -> int:
    import uvicorn

    # Imported only now: the handlers read the environment prepared above, as a Lambda reads its own.
    from functions.api.app import ApiContext, create_app
    from functions.bouncer import handler as bouncer
    from functions.jobs import handler as jobs_worker
    from functions.reporter import handler as reporter
    from functions.sender import handler as sender
    from functions.stream_reporter import handler as stream_reporter
    from mailproxy import runtime
    from mailproxy.observability import logger

    services = runtime.services()  # the handlers' own: one process stands in for each function's container
    settings = services.settings
    stop, wake_reporter = threading.Event(), threading.Event()

    def report_loop() -> None:
        # As the 1-minute schedule in AWS: each run also makes the empty calls whose interval has passed, so
        # a GMP_SYNC_INTERVAL shorter than GMP_REPORT_INTERVAL shortens the wait.
        every = min(settings.report_interval, settings.sync_interval)
        while not stop.is_set():
            wake_reporter.wait(every)
            wake_reporter.clear()
            if stop.is_set():
                return
            try:
                reporter.handler({"source": "local-timer"}, LocalLambdaContext("gmp-reporter"))
            except Exception:
                logger.exception("reporter run failed")

    def bounce_loop() -> None:
        # As the 1-minute schedule in AWS: each mailbox's poll_interval decides whether a run reads it.
        while not stop.wait(BOUNCE_SCHEDULE_SECONDS):
            try:
                bouncer.handler({"source": "local-timer"}, LocalLambdaContext("gmp-bouncer"))
            except Exception:
                logger.exception("bouncer run failed")

    # Reports within seconds, as the stream's event source mapping drives the stream reporter in AWS. The
    # table was created at start, so reading from its stream's start misses nothing.
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_endpoint)
    table = services.dynamodb.describe_table(TableName=settings.messages_table)["Table"]
    stream = StreamPoller(streams, table["LatestStreamArn"], stream_reporter.handler, starting_position="TRIM_HORIZON")
    threads = [
        threading.Thread(target=report_loop, name="reporter", daemon=True),
        threading.Thread(target=bounce_loop, name="bouncer", daemon=True),
        threading.Thread(target=stream.run, args=(stop,), name="stream-reporter", daemon=True),
    ]
    for n in range(senders):
        poller = SqsPoller(
            services.sqs,
            [settings.urgent_queue_url or "", settings.bulk_queue_url or ""],
            sender.handler,
            region=LOCAL_REGION,
            function_timeout=settings.sender_timeout,
        )
        threads.append(threading.Thread(target=poller.run, args=(stop,), name=f"sender-{n}", daemon=True))
    # Bulk jobs' continuations, as the event source mappings of the jobs queue and its DLQ drive the jobs
    # worker in AWS.
    jobs_dlq_url = services.sqs.get_queue_url(QueueName=(settings.jobs_dlq_arn or "").rsplit(":", 1)[-1])["QueueUrl"]
    jobs_poller = SqsPoller(
        services.sqs, [settings.jobs_queue_url or "", jobs_dlq_url], jobs_worker.handler, region=LOCAL_REGION
    )
    threads.append(threading.Thread(target=jobs_poller.run, args=(stop,), name="jobs", daemon=True))
    for thread in threads:
        thread.start()

    app = create_app(
        ApiContext(services=runtime.services, api_token=runtime.api_token, trigger_report=wake_reporter.set)
    )
    print(f"genro-mail-proxy (local) listening on http://{settings.host}:{settings.port}", flush=True)
    print(f"  OpenAPI docs:        http://{settings.host}:{settings.port}/docs", flush=True)
    print(f"  AWS stand-in (moto): {endpoint} (SQS, S3)", flush=True)
    print(f"  DynamoDB stand-in (moto): {dynamodb_endpoint}", flush=True)
    print(
        f"  reports to:          {settings.client_sync_url or '(GMP_CLIENT_SYNC_URL unset: reports wait)'}", flush=True
    )
    if generated_token:
        print(f"  API token (generated, set GMP_API_TOKEN to choose one): {generated_token}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=settings.log_level == "DEBUG",
        )
    )
    try:
        server.run()
    finally:
        stop.set()
        wake_reporter.set()
        for thread in threads:
            thread.join(timeout=5)
    print("genro-mail-proxy (local) stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
