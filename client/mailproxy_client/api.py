"""``MailProxyClient``: the proxy's REST API from Python, with retries and typed answers.

    from mailproxy_client import MailProxyClient, Message

    with MailProxyClient("http://127.0.0.1:8000", token) as proxy:
        proxy.put_account("smtp-main", host="smtp.example.com", port=587, user="me", password="...")
        result = proxy.add_messages([Message(id="MSG-001", account_id="smtp-main", from_addr="me@example.com",
                                             to=["you@example.com"], subject="Hello", body="Hi")])
        result.queued, result.duplicates, result.rejected

Every call is retried with exponential backoff (and jitter) on 429, 5xx and connection errors; the
``Retry-After`` header is honoured. Re-submitting messages is safe: ids are yours, and the proxy never
sends an id twice. An id still waiting for a sender is replaced by the new version (and counted as queued);
one a sender has taken comes back in ``AddMessagesResult.duplicates``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from mailproxy_client.errors import (
    AuthenticationError,
    ConnectionFailed,
    Forbidden,
    MailProxyError,
    NotFound,
    ValidationFailed,
)
from mailproxy_client.models import (
    Account,
    AddMessagesResult,
    Message,
    MessageInfo,
    MessagesPage,
    PriorityValue,
    Rejection,
    SmtpCheck,
    Status,
    Suppression,
    SuppressionsPage,
    Tenant,
)

__all__ = ["DEFAULT_URL", "MAX_BATCH", "MAX_BATCH_BYTES", "MailProxyClient"]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_BATCH = 1000  # the API's limit of messages per add-messages call
MAX_BATCH_BYTES = 5_000_000  # below the 6 MB a synchronous Lambda invocation accepts
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "genro-mail-proxy-client/0.1.0"

BatchCallback = Callable[[AddMessagesResult, int], None]


class MailProxyClient:
    """A client of one proxy. ``base_url`` is the API's root (``ApiUrl`` of the stack, which ends with the
    stage, e.g. ``https://abc.execute-api.eu-west-1.amazonaws.com/v1/``); ``token`` its ``X-API-Token``.

    ``retries``: further attempts after the first on 429/5xx/connection errors, waiting
    ``backoff * 2**attempt`` seconds (half of it random, at most ``max_backoff``) in between.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s):// URL, got {base_url!r}")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self.base_url = str(url)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=url,
            headers={"X-API-Token": token, "User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MailProxyClient({self.base_url!r})"  # never the token

    # -- routes

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no token needed): ``{"status": "ok"}``."""
        return self._object(self._request("GET", "/health"))

    def status(self) -> Status:
        """``GET /status``: the proxy and its dependencies. A dependency down is ``ok=False``, not an error."""
        response = self._request("GET", "/status", accept=(503,))
        body = self._json(response)
        if response.status_code == 503 and not (isinstance(body, dict) and "dependencies" in body):
            raise _error(response)
        return Status.model_validate(body)

    def put_account(
        self,
        account_id: str,
        *,
        host: str,
        port: int,
        user: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        timeout: float | None = None,
        limit_per_minute: int | None = None,
        limit_per_hour: int | None = None,
        limit_per_day: int | None = None,
        limit_per_second: int | None = None,
        max_concurrent: int | None = None,
        limit_behavior: Literal["defer", "reject"] | None = None,
        batch_size: int | None = None,
        tenant_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """``POST /account``: create or replace an SMTP account. ``use_tls=True`` is implicit TLS (465);
        False is STARTTLS whenever the server offers it. Over a rate limit, ``limit_behavior`` "defer" (the
        default) waits for the next window, "reject" ends the message as an error; ``batch_size`` caps the
        account's messages per sender invocation; ``limit_per_second`` (e.g. SES SMTP's 14) and
        ``max_concurrent`` (connections open at once, e.g. Office 365's 3) are the provider's own limits.
        Returns ``{"ok", "id", "tenant_id"}``."""
        payload: dict[str, Any] = {
            "id": account_id,
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "use_tls": use_tls,
            "timeout": timeout,
            "limit_per_minute": limit_per_minute,
            "limit_per_hour": limit_per_hour,
            "limit_per_day": limit_per_day,
            "limit_per_second": limit_per_second,
            "max_concurrent": max_concurrent,
            "limit_behavior": limit_behavior,
            "batch_size": batch_size,
            "tenant_id": tenant_id,
            **extra,
        }
        body = {k: v for k, v in payload.items() if v is not None}
        return self._object(self._request("POST", "/account", json=body))

    def delete_account(self, account_id: str, *, tenant_id: str | None = None) -> dict[str, Any]:
        """``DELETE /account/{id}``; raises :class:`NotFound` for an unknown account."""
        path = "/account/" + _quote(account_id)
        return self._object(self._request("DELETE", path, params=_params(tenant_id=tenant_id)))

    def accounts(self, *, tenant_id: str | None = None) -> list[Account]:
        """``GET /accounts``: passwords come masked (``"***"``)."""
        body = self._object(self._request("GET", "/accounts", params=_params(tenant_id=tenant_id)))
        return [Account.model_validate(a) for a in body.get("accounts", [])]

    def add_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        default_priority: PriorityValue | None = None,
        *,
        batch_size: int = MAX_BATCH,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        on_batch: BatchCallback | None = None,
    ) -> AddMessagesResult:
        """``POST /commands/add-messages``, in as many calls as needed (at most ``batch_size`` messages and
        about ``max_batch_bytes`` of JSON each). Returns the merged answer; ids the proxy already held are
        in ``duplicates``, not in ``rejected``. ``on_batch(result_of_that_call, messages_in_it)`` is
        called after each call (progress bars).

        An id given twice in ``messages`` is rejected the second time, as the API does within one call.
        If a call fails after its retries, the exception's ``partial`` holds the result so far.
        """
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        total = AddMessagesResult(ok=True, queued=0, rejected=[], duplicates=[])
        seen: set[tuple[str, str]] = set()
        batch: list[Any] = []
        positions: list[int] = []  # each batched message's position in `messages`
        batch_bytes = 0

        def flush() -> None:
            nonlocal batch, positions, batch_bytes
            if not batch:
                return
            body: dict[str, Any] = {"messages": batch}
            if default_priority is not None:
                body["default_priority"] = default_priority
            try:
                answer = self._object(self._request("POST", "/commands/add-messages", json=body))
            except MailProxyError as exc:
                exc.partial = total
                raise
            part = _split_duplicates(answer, positions)
            total.ok = total.ok and part.ok
            total.queued += part.queued
            total.rejected.extend(part.rejected)
            total.duplicates.extend(part.duplicates)
            if on_batch is not None:
                on_batch(part, len(batch))
            batch, positions, batch_bytes = [], [], 0

        for position, message in enumerate(messages):
            payload = _message_payload(message)
            if isinstance(payload, dict) and isinstance(payload.get("id"), str):
                key = (str(payload.get("tenant_id") or "default"), payload["id"])
                if key in seen:
                    total.rejected.append(Rejection(id=payload["id"], reason="id: appears twice in this request"))
                    continue
                seen.add(key)
            size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
            if batch and (len(batch) >= batch_size or batch_bytes + size > max_batch_bytes):
                flush()
            batch.append(payload)
            positions.append(position)
            batch_bytes += size + 1
        flush()
        return total

    def test_smtp(
        self,
        account_id: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        timeout: float | None = None,
        tenant_id: str | None = None,
    ) -> SmtpCheck:
        """``POST /commands/test-smtp``: the proxy connects to the SMTP server, says EHLO, STARTTLS (unless
        ``use_tls``: implicit TLS) and AUTH (with a user), and sends no mail. Either a stored account
        (``account_id``, with ``tenant_id``) or a server given here (``host``, ``port``...). A failing step
        is an answer (``ok=False``), not an error; bad input raises :class:`ValidationFailed`."""
        payload: dict[str, Any] = {
            "account_id": account_id,
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "use_tls": use_tls,
            "timeout": timeout,
            "tenant_id": tenant_id,
        }
        body = {k: v for k, v in payload.items() if v is not None}
        return SmtpCheck.model_validate(self._object(self._request("POST", "/commands/test-smtp", json=body)))

    def run_now(self) -> dict[str, Any]:
        """``POST /commands/run-now``: enqueue due deferred messages now and start a report cycle."""
        return self._object(self._request("POST", "/commands/run-now"))

    def messages(
        self,
        status: str | None = None,
        account_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        *,
        tenant_id: str | None = None,
        active_only: bool = False,
        include_history: bool = False,
        bounced: bool | None = None,
    ) -> MessagesPage:
        """``GET /messages``: one page, newest first; ``page.cursor`` reads the next (None at the end).
        ``active_only``: queued, deferred and sending only; ``include_history``: each message's events;
        ``bounced``: True, only messages a bounce or complaint came back for (False: none came back)."""
        params = _params(
            status=status,
            account_id=account_id,
            limit=limit,
            cursor=cursor,
            tenant_id=tenant_id,
            active_only="true" if active_only else None,
            include_history="true" if include_history else None,
            bounced=None if bounced is None else str(bounced).lower(),
        )
        return MessagesPage.model_validate(self._object(self._request("GET", "/messages", params=params)))

    def iter_messages(
        self,
        status: str | None = None,
        account_id: str | None = None,
        *,
        page_size: int = 100,
        tenant_id: str | None = None,
        active_only: bool = False,
        include_history: bool = False,
        bounced: bool | None = None,
    ) -> Iterator[MessageInfo]:
        """Every message matching the filters, following the cursors page by page."""
        cursor: str | None = None
        while True:
            page = self.messages(
                status,
                account_id,
                page_size,
                cursor,
                tenant_id=tenant_id,
                active_only=active_only,
                include_history=include_history,
                bounced=bounced,
            )
            yield from page.messages
            if not page.cursor:
                return
            cursor = page.cursor

    def raw_message(self, message_id: str, *, tenant_id: str | None = None) -> bytes:
        """``GET /messages/{message_id}/raw``: the MIME message as the sender built it (kept for sandbox
        accounts and ``keep_raw_seconds``); raises :class:`NotFound` when none is kept."""
        params = _params(tenant_id=tenant_id)
        return self._request("GET", f"/messages/{_quote(message_id)}/raw", params=params).content

    # -- campaign control

    def delete_messages(self, ids: Iterable[str], *, tenant_id: str | None = None) -> dict[str, Any]:
        """``POST /commands/delete-messages``: remove messages not yet being sent.
        Returns ``{"ok", "removed", "not_found", "unauthorized"}``."""
        body = {"ids": list(ids), **_params(tenant_id=tenant_id)}
        return self._object(self._request("POST", "/commands/delete-messages", json=body))

    def cleanup_messages(self, older_than_seconds: int, *, tenant_id: str | None = None) -> dict[str, Any]:
        """``POST /commands/cleanup-messages``: remove finished, reported messages older than that."""
        body = {"older_than_seconds": older_than_seconds, **_params(tenant_id=tenant_id)}
        return self._object(self._request("POST", "/commands/cleanup-messages", json=body))

    def suspend(self, batch_code: str | None = None, *, tenant_id: str | None = None) -> dict[str, Any]:
        """``POST /commands/suspend``: hold a tenant's messages (of one ``batch_code``, or all): stored, not sent."""
        body = _params(batch_code=batch_code, tenant_id=tenant_id)
        return self._object(self._request("POST", "/commands/suspend", json=body))

    def activate(self, batch_code: str | None = None, *, tenant_id: str | None = None) -> dict[str, Any]:
        """``POST /commands/activate``: send what ``suspend`` held, in priority order."""
        body = _params(batch_code=batch_code, tenant_id=tenant_id)
        return self._object(self._request("POST", "/commands/activate", json=body))

    def job(self, job_id: str, *, tenant_id: str | None = None) -> dict[str, Any]:
        """``GET /jobs/{job_id}``: the progress of a bulk operation that answered 202 (``status`` ``done`` at
        the end, with the operation's counts in ``result``)."""
        return self._object(self._request("GET", f"/jobs/{_quote(job_id)}", params=_params(tenant_id=tenant_id)))

    def jobs(self, *, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """``GET /jobs``: the tenant's bulk jobs of the last 7 days, newest first (the admin: every tenant's)."""
        page = self._object(self._request("GET", "/jobs", params=_params(tenant_id=tenant_id)))
        jobs: list[dict[str, Any]] = page["jobs"]
        return jobs

    # -- suppression list

    def suppressions(
        self, limit: int = 100, cursor: str | None = None, *, tenant_id: str | None = None
    ) -> SuppressionsPage:
        """``GET /suppressions``: one page in address order; ``page.cursor`` reads the next (None at the end)."""
        params = _params(limit=limit, cursor=cursor, tenant_id=tenant_id)
        return SuppressionsPage.model_validate(self._object(self._request("GET", "/suppressions", params=params)))

    def iter_suppressions(self, *, page_size: int = 100, tenant_id: str | None = None) -> Iterator[Suppression]:
        """Every address on the tenant's list, following the cursors page by page."""
        cursor: str | None = None
        while True:
            page = self.suppressions(page_size, cursor, tenant_id=tenant_id)
            yield from page.suppressions
            if not page.cursor:
                return
            cursor = page.cursor

    def add_suppressions(
        self, addresses: Iterable[str], reason: str = "manual", *, tenant_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /suppressions`` (at most 1,000 addresses): the tenant's mail no longer goes to them.
        ``reason``: manual, unsubscribe, hard_bounce or complaint. Returns ``{"ok", "tenant_id", "added"}``."""
        body = {"addresses": list(addresses), "reason": reason, **_params(tenant_id=tenant_id)}
        return self._object(self._request("POST", "/suppressions", json=body))

    def remove_suppression(self, address: str, *, tenant_id: str | None = None) -> dict[str, Any]:
        """``DELETE /suppressions/{address}``; raises :class:`NotFound` when the address is not on the list."""
        params = _params(tenant_id=tenant_id)
        return self._object(self._request("DELETE", "/suppressions/" + _quote(address), params=params))

    # -- the deployment's bounce mailbox (admin token)

    def bounce_config(self) -> dict[str, Any]:
        """``GET /instance/get_bounce_config``: the mailbox's settings; the password only as ``has_password``."""
        return self._object(self._request("GET", "/instance/get_bounce_config"))

    def set_bounce_config(self, **fields: Any) -> dict[str, Any]:
        """``POST /instance/set_bounce_config``: ``enabled``, ``imap_host``, ``imap_port``, ``imap_user``,
        ``imap_password``, ``imap_folder``, ``imap_ssl``, ``poll_interval``, ``return_path``; those left out
        (or None) keep their stored values."""
        return self._object(self._request("POST", "/instance/set_bounce_config", json=_params(**fields)))

    def reload_bounce(self) -> dict[str, Any]:
        """``POST /instance/reload_bounce``: the next bounce poll reads the mailbox afresh."""
        return self._object(self._request("POST", "/instance/reload_bounce", json={}))

    # -- tenants

    def put_tenant(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        """``POST /tenant``: create or update (``name``, ``client_base_url``, ``client_sync_path``,
        ``client_attachment_path``, ``client_auth={"method": "bearer", "token": ...}``, ``active``)."""
        return self._object(self._request("POST", "/tenant", json={"id": tenant_id, **_params(**fields)}))

    def update_tenant(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        """``PUT /tenant/{id}`` (the tenant must exist)."""
        body = {"id": tenant_id, **_params(**fields)}
        return self._object(self._request("PUT", "/tenant/" + _quote(tenant_id), json=body))

    def tenants(self) -> list[Tenant]:
        """``GET /tenants`` (a tenant key sees its own tenant only); secrets masked."""
        body = self._object(self._request("GET", "/tenants"))
        return [Tenant.model_validate(t) for t in body.get("tenants", [])]

    def tenant(self, tenant_id: str) -> Tenant:
        """``GET /tenant/{id}``; raises :class:`NotFound` for an unknown tenant."""
        body = self._object(self._request("GET", "/tenant/" + _quote(tenant_id)))
        return Tenant.model_validate(body.get("tenant", {}))

    def delete_tenant(self, tenant_id: str) -> dict[str, Any]:
        """``DELETE /tenant/{id}`` (admin token): removes the tenant, its accounts and its queued mail."""
        return self._object(self._request("DELETE", "/tenant/" + _quote(tenant_id)))

    def create_api_key(self, tenant_id: str) -> str:
        """``POST /tenant/{id}/api-key``: a new key for that tenant, returned once (store it now)."""
        body = self._object(self._request("POST", f"/tenant/{_quote(tenant_id)}/api-key"))
        return str(body["api_key"])

    def create_signing_secret(self, tenant_id: str) -> str:
        """``POST /tenant/{id}/signing-secret``: a new (or rotated) secret that signs the reports posted to
        the tenant's own endpoint, returned once; verify with ``mailproxy_client.reports.verify_signature``."""
        body = self._object(self._request("POST", f"/tenant/{_quote(tenant_id)}/signing-secret"))
        return str(body["signing_secret"])

    def delete_signing_secret(self, tenant_id: str) -> dict[str, Any]:
        """``DELETE /tenant/{id}/signing-secret``: the tenant's reports go unsigned."""
        return self._object(self._request("DELETE", f"/tenant/{_quote(tenant_id)}/signing-secret"))

    def revoke_api_key(self, tenant_id: str) -> dict[str, Any]:
        """``DELETE /tenant/{id}/api-key``."""
        return self._object(self._request("DELETE", f"/tenant/{_quote(tenant_id)}/api-key"))

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text exposition."""
        return self._request("GET", "/metrics", headers={"Accept": "text/plain"}).text

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Any route, with the same token, retries and errors: the decoded JSON answer. For routes this
        client has no method for yet, e.g. ``proxy.call("GET", "/tenants")``."""
        return self._json(self._request(method.upper(), path, params=_params(**(params or {})), json=json))

    # -- transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One call with retries; returns a 2xx (or an ``accept``-ed) answer, raises MailProxyError otherwise."""
        attempt = 0
        while True:
            retry_after: str | None = None
            try:
                response = self._http.request(method, path, params=params, json=json, headers=headers)
            except httpx.UnsupportedProtocol as exc:
                raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise ConnectionFailed(f"cannot reach {self.base_url}: {_describe(exc)}") from exc
                reason = _describe(exc)
            else:
                if response.is_success or response.status_code in accept:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                    raise _error(response)
                reason = f"HTTP {response.status_code}"
                retry_after = response.headers.get("Retry-After")
            delay = self._delay(attempt, retry_after)
            log.info("%s %s failed (%s); retry %d/%d in %.2fs", method, path, reason, attempt + 1, self.retries, delay)
            self._sleep(delay)
            attempt += 1

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: keep our own backoff
                delay = max(delay, min(float(retry_after), self.max_backoff))
        return delay

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise MailProxyError(
                f"the answer is not JSON: {response.text[:200]!r}", status_code=response.status_code
            ) from None

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        body = self._json(response)
        if not isinstance(body, dict):
            raise MailProxyError(f"expected a JSON object, got {body!r:.200}", status_code=response.status_code)
        return body


# --------------------------------------------------------------------------- helpers


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _message_payload(message: Any) -> Any:
    if isinstance(message, Message):
        return message.to_payload()
    if isinstance(message, Mapping):
        return dict(message)
    return message  # not an object: the API rejects it with a reason, alone


_POSITION = re.compile(r"^messages\.(\d+)(?=[.:])")


def _split_duplicates(answer: dict[str, Any], positions: list[int]) -> AddMessagesResult:
    """One call's answer: known ids apart, and `messages.<n>` in reasons renumbered as positions in the
    caller's whole list (the API numbers them within the call)."""

    def renumber(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"messages.{positions[index]}" if index < len(positions) else match.group(0)

    rejected = []
    for raw in answer.get("rejected", []):
        rejection = Rejection.model_validate(raw)
        rejection.reason = _POSITION.sub(renumber, rejection.reason)
        rejected.append(rejection)
    extra = {k: v for k, v in answer.items() if k not in ("ok", "queued", "rejected")}
    return AddMessagesResult(
        **extra,
        ok=bool(answer.get("ok", True)),
        queued=int(answer.get("queued", 0)),
        rejected=[r for r in rejected if not r.is_duplicate],
        duplicates=[r.id for r in rejected if r.is_duplicate and r.id is not None],
    )


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({text})"
    return text


def _error(response: httpx.Response) -> MailProxyError:
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    message: str | None = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):  # ours, API Gateway's, FastAPI's default
            value = body.get(key)
            if isinstance(value, str) and value:
                message = value
                break
    if message is None:
        text = response.text.strip()
        message = text[:200] if text else (response.reason_phrase or "error")
    status = response.status_code
    kind: type[MailProxyError] = MailProxyError
    if status == 401:
        kind = AuthenticationError
    elif status in (400, 422):
        kind = ValidationFailed
    elif status == 403:
        kind = Forbidden
    elif status == 404:
        kind = NotFound
    return kind(message, status_code=status, body=body)
