"""The REST API (docs/api.md): the app factory composing the routers (functions/api/routes/) over the shared
domain package.

Two kinds of credential go in `X-API-Token`: the admin token (`GMP_API_TOKEN`), which acts on every
tenant, and a tenant API key, which acts on its own tenant alone (functions/api/dependencies.py)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import FastAPI

from functions.api.errors import install_error_handlers
from functions.api.middleware import MAX_REQUEST_BYTES, AuditTrail, BodyLimit
from functions.api.routes import ROUTERS
from mailproxy.services import Services

__all__ = ["MAX_REQUEST_BYTES", "ApiContext", "create_app"]


class ApiContext:
    """What the routes need, created lazily so that importing the app needs no AWS."""

    def __init__(
        self,
        services: Callable[[], Services],
        api_token: Callable[[], str],
        trigger_report: Callable[[], None],
    ) -> None:
        self._services = services
        self._api_token = api_token
        self.trigger_report = trigger_report

    @property
    def services(self) -> Services:
        return self._services()

    def is_admin_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._api_token().encode())


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="genro-mail-proxy (serverless)",
        version="0.1.0",
        description="Queue e-mail for delivery through your SMTP accounts; delivery reports go back to your app.",
        # The routers' own routes (each carries its router's tag), not `include_router`: since FastAPI 0.165 an
        # included router is one lazy entry of `app.routes`, and the access tests walk `app.routes` for every
        # APIRoute to prove each one is guarded (tests/reliability/test_secrets_and_access.py).
        routes=[route for router in ROUTERS for route in router.routes],
    )
    app.state.context = context  # read by functions/api/dependencies.py alone
    app.add_middleware(BodyLimit)
    app.add_middleware(AuditTrail, audit_log=lambda: context.services.audit)  # outermost: sees a 413 too
    install_error_handlers(app)
    return app
