"""``gmp``: the operator's command line for genro-mail-proxy.

    gmp status
    gmp accounts list | add ID --host H --port P [--user U] | delete ID
    gmp send --account ID --from ADDR --to ADDR --subject S --body B      (or --file msg.json)
    gmp messages [--status sent] [--account ID] [--limit 50]
    gmp send-bulk FILE                      (JSON array or JSON Lines; batches, progress bar, summary)
    gmp test-smtp ACCOUNT.json | --host H --port P [--user U] | --account-id ID   (from the proxy: connect,
                                            STARTTLS, AUTH; no mail sent)
    gmp run-now | metrics | health

The proxy's URL and token come from ``--url`` / ``--token`` or the environment (``GMP_URL``, default
http://127.0.0.1:8000, and ``GMP_API_TOKEN``). Exit status: 0 done, 1 the proxy refused or failed
(or a message was rejected, or an SMTP step failed), 2 bad usage or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mailproxy_client.api import DEFAULT_URL, MAX_BATCH, MailProxyClient
from mailproxy_client.errors import AuthenticationError, ConnectionFailed, MailProxyError
from mailproxy_client.models import (
    Account,
    AddMessagesResult,
    Attachment,
    MessageInfo,
    PriorityValue,
    Rejection,
    Suppression,
)

__all__ = ["main"]

PRIORITY_LABELS = ("immediate", "high", "medium", "low")
STATUSES = ("queued", "sending", "sent", "error", "deferred")
SUPPRESSION_REASONS = ("manual", "unsubscribe", "hard_bounce", "complaint")


class UsageError(Exception):
    """Bad usage or configuration: exit status 2."""


class Failed(Exception):
    """The command ran, and what it reports is a failure: exit status 1 (message already printed if empty)."""


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    out = Console(file=sys.stdout, markup=False, emoji=False, highlight=False, soft_wrap=False)
    err = Console(file=sys.stderr, markup=False, emoji=False, highlight=False)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    handler: Callable[[argparse.Namespace, Console, Console], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args, out, err)
    except UsageError as exc:
        _fail(err, str(exc))
        return 2
    except Failed as exc:
        if str(exc):
            _fail(err, str(exc))
        return 1
    except AuthenticationError as exc:
        _fail(err, f"the proxy refused the token (HTTP 401: {exc.error}); check GMP_API_TOKEN or --token")
        return 1
    except ConnectionFailed as exc:
        _fail(err, f"{exc.error} (is the proxy running? check GMP_URL or --url)")
        return 1
    except MailProxyError as exc:
        code = f"HTTP {exc.status_code}: " if exc.status_code is not None else ""
        _fail(err, f"{code}{exc.error}")
        return 1
    except KeyboardInterrupt:
        _fail(err, "interrupted")
        return 130
    except Exception as exc:  # never a traceback for an operator
        _fail(err, f"unexpected {type(exc).__name__}: {exc}")
        return 1


def _fail(err: Console, message: str) -> None:
    err.print(Text("gmp: error: ", style="bold red") + Text(message))


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (also accepted before the command)")
    group.add_argument("--url", default=argparse.SUPPRESS, help=f"proxy URL (env GMP_URL; default {DEFAULT_URL})")
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="API token (env GMP_API_TOKEN, preferred: a flag lands in the shell history and `ps`)",
    )
    group.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds per request (30)")
    group.add_argument("--retries", type=int, default=argparse.SUPPRESS, help="retries on 429/5xx/network (4)")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, not tables")

    parser = argparse.ArgumentParser(
        prog="gmp",
        description="Operate a genro-mail-proxy: accounts, messages, status, SMTP checks.",
        epilog="Exit status: 0 ok, 1 refused/failed/rejected, 2 usage or configuration.",
        parents=[common],
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help_: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_, parents=[common])
        sub.set_defaults(handler=handler)
        return sub

    command("status", "the proxy's health and its dependencies (DynamoDB, SQS, queue depths)", cmd_status)
    command("health", "GET /health (no token needed)", cmd_health)

    accounts = command("accounts", "SMTP accounts: list (default), add, delete", cmd_accounts_list)
    account_commands = accounts.add_subparsers(title="accounts commands", metavar="ACTION")
    listing = account_commands.add_parser("list", help="list the accounts (passwords masked)", parents=[common])
    listing.set_defaults(handler=cmd_accounts_list)
    add = account_commands.add_parser(
        "add",
        help="create or replace an account",
        description="Create or replace an SMTP account. With --user, the password is prompted for (or read "
        "from standard input when it is not a terminal, or with --password-stdin).",
        parents=[common],
    )
    add.set_defaults(handler=cmd_accounts_add)
    add.add_argument("id", help="account id, used as account_id in messages")
    _smtp_arguments(add, required=True)
    add.add_argument("--limit-per-minute", type=int, help="rate limit")
    add.add_argument("--limit-per-hour", type=int, help="rate limit")
    add.add_argument("--limit-per-day", type=int, help="rate limit")
    add.add_argument("--limit-per-second", type=int, help="the provider's send rate (e.g. SES SMTP: 14)")
    add.add_argument(
        "--max-concurrent", type=int, help="SMTP connections open at once across senders (e.g. Office 365: 3)"
    )
    add.add_argument(
        "--limit-behavior", choices=("defer", "reject"), help="over a limit: defer (default) or reject as error"
    )
    add.add_argument("--batch-size", type=int, help="most messages of this account per sender invocation")
    add.add_argument("--tenant", help="tenant id (default: the default tenant)")
    delete = account_commands.add_parser("delete", help="remove an account", parents=[common])
    delete.set_defaults(handler=cmd_accounts_delete)
    delete.add_argument("id")
    delete.add_argument("--tenant", help="tenant id")

    suppressions = command(
        "suppressions", "the tenant's suppression list: list (default), add, remove", cmd_suppressions_list
    )
    suppression_commands = suppressions.add_subparsers(title="suppressions commands", metavar="ACTION")
    listed = suppression_commands.add_parser(
        "list", help="addresses the tenant's mail no longer goes to", parents=[common]
    )
    listed.set_defaults(handler=cmd_suppressions_list)
    suppress = suppression_commands.add_parser("add", help="put addresses on the list", parents=[common])
    suppress.set_defaults(handler=cmd_suppressions_add)
    suppress.add_argument("addresses", nargs="+", metavar="ADDRESS")
    suppress.add_argument("--reason", choices=SUPPRESSION_REASONS, default="manual", help="why (default manual)")
    unsuppress = suppression_commands.add_parser("remove", help="take an address off the list", parents=[common])
    unsuppress.set_defaults(handler=cmd_suppressions_remove)
    unsuppress.add_argument("address")
    for sub in (suppressions, listed):
        sub.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    for sub in (suppressions, listed, suppress, unsuppress):
        sub.add_argument("--tenant", help="tenant id (default: the key's own, or the default tenant)")

    send = command("send", "queue one message, from flags or --file msg.json (flags override the file)", cmd_send)
    send.add_argument("--file", help='a JSON message object ({"id", "account_id", "from", "to", ...}); - for stdin')
    send.add_argument("--id", help="message id (default: a new gmp-<uuid>)")
    send.add_argument("--account", dest="account_id", help="account id")
    send.add_argument("--from", dest="from_addr", help="sender address")
    send.add_argument("--to", action="append", help="recipient (repeat, or comma-separated)")
    send.add_argument("--cc", action="append")
    send.add_argument("--bcc", action="append")
    send.add_argument("--reply-to")
    send.add_argument("--subject")
    body = send.add_mutually_exclusive_group()
    body.add_argument("--body", help="message body")
    body.add_argument("--body-file", help="read the body from this file (- for stdin)")
    send.add_argument("--html", action="store_true", help="the body is HTML")
    send.add_argument("--priority", help="0-3 or immediate|high|medium|low (default medium)")
    send.add_argument("--deferred-ts", type=int, help="unix time: not before")
    send.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="extra header (repeat)")
    send.add_argument("--attach", action="append", metavar="PATH", help="attach a file (repeat)")
    send.add_argument("--batch-code", help="campaign code")

    messages = command("messages", "list messages, newest first", cmd_messages)
    messages.add_argument("--status", choices=STATUSES)
    messages.add_argument("--account", dest="account_id")
    messages.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    messages.add_argument("--tenant", help="tenant id")
    messages.add_argument(
        "--bounced", action="store_true", help="only messages a bounce or complaint came back for (after 250 OK)"
    )
    message_commands = messages.add_subparsers(title="messages commands", metavar="ACTION")
    raw = message_commands.add_parser("raw", help="print one message's MIME source, as sent", parents=[common])
    raw.set_defaults(handler=cmd_messages_raw)
    raw.add_argument("id")
    raw.add_argument("--tenant", help="tenant id")

    watch = command("watch", "live counts of a batch or a tenant's messages until none is pending", cmd_watch)
    scope = watch.add_mutually_exclusive_group(required=True)
    scope.add_argument("--batch", dest="batch_code", metavar="CODE", help="the batch (campaign) code to follow")
    scope.add_argument("--tenant", metavar="ID", help="every message of this tenant")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")

    jobs = command("jobs", "bulk jobs (answers 202): list (default), show ID", cmd_jobs_list)
    job_commands = jobs.add_subparsers(title="jobs commands", metavar="ACTION")
    job_commands.add_parser("list", help="the tenant's jobs of the last 7 days", parents=[common]).set_defaults(
        handler=cmd_jobs_list
    )
    show = job_commands.add_parser("show", help="one job's progress and result", parents=[common])
    show.set_defaults(handler=cmd_jobs_show)
    show.add_argument("id")
    for sub in (jobs, show):
        sub.add_argument("--tenant", help="tenant id")

    bulk = command("send-bulk", "queue many messages from a JSON array or JSON Lines file", cmd_send_bulk)
    bulk.add_argument("file", help="JSON array or JSON Lines (one message object per line); - for stdin")
    bulk.add_argument(
        "--batch-size", type=int, default=500, help=f"messages per request, at most {MAX_BATCH} (default 500)"
    )
    bulk.add_argument("--default-priority", help="priority of messages that have none")
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")

    probe = command(
        "test-smtp",
        "check an SMTP account from the proxy: connect, EHLO, STARTTLS, AUTH; no mail is sent",
        cmd_test_smtp,
    )
    probe.add_argument(
        "account",
        nargs="?",
        help='account JSON ({"host", "port", "user", "password", "use_tls", "timeout"}): a file, - for stdin, '
        "or the JSON text itself; flags override it",
    )
    probe.add_argument("--account-id", help="check this stored account instead (its password stays in the proxy)")
    probe.add_argument("--tenant", help="tenant id (default: the default tenant)")
    _smtp_arguments(probe, required=False)

    command("run-now", "enqueue due deferred messages now and run a report cycle", cmd_run_now)
    command("metrics", "print the Prometheus metrics", cmd_metrics)
    return parser


def _smtp_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--host", required=required, help="SMTP server")
    parser.add_argument("--port", type=int, required=required, help="587 (STARTTLS), 465 (implicit TLS), 25")
    parser.add_argument("--user", help="SMTP user (no user: no AUTH)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    secret.add_argument(
        "--password",
        help="the password itself: for scripts only, it lands in the shell history and `ps` (prefer the prompt "
        "or --password-stdin)",
    )
    parser.add_argument(
        "--use-tls",
        action="store_true",
        default=None,
        help="TLS required: implicit on port 465, STARTTLS on any other; default: STARTTLS when offered",
    )
    parser.add_argument("--smtp-timeout", type=float, help="SMTP timeout in seconds (default 30)")


# --------------------------------------------------------------------------- helpers


def _client(args: argparse.Namespace, *, token_required: bool = True) -> MailProxyClient:
    url = getattr(args, "url", None) or os.environ.get("GMP_URL") or DEFAULT_URL
    token = getattr(args, "token", None) or os.environ.get("GMP_API_TOKEN") or ""
    if token_required and not token:
        raise UsageError("no API token: set GMP_API_TOKEN (or pass --token)")
    options: dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    if getattr(args, "retries", None) is not None:
        options["retries"] = args.retries
    try:
        return MailProxyClient(url, token, **options)
    except ValueError as exc:
        raise UsageError(f"{exc} (GMP_URL / --url)") from None


def _as_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _print_json(out: Console, value: Any) -> None:
    out.print(json.dumps(value, indent=2, ensure_ascii=False, default=str), soft_wrap=True)


def _text(value: Any, style: str | None = None) -> Text:
    return Text("-" if value is None or value == "" else str(value), style=style or "")


def _when(ts: int | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None


def _password(args: argparse.Namespace, user: str | None = None) -> str | None:
    """--password-stdin / --password / a prompt (a terminal) / the first line of stdin (a pipe)."""
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    if getattr(args, "password", None) is not None:
        return str(args.password)
    user = user or getattr(args, "user", None)
    if not user:
        return None
    if sys.stdin.isatty():
        try:
            return getpass.getpass(f"SMTP password for {user}: ")
        except EOFError:
            raise UsageError("no password given") from None
    line = sys.stdin.readline()
    if not line:
        raise UsageError("--user needs a password: use the prompt, --password-stdin or --password")
    return line.rstrip("\r\n")


def _priority(value: str | None) -> PriorityValue | None:
    if value is None:
        return None
    if value.isdigit() and int(value) <= 3:
        return int(value)
    if value.lower() in PRIORITY_LABELS:
        return cast(PriorityValue, value.lower())
    raise UsageError(f"--priority: expected 0-3 or {'|'.join(PRIORITY_LABELS)}, got {value!r}")


# --------------------------------------------------------------------------- commands


def cmd_status(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        status = proxy.status()
    if _as_json(args):
        _print_json(out, status.model_dump())
        return 0 if status.ok else 1
    headline = Text("ok", style="bold green") if status.ok else Text("DEGRADED", style="bold red")
    out.print(Text(f"proxy {proxy.base_url} ({status.mode or '?'} mode): ") + headline)
    table = Table(show_header=True, header_style="bold")
    table.add_column("dependency")
    table.add_column("state")
    for name, state in sorted(status.dependencies.items()):
        table.add_row(_text(name), _text(state, "green" if state == "ok" else "red"))
    for name, depth in sorted(status.queues.items()):
        table.add_row(_text(f"queue {name}"), _text(depth))
    out.print(table)
    return 0 if status.ok else 1


def cmd_health(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args, token_required=False) as proxy:
        answer = proxy.health()
    if _as_json(args):
        _print_json(out, answer)
    else:
        out.print(Text(str(answer.get("status", answer))))
    return 0


def cmd_accounts_list(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        accounts = proxy.accounts(tenant_id=getattr(args, "tenant", None))
    if _as_json(args):
        _print_json(out, [a.model_dump() for a in accounts])
        return 0
    if not accounts:
        out.print("no accounts")
        return 0
    out.print(_accounts_table(accounts))
    return 0


def _accounts_table(accounts: Iterable[Account]) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column in ("id", "host", "port", "user", "tls", "password", "limits"):
        table.add_column(column, overflow="fold")
    for account in accounts:
        limits = ", ".join(
            f"{value}/{unit}"
            for value, unit in (
                (account.limit_per_second, "s"),
                (account.limit_per_minute, "min"),
                (account.limit_per_hour, "h"),
                (account.limit_per_day, "day"),
            )
            if value
        )
        if limits and account.limit_behavior == "reject":
            limits += " (reject)"
        if account.max_concurrent:
            limits = ", ".join(filter(None, [limits, f"{account.max_concurrent} conn"]))
        table.add_row(
            _text(account.id),
            _text(account.host),
            _text(account.port),
            _text(account.user),
            _text(_tls_label(account.use_tls, account.port)),
            _text(account.password),
            _text(limits),
        )
    return table


def cmd_accounts_add(args: argparse.Namespace, out: Console, err: Console) -> int:
    password = _password(args)
    with _client(args) as proxy:
        answer = proxy.put_account(
            args.id,
            host=args.host,
            port=args.port,
            user=args.user,
            password=password,
            use_tls=bool(args.use_tls),
            timeout=args.smtp_timeout,
            limit_per_minute=args.limit_per_minute,
            limit_per_hour=args.limit_per_hour,
            limit_per_day=args.limit_per_day,
            limit_per_second=args.limit_per_second,
            max_concurrent=args.max_concurrent,
            limit_behavior=args.limit_behavior,
            batch_size=args.batch_size,
            tenant_id=args.tenant,
        )
    if _as_json(args):
        _print_json(out, answer)
    else:
        out.print(Text(f"account {answer.get('id', args.id)} saved"))
    return 0


def cmd_accounts_delete(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        answer = proxy.delete_account(args.id, tenant_id=args.tenant)
    if _as_json(args):
        _print_json(out, answer)
    else:
        out.print(Text(f"account {args.id} deleted"))
    return 0


def cmd_suppressions_list(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    rows: list[Suppression] = []
    with _client(args) as proxy:
        for entry in proxy.iter_suppressions(page_size=min(args.limit, 1000), tenant_id=args.tenant):
            rows.append(entry)
            if len(rows) >= args.limit:
                break
    if _as_json(args):
        _print_json(out, [entry.model_dump() for entry in rows])
        return 0
    if not rows:
        out.print("no suppressed addresses")
        return 0
    table = Table(show_header=True, header_style="bold")
    for column in ("address", "reason", "since", "source message"):
        table.add_column(column, overflow="fold")
    for entry in rows:
        table.add_row(_text(entry.address), _text(entry.reason), _text(_when(entry.ts)), _text(entry.source_message_id))
    out.print(table)
    return 0


def cmd_suppressions_add(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        answer = proxy.add_suppressions(args.addresses, args.reason, tenant_id=args.tenant)
    if _as_json(args):
        _print_json(out, answer)
    else:
        out.print(Text(f"{answer.get('added', len(args.addresses))} address(es) suppressed"))
    return 0


def cmd_suppressions_remove(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        answer = proxy.remove_suppression(args.address, tenant_id=args.tenant)
    if _as_json(args):
        _print_json(out, answer)
    else:
        out.print(Text(f"{args.address} removed from the suppression list"))
    return 0


def cmd_send(args: argparse.Namespace, out: Console, err: Console) -> int:
    message = _message_from_file(args.file) if args.file else {}
    if args.body_file:
        message["body"] = _read_source(args.body_file)
    message.update({k: v for k, v in _message_flags(args).items() if v is not None})
    if args.header:
        message["headers"] = _with_headers(message.get("headers"), args.header)
    if args.attach:
        message["attachments"] = _with_attachments(message.get("attachments"), args.attach)
    message.setdefault("id", f"gmp-{uuid.uuid4().hex}")
    _require_sender_and_recipients(message)

    with _client(args) as proxy:
        result = proxy.add_messages([message])
    if _as_json(args):
        _print_json(out, result.model_dump())
    elif result.queued:
        out.print(Text(f"queued {message['id']}"))
    elif result.duplicates:
        out.print(Text(f"already known: {message['id']} (not queued again, never sent twice)"))
    for rejection in result.rejected:
        _fail(err, f"rejected {rejection.id or message['id']}: {rejection.reason}")
    return 1 if result.rejected else 0


def _message_from_file(source: str) -> dict[str, Any]:
    loaded = _parse_json(_read_source(source), source)
    if not isinstance(loaded, dict):
        raise UsageError(f"{source}: expected one JSON object (a message); use send-bulk for a list")
    return loaded


def _message_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The message fields `gmp send`'s flags give (None: not given, the file's value stays)."""
    return {
        "id": args.id,
        "account_id": args.account_id,
        "from": args.from_addr,
        "to": _addresses(args.to),
        "cc": _addresses(args.cc),
        "bcc": _addresses(args.bcc),
        "reply_to": args.reply_to,
        "subject": args.subject,
        "body": args.body,
        "content_type": "html" if args.html else None,
        "priority": _priority(args.priority),
        "deferred_ts": args.deferred_ts,
        "batch_code": args.batch_code,
    }


def _with_headers(headers: dict[str, str] | None, flags: list[str]) -> dict[str, str]:
    merged = dict(headers or {})
    for header in flags:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header: expected 'Name: value', got {header!r}")
        merged[name.strip()] = value.strip()
    return merged


def _with_attachments(attachments: list[Any] | None, paths: list[str]) -> list[Any]:
    merged = list(attachments or [])
    for path in paths:
        try:
            merged.append(Attachment.from_file(path).model_dump(exclude_none=True))
        except OSError as exc:
            raise UsageError(f"--attach {path}: {exc.strerror or exc}") from None
    return merged


def _require_sender_and_recipients(message: dict[str, Any]) -> None:
    missing = [
        flag
        for flag, present in (
            ("--account", message.get("account_id")),
            ("--from", message.get("from") or message.get("from_addr")),
            ("--to", message.get("to")),
        )
        if not present
    ]
    if missing:
        raise UsageError("missing " + ", ".join(missing))


def _addresses(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source}: not valid JSON ({exc})") from None


def load_messages(text: str, source: str) -> list[Any]:
    """A JSON array of messages, or JSON Lines (one message object per line; blank lines skipped)."""
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("["):
        loaded = _parse_json(text, source)
        if not isinstance(loaded, list):
            raise UsageError(f"{source}: expected a JSON array of messages")
        return loaded
    messages: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            messages.append(json.loads(line))
        except ValueError as exc:
            raise UsageError(f"{source}:{number}: not valid JSON ({exc})") from None
    return messages


def cmd_send_bulk(args: argparse.Namespace, out: Console, err: Console) -> int:
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}")
    messages = load_messages(_read_source(args.file), args.file)
    if not messages:
        raise UsageError(f"{args.file}: no messages")
    default_priority = _priority(args.default_priority)
    progress = Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "queued {task.fields[queued]}, duplicates {task.fields[duplicates]}, rejected {task.fields[rejected]}"
        ),
        TimeElapsedColumn(),
        console=err,
        disable=args.no_progress or _as_json(args),
    )
    counts = {"queued": 0, "duplicates": 0, "rejected": 0}
    with progress, _client(args) as proxy:
        task = progress.add_task("send", total=len(messages), queued=0, duplicates=0, rejected=0)

        def advance(part: AddMessagesResult, size: int) -> None:
            counts["queued"] += part.queued
            counts["duplicates"] += len(part.duplicates)
            counts["rejected"] += len(part.rejected)
            progress.update(
                task,
                advance=size,
                queued=counts["queued"],
                duplicates=counts["duplicates"],
                rejected=counts["rejected"],
            )

        try:
            result = proxy.add_messages(
                messages, default_priority=default_priority, batch_size=args.batch_size, on_batch=advance
            )
        except MailProxyError as exc:
            if isinstance(exc.partial, AddMessagesResult):
                progress.stop()
                _bulk_summary(out, exc.partial, len(messages), args)
                _fail(err, f"stopped: the rest of {args.file} was not sent")
            raise
    _bulk_summary(out, result, len(messages), args)
    return 1 if result.rejected else 0


def _bulk_summary(out: Console, result: AddMessagesResult, total: int, args: argparse.Namespace) -> None:
    if _as_json(args):
        _print_json(out, result.model_dump())
        return
    out.print(
        Text(
            f"{total} messages: queued {result.queued}, duplicates {len(result.duplicates)} (already known, "
            f"not queued again), rejected {len(result.rejected)}"
        )
    )
    if result.rejected:
        out.print(_rejections_table(result.rejected))


def _rejections_table(rejections: Iterable[Rejection]) -> Table:
    table = Table(title="rejected", show_header=True, header_style="bold")
    table.add_column("id", overflow="fold")
    table.add_column("reason", overflow="fold")
    for rejection in rejections:
        table.add_row(_text(rejection.id), _text(rejection.reason))
    return table


def cmd_messages(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    rows: list[MessageInfo] = []
    with _client(args) as proxy:
        for message in proxy.iter_messages(
            args.status,
            args.account_id,
            page_size=min(args.limit, 500),
            tenant_id=args.tenant,
            bounced=True if args.bounced else None,
        ):
            rows.append(message)
            if len(rows) >= args.limit:
                break
    if _as_json(args):
        _print_json(out, [m.model_dump() for m in rows])
        return 0
    if not rows:
        out.print("no messages")
        return 0
    table = Table(show_header=True, header_style="bold")
    for column in ("id", "account", "status", "prio", "tries", "created", "outcome at", "error / reason"):
        table.add_column(column, overflow="fold")
    styles = {"sent": "green", "error": "red", "deferred": "yellow"}
    for m in rows:
        outcome = m.sent_ts or m.error_ts or m.deferred_ts
        table.add_row(
            _text(m.id),
            _text(m.account_id),
            _text(m.status, styles.get(m.status)),
            _text(m.priority),
            _text(m.attempts),
            _text(_when(m.created_ts)),
            _text(_when(outcome)),
            _text(m.error or m.deferred_reason or _bounce(m)),
        )
    out.print(table)
    return 0


def _bounce(message: MessageInfo) -> str | None:
    """What came back after the SMTP reply, in a word or two: `hard bounce 511`, `complaint`, `pec_delivery`."""
    if message.bounce_type == "complaint":
        return "complaint"
    if message.bounce_type is not None:
        return f"{message.bounce_type} bounce {message.bounce_code or ''}".strip()
    return message.pec_event


def cmd_test_smtp(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.account_id:
        request = _stored_account_check(args)
        target = f"account {args.account_id}"
    else:
        request = _server_check(args)
        mode = _tls_label(request.get("use_tls"), request["port"])
        target = f"{request['host']}:{request['port']} ({mode})"
    if args.tenant:
        request["tenant_id"] = args.tenant
    with _client(args) as proxy:
        if not _as_json(args):
            out.print(Text(f"testing {target} from the proxy; no mail is sent"))
        check = proxy.test_smtp(**request)
    if _as_json(args):
        _print_json(out, check.model_dump())
        return 0 if check.ok else 1
    for step in check.steps:
        mark = Text(" ok     ", style="green") if step.ok else Text(" FAILED ", style="bold red")
        out.print(Text(f"{step.step:<9}") + mark + Text(step.detail))
    out.print(Text("all steps passed", style="green") if check.ok else Text("the account does not work", style="red"))
    return 0 if check.ok else 1


_SERVER_FLAGS = ("account", "host", "port", "user", "password", "use_tls", "smtp_timeout")


def _stored_account_check(args: argparse.Namespace) -> dict[str, Any]:
    given = [name for name in _SERVER_FLAGS if getattr(args, name) not in (None, False)]
    if given or args.password_stdin:
        raise UsageError("--account-id tests the stored account: no account JSON or server flags with it")
    return {"account_id": args.account_id}


def _server_check(args: argparse.Namespace) -> dict[str, Any]:
    """The ad-hoc account: the account JSON (a file, - or the text itself), then the flags over it."""
    values = _account_json(args.account) if args.account else {}
    flags = {"host": args.host, "port": args.port, "user": args.user, "use_tls": args.use_tls}
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.smtp_timeout is not None:
        values["timeout"] = args.smtp_timeout
    if args.password_stdin or args.password is not None or (values.get("user") and not values.get("password")):
        values["password"] = _password(args, values.get("user"))
    if not values.get("host") or not values.get("port"):
        raise UsageError("test-smtp needs a host and a port (account JSON or --host/--port), or --account-id")
    try:
        return {
            "host": str(values["host"]),
            "port": int(values["port"]),
            "user": values.get("user") or None,
            "password": values.get("password") or None,
            "use_tls": bool(values.get("use_tls", False)),
            "timeout": float(values["timeout"]) if values.get("timeout") else None,
        }
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad account: {exc}") from None


def _account_json(source: str) -> dict[str, Any]:
    inline = source.lstrip().startswith("{")
    loaded = _parse_json(source if inline else _read_source(source), "account" if inline else source)
    if not isinstance(loaded, dict):
        raise UsageError("the account must be a JSON object")
    return loaded


def cmd_messages_raw(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        raw = proxy.raw_message(args.id, tenant_id=args.tenant)
    out.file.write(raw.decode("utf-8", "replace"))  # as is: no rich markup or wrapping in a MIME source
    return 0


def cmd_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Poll the message list until nothing of the batch (or tenant) is queued, sending or deferred."""
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    with _client(args) as proxy:
        if _as_json(args):
            while True:
                counts = _watch_counts(proxy, args.batch_code, args.tenant)
                out.print(json.dumps(counts), soft_wrap=True)
                if not counts["pending"]:
                    return 0
                time.sleep(args.interval)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=out, transient=False
        ) as progress:
            task = progress.add_task("starting", total=None)
            while True:
                counts = _watch_counts(proxy, args.batch_code, args.tenant)
                description = "sent {sent}  deferred {deferred}  error {error}  pending {pending}".format(**counts)
                progress.update(task, description=description, total=counts["total"], completed=counts["done"])
                if not counts["pending"]:
                    return 0
                time.sleep(args.interval)


def _watch_counts(proxy: MailProxyClient, batch_code: str | None, tenant_id: str | None) -> dict[str, int]:
    # GET /messages has no batch filter: the batch's messages are picked from the tenant's list.
    counts = dict.fromkeys(STATUSES, 0)
    for message in proxy.iter_messages(page_size=500, tenant_id=tenant_id):
        if batch_code is None or message.batch_code == batch_code:
            counts[message.status] = counts.get(message.status, 0) + 1
    done = counts["sent"] + counts["error"]
    pending = counts["queued"] + counts["sending"] + counts["deferred"]
    return {**counts, "pending": pending, "done": done, "total": done + pending}


def cmd_jobs_list(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        jobs = proxy.jobs(tenant_id=args.tenant)
    if _as_json(args):
        _print_json(out, jobs)
        return 0
    if not jobs:
        out.print("no jobs")
        return 0
    table = Table(show_header=True, header_style="bold")
    for column in ("id", "kind", "status", "processed", "created"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(
            *(_text(job.get(key)) for key in ("id", "kind", "status", "processed")),
            _text(_when(job.get("created_ts"))),
        )
    out.print(table)
    return 0


def cmd_jobs_show(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        _print_json(out, proxy.job(args.id, tenant_id=args.tenant))
    return 0


def cmd_run_now(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        answer = proxy.run_now()
    if _as_json(args):
        _print_json(out, answer)
    else:
        out.print(Text(f"dispatch started: {answer.get('enqueued', 0)} due message(s) enqueued, report cycle started"))
    return 0


def cmd_metrics(args: argparse.Namespace, out: Console, err: Console) -> int:
    with _client(args) as proxy:
        text = proxy.metrics()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


if __name__ == "__main__":  # python -m mailproxy_client.cli
    sys.exit(main())


def _tls_label(use_tls: bool | None, port: int) -> str:
    """What the proxy does with `use_tls` on this port (the original's rule: implicit TLS on 465 only)."""
    if use_tls and port == 465:
        return "implicit TLS"
    return "STARTTLS required" if use_tls else "STARTTLS when offered"
