"""SMTP accounts: store (password encrypted), list (password masked), delete, and try one without sending."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter

from functions.api.dependencies import Caller, ServicesDep, TenantQuery, tenant_of_call
from mailproxy.config import Settings
from mailproxy.crypto import DecryptionError
from mailproxy.logic import policy
from mailproxy.logic.smtp import SmtpAccount, probe
from mailproxy.logic.ssrf import guarded_addresses, parse_allowlist
from mailproxy.models import AccountIn, SmtpProbeRequest
from mailproxy.services import Services
from mailproxy.views import AccountDeleted, AccountSaved, AccountsPage, AccountView, SmtpProbeResult

router = APIRouter(tags=["accounts"])


@router.post("/account")
def put_account(account: AccountIn, caller: Caller, services: ServicesDep) -> AccountSaved:
    tenant_id = caller.scope_of(account)
    policy.check_account_timeout(account.timeout, services.settings)
    policy.refuse_internal_host(account.host, services.settings)
    if account.imap_host is not None:
        policy.refuse_internal_imap_host(account.imap_host, services.settings)
    services.accounts.put(account.model_copy(update={"tenant_id": tenant_id}))
    return AccountSaved(id=account.id, tenant_id=tenant_id)


@router.delete("/account/{account_id}")
def delete_account(
    account_id: str, caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None
) -> AccountDeleted:
    if not services.accounts.delete(tenant_of_call(caller, tenant_id, None), account_id):
        raise policy.NotFound(f"account {account_id!r} not found")
    return AccountDeleted(id=account_id)


@router.get("/accounts")
def list_accounts(caller: Caller, services: ServicesDep, tenant_id: TenantQuery = None) -> AccountsPage:
    items = services.accounts.list(tenant_of_call(caller, tenant_id, None))
    return AccountsPage(accounts=[AccountView.from_record(item) for item in items])


@router.post("/commands/test-smtp")
def test_smtp(request: SmtpProbeRequest, caller: Caller, services: ServicesDep) -> SmtpProbeResult:
    """Connect, EHLO, STARTTLS (when not implicit TLS) and AUTH with a stored or an ad-hoc account, from the
    proxy itself; no mail is sent. Answered 200 whether the account works or not: `ok` says which.
    An ad-hoc host passes the SSRF guard of `POST /account`; each network wait is cut to 5 s, so that the
    answer comes well inside API Gateway's 29 s."""
    tenant_id = caller.scope_of(request)
    settings = services.settings
    try:
        if request.account_id is not None:
            account = _stored_account(services, tenant_id, request.account_id)
        else:
            account = _ad_hoc_account(request, settings)
    except DecryptionError as exc:
        return SmtpProbeResult.failed("auth", f"the account's password cannot be decrypted ({type(exc).__name__})")
    account = replace(account, timeout=policy.probe_timeout(account.timeout))
    # Connect only to the addresses the SSRF guard vetted, as the sender does (a name may have changed its answer).
    addresses = guarded_addresses(settings.mode, parse_allowlist(settings.smtp_host_allowlist))
    return SmtpProbeResult.from_steps(probe(account, addresses))


def _stored_account(services: Services, tenant_id: str, account_id: str) -> SmtpAccount:
    """The stored account with its password decrypted, as the sender builds it."""
    stored = services.accounts.get(tenant_id, account_id)
    if stored is None:
        raise policy.NotFound(f"account {account_id!r} not found")
    return SmtpAccount.of(stored, services.accounts.password(stored), max_timeout=services.settings.max_account_timeout)


def _ad_hoc_account(request: SmtpProbeRequest, settings: Settings) -> SmtpAccount:
    assert request.host is not None and request.port is not None  # SmtpProbeRequest: the ad-hoc form has both
    policy.refuse_internal_host(request.host, settings)
    return SmtpAccount(
        host=request.host,
        port=request.port,
        user=request.user,
        password=request.password.get_secret_value() if request.password is not None else None,
        use_tls=request.use_tls,
        timeout=request.timeout,
    )
