"""The sender's SMTP pool: one connection per account for one batch, each message a transaction on it."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from types import TracebackType
from typing import Self

from mailproxy.logic.mime import Envelope
from mailproxy.logic.smtp.errors import Failure, Outcome, SendResult, scrub
from mailproxy.logic.smtp.message import Prepared, prepare
from mailproxy.logic.smtp.session import connect, transaction
from mailproxy.logic.smtp.transport import Addresses, Connection, SmtpAccount

log = logging.getLogger(
    "mailproxy.logic.smtp"
)  # the package's name, as before it was split: log settings keep applying


class SmtpPool:
    """One SMTP connection per account for the life of the pool (one sender batch); reused across that
    account's messages, reopened if the server dropped it. Not thread-safe; one pool per batch."""

    def __init__(self, addresses: Addresses | None = None) -> None:
        self._addresses = addresses
        self._connections: dict[str, Connection] = {}
        self._deadline: float | None = None
        self.connections_opened = 0  # connections established (TCP + greeting) so far

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """QUIT every connection, ignoring errors."""
        connections, self._connections = self._connections, {}
        for connection in connections.values():
            connection.close(polite=True)

    def send(
        self,
        account_key: str,
        account: SmtpAccount,
        message: EmailMessage,
        envelope: Envelope,
        *,
        deadline: float | None = None,
    ) -> SendResult:
        """One message; `deadline` (time.monotonic()) bounds the whole attempt, connecting included."""
        self._deadline = deadline
        result = self._send(account_key, account, message, envelope)
        scrubbed = scrub(result.detail, account.password)
        return result if scrubbed == result.detail else SendResult(result.outcome, result.code, scrubbed)

    # -- internals

    def _send(self, account_key: str, account: SmtpAccount, message: EmailMessage, envelope: Envelope) -> SendResult:
        prepared = prepare(message, envelope)
        if isinstance(prepared, SendResult):
            return prepared
        connection = self._pooled(account_key, account)
        reused = connection is not None
        try:
            return self._guarded_transaction(account_key, connection or self._open(account_key, account), prepared)
        except Failure as failure:
            if not (reused and failure.dead_before_accept):
                return failure.result
            log.info(
                "smtp: pooled connection for %s was dead (%s); reconnecting",
                account_key,
                scrub(failure.result.detail, account.password),
            )
        try:
            return self._guarded_transaction(account_key, self._open(account_key, account), prepared)
        except Failure as failure:
            return failure.result

    def _pooled(self, account_key: str, account: SmtpAccount) -> Connection | None:
        """The account's open connection, unless the account changed since or the connection broke."""
        connection = self._connections.get(account_key)
        if connection is not None and (connection.account != account or connection.broken):
            self._discard(account_key, polite=not connection.broken)
            return None
        return connection

    def _guarded_transaction(self, account_key: str, conn: Connection, prepared: Prepared) -> SendResult:
        conn.smtp.deadline = self._deadline
        try:
            return transaction(conn, prepared)
        except Failure:
            raise
        except (ValueError, UnicodeError) as exc:  # e.g. smtplib refusing an address it cannot encode
            conn.drop()
            return SendResult(Outcome.ERROR, None, f"the message cannot be sent: {exc}")
        except BaseException:  # a bug: do not leave a connection in an unknown state in the pool
            conn.drop()
            raise
        finally:
            if conn.broken:
                self._discard(account_key)

    def _open(self, account_key: str, account: SmtpAccount) -> Connection:
        def count(name: str, ok: bool, detail: str) -> None:
            if name == "connect" and ok:
                self.connections_opened += 1

        connection = connect(account, count, self._addresses, self._deadline)
        self._connections[account_key] = connection
        log.debug("smtp: opened connection for %s to %s:%s", account_key, account.host, account.port)
        return connection

    def _discard(self, account_key: str, *, polite: bool = False) -> None:
        connection = self._connections.pop(account_key, None)
        if connection is not None:
            connection.close(polite=polite)
