"""Who may do what through the API, and the rules a request must meet beyond its schema.

Pure rules over a `Principal` and the settings: they raise `Forbidden`, `Invalid`, `NotFound` or `Refused`,
which the API answers 403, 422, 404 and 400 with `{"ok": false, "error": message}` (docs/api.md, Errors).
Each message names the field or the cause, and never quotes a secret."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel

from mailproxy.config import SENDER_SAFETY_SECONDS, Settings
from mailproxy.logic.ssrf import Resolver, UnresolvableHost, check_host, parse_allowlist
from mailproxy.models import DEFAULT_TENANT, MAX_MESSAGES_PER_REQUEST

# Each network wait of `POST /commands/test-smtp` (connect, each reply): a probe that meets a slow server
# at one step still answers well inside API Gateway's 29 s integration timeout (docs/deploy.md).
PROBE_WAIT_SECONDS = 5.0


class PolicyError(Exception):
    """A request the rules refuse; `str(error)` is the message for the caller."""


class Refused(PolicyError):
    """The request as a whole is refused (400)."""


class Forbidden(PolicyError):
    """The caller may not do this (403)."""


class NotFound(PolicyError):
    """What the request names does not exist, for this caller (404)."""


class Invalid(PolicyError):
    """A field breaks a rule its schema cannot express (422)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin (tenant None) or one tenant's key."""

    tenant_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def scope(self, requested: str | None) -> str:
        """The tenant a call acts on; a tenant key may name only its own tenant."""
        if self.tenant_id is None:
            return requested or DEFAULT_TENANT
        if requested is not None and requested != self.tenant_id:
            raise Forbidden(f"tenant_id: this key acts on tenant {self.tenant_id!r} only")
        return self.tenant_id

    def scope_of(self, request: BaseModel) -> str:
        """`scope` of the tenant a request body names; a `tenant_id` left out is not a request for the default."""
        return self.scope(getattr(request, "tenant_id", None) if "tenant_id" in request.model_fields_set else None)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this route needs the admin token")


def check_batch_size(count: int) -> None:
    if count > MAX_MESSAGES_PER_REQUEST:
        raise Refused(f"messages: at most {MAX_MESSAGES_PER_REQUEST} per request, got {count}")


def check_account_timeout(timeout: float, settings: Settings) -> None:
    """An account's SMTP timeout must fit in one sender invocation (`Settings.max_account_timeout`)."""
    limit = settings.max_account_timeout
    if timeout > limit:
        raise Invalid(
            f"timeout: at most {limit:g} seconds here (the sender's time budget: GMP_SENDER_TIMEOUT "
            f"{settings.sender_timeout} s less {2 * SENDER_SAFETY_SECONDS} s for its own writes)"
        )


def probe_timeout(timeout: float) -> float:
    """The timeout a probe runs with: the account's, cut to `PROBE_WAIT_SECONDS`."""
    return min(timeout, PROBE_WAIT_SECONDS)


def refuse_internal_host(host: str, settings: Settings, *, resolve: Resolver | None = None) -> None:
    """The SSRF guard for an SMTP host (mailproxy/logic/ssrf.py): in aws mode a host resolving to an internal
    address, or not resolving, is refused; in local mode only the metadata, unspecified and multicast ones."""
    try:
        check_host(host, mode=settings.mode, allowlist=parse_allowlist(settings.smtp_host_allowlist), resolve=resolve)
    except UnresolvableHost as exc:
        if settings.mode == "aws":  # locally, a name may come to exist later (a test server, a VPN)
            raise Invalid(str(exc)) from None
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def refuse_internal_imap_host(host: str, settings: Settings) -> None:
    """The SMTP hosts' SSRF guard for an IMAP host (the bounce mailbox, a PEC inbox), the field named."""
    try:
        refuse_internal_host(host, settings)
    except Invalid as exc:
        raise Invalid(f"imap_host: {str(exc).removeprefix('host: ')}") from None


def refuse_internal_url(
    url: str | None, settings: Settings, *, field: str = "client_base_url", resolve: Resolver | None = None
) -> None:
    """The SSRF guard for a tenant's endpoint: in aws mode https only, to a host `refuse_internal_host` allows."""
    if not url or settings.mode != "aws":
        return
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise Invalid(f"{field}: not a URL ({exc})") from None
    if parts.scheme.lower() != "https":
        raise Invalid(f"{field}: must be https in aws mode")
    try:
        refuse_internal_host(parts.hostname or "", settings, resolve=resolve)
    except Invalid as exc:
        raise Invalid(f"{field}: {exc}") from None
