"""Polling one IMAP mailbox (the deployment's bounce mailbox, or a PEC account's inbox) over IMAPS.

Each run reads the mail whose UID is past the last one handled (kept per mailbox with its UIDVALIDITY,
`MailboxStateStore`), parses and applies it, then marks it: handled mail gets \\Seen and the keyword
`gmp-handled` and moves to a "Processed" folder when the mailbox has one; mail that could not be parsed or
correlated gets \\Flagged and `gmp-unparsed` and stays where it is. Nothing is ever deleted. A run that dies
between the apply and the mark reads the mail again next time; the apply is once per notice, so nothing
is recorded twice."""

from __future__ import annotations

import hashlib
import imaplib
import ssl
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from mailproxy.logic.bounces.apply import Applied, apply_notice, count_bounce, record_pec_timeouts
from mailproxy.logic.bounces.parse import BounceNotice, ReferenceLookup, Unparsed, parse_mail
from mailproxy.services import Services

logger = Logger(child=True)

HANDLED_KEYWORD = "gmp-handled"
UNPARSED_KEYWORD = "gmp-unparsed"
PROCESSED_FOLDER = "Processed"
IMAP_TIMEOUT = 20.0
FETCH_LIMIT = 200  # mails per run: a backlog is worked through over several runs


@dataclass(frozen=True)
class Mailbox:
    key: str  # the MailboxStateStore key: "deployment", or "pec#<tenant>#<account>"
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    use_ssl: bool = True
    poll_interval: int = 60
    tenant_id: str | None = None  # a PEC inbox: only this tenant's messages


@dataclass
class PollResult:
    polled: bool = False  # False: not due yet (poll_interval)
    applied: int = 0
    bounced_hard: int = 0  # of the applied, by type (apply.BOUNCE_COUNTERS)
    bounced_soft: int = 0
    complaints: int = 0
    duplicates: int = 0
    ignored: int = 0  # another tenant's message, or none of ours
    unparsed: int = 0  # flagged and left in the mailbox
    timeouts: int = 0  # pec_timeout recorded


def poll(
    services: Services,
    mailbox: Mailbox,
    *,
    key: bytes,
    now: int,
    ca_file: str | None = None,
    force: bool = False,
) -> PollResult:
    """Read the mailbox's new mail once, if its poll interval has passed (or `force`). `key`: the
    correlation key (`correlation.deployment_key`); `ca_file`: the CA to trust (default: the system's)."""
    state = services.mailbox_state.get(mailbox.key)
    result = PollResult()
    if not force and state.last_poll_ts is not None and now - state.last_poll_ts < mailbox.poll_interval:
        return result
    result.polled = True
    with _connect(mailbox, ca_file) as conn:
        uidvalidity = _select(conn, mailbox.folder)
        last_uid = state.last_uid if state.uidvalidity == uidvalidity else 0
        processed = _has_folder(conn, PROCESSED_FOLDER) and mailbox.folder != PROCESSED_FOLDER
        for uid in _new_uids(conn, last_uid):
            _handle(services, conn, mailbox, uid, key=key, now=now, processed=processed, result=result)
            services.mailbox_state.advance(mailbox.key, uidvalidity=uidvalidity, last_uid=uid, now=now)
            last_uid = uid
    services.mailbox_state.polled(mailbox.key, now=now)
    if mailbox.tenant_id is not None:
        timeout = services.settings.pec_acceptance_timeout
        result.timeouts = record_pec_timeouts(services, mailbox.tenant_id, timeout=timeout, now=now)
    logger.info("mailbox polled", extra={"mailbox": mailbox.key, **vars(result)})
    return result


DEPLOYMENT_MAILBOX = "deployment"  # the bounce mailbox's state key (dal/bounce_config.py resets it)


def configured_mailboxes(services: Services) -> list[Mailbox]:
    """The deployment's bounce mailbox when enabled, and every PEC account's inbox. Passwords are decrypted
    here (KMS in AWS) and never logged."""
    mailboxes: list[Mailbox] = []
    bounce = services.bounce_config.get()
    if bounce.enabled and bounce.imap_host and bounce.imap_user:
        mailboxes.append(
            Mailbox(
                key=DEPLOYMENT_MAILBOX,
                host=bounce.imap_host,
                port=bounce.imap_port,
                user=bounce.imap_user,
                password=services.bounce_config.password(bounce) or "",
                folder=bounce.imap_folder,
                use_ssl=bounce.imap_ssl,
                poll_interval=bounce.poll_interval,
            )
        )
    for tenant in services.tenants.list():
        for account in services.accounts.list(tenant.id):
            if not account.is_pec_account or not account.imap_host:
                continue
            user, password = services.accounts.imap_credentials(account)
            if user is None:
                continue
            mailboxes.append(
                Mailbox(
                    key=f"pec#{account.tenant_id}#{account.id}",
                    host=account.imap_host,
                    port=account.imap_port,
                    user=user,
                    password=password or "",
                    folder=account.imap_folder,
                    tenant_id=account.tenant_id,
                )
            )
    return mailboxes


def poll_all(services: Services, *, key: bytes, now: int, ca_file: str | None = None) -> dict[str, int]:
    """Poll every configured mailbox that is due; one that fails (unreachable, refused login) is logged
    and counted, and the others are still polled. Returns the totals."""
    totals = {"mailboxes": 0, "failed": 0, **{name: 0 for name in vars(PollResult()) if name != "polled"}}
    for mailbox in configured_mailboxes(services):
        try:
            result = poll(services, mailbox, key=key, now=now, ca_file=ca_file)
        except (OSError, imaplib.IMAP4.error) as exc:
            totals["failed"] += 1
            logger.warning("mailbox poll failed", extra={"mailbox": mailbox.key, "error": str(exc)[:300]})
            continue
        totals["mailboxes"] += int(result.polled)
        for name, value in vars(result).items():
            if name != "polled":
                totals[name] += int(value)
    return totals


def _handle(
    services: Services,
    conn: imaplib.IMAP4,
    mailbox: Mailbox,
    uid: int,
    *,
    key: bytes,
    now: int,
    processed: bool,
    result: PollResult,
) -> None:
    raw = _fetch(conn, uid)
    parsed = (
        parse_mail(raw, key=key, now=now, referenced=_references(services, mailbox.tenant_id))
        if raw is not None
        else Unparsed(reason="not_a_notice")
    )
    if isinstance(parsed, Unparsed):
        result.unparsed += 1
        logger.info("mail not parsed", extra={"mailbox": mailbox.key, "uid": uid, "reason": parsed.reason})
        _store_flags(conn, uid, rf"(\Flagged {UNPARSED_KEYWORD})")
        return
    # The notice's own bytes name it: the same mail read again (or copied into the folder twice) is one notice.
    notice_id = hashlib.sha256(raw or b"").hexdigest()[:32]
    outcome = apply_notice(services, parsed, notice_id=notice_id, tenant_id=mailbox.tenant_id, now=now)
    if outcome is Applied.IGNORED:
        result.ignored += 1
        _store_flags(conn, uid, rf"(\Flagged {UNPARSED_KEYWORD})")
        return
    if outcome is Applied.DUPLICATE:
        result.duplicates += 1
    else:
        result.applied += 1
        if isinstance(parsed, BounceNotice):
            count_bounce(result, parsed.bounce_type)
    _store_flags(conn, uid, rf"(\Seen {HANDLED_KEYWORD})")
    if processed:
        conn.uid("MOVE", str(uid), PROCESSED_FOLDER)


def _references(services: Services, tenant_id: str | None) -> ReferenceLookup | None:
    """A PEC account's inbox: its receipts may name a message by Message-ID alone. The deployment's bounce
    mailbox (no tenant) correlates by the signed header only."""
    if tenant_id is None:
        return None

    def lookup(message_id_header: str) -> tuple[str, str] | None:
        message_id = services.mailbox_state.referenced(tenant_id, message_id_header)
        return None if message_id is None else (tenant_id, message_id)

    return lookup


def _connect(mailbox: Mailbox, ca_file: str | None) -> imaplib.IMAP4:
    conn: imaplib.IMAP4
    if mailbox.use_ssl:
        context = ssl.create_default_context(cafile=ca_file)
        conn = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=context, timeout=IMAP_TIMEOUT)
    else:
        conn = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=IMAP_TIMEOUT)
        conn.starttls(ssl.create_default_context(cafile=ca_file))  # never a password in the clear
    conn.login(mailbox.user, mailbox.password)
    return conn


def _select(conn: imaplib.IMAP4, folder: str) -> int:
    status, detail = conn.select(_quoted(folder))
    if status != "OK":
        raise imaplib.IMAP4.error(f"SELECT {folder!r} failed: {detail!r}")
    answer = conn.response("UIDVALIDITY")[1]
    if not answer or answer[0] is None:
        raise imaplib.IMAP4.error(f"no UIDVALIDITY for {folder!r}")
    return int(answer[0])


def _has_folder(conn: imaplib.IMAP4, folder: str) -> bool:
    status, listed = conn.list('""', _quoted(folder))
    return status == "OK" and any(item for item in listed if item)


def _new_uids(conn: imaplib.IMAP4, last_uid: int) -> list[int]:
    # Marked mail is never read again, even after a UIDVALIDITY change. "n:*" also matches the newest mail
    # when its UID is below n: filter.
    status, data = conn.uid("SEARCH", f"UID {last_uid + 1}:* UNKEYWORD {HANDLED_KEYWORD} UNKEYWORD {UNPARSED_KEYWORD}")
    if status != "OK" or not data or not data[0]:
        return []
    uids = sorted(int(u) for u in data[0].split() if int(u) > last_uid)
    return uids[:FETCH_LIMIT]


def _fetch(conn: imaplib.IMAP4, uid: int) -> bytes | None:
    status, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
    if status != "OK":
        return None
    for part in data:
        if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
            return part[1]
    return None


def _store_flags(conn: imaplib.IMAP4, uid: int, flags: str) -> None:
    conn.uid("STORE", str(uid), "+FLAGS", flags)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
