"""The API's routes, one router per area; `ROUTERS` in the order the OpenAPI document (docs/api.md) lists them.
`upstream` (the February-2026 `/{entity}/{method}` surface) comes last: its catch-alls must not shadow a route."""

from __future__ import annotations

from functions.api.routes import (
    accounts,
    audit,
    campaigns,
    jobs,
    messages,
    status,
    suppressions,
    tenants,
    unsubscribe,
    upstream,
)

ROUTERS = (
    status.router,
    accounts.router,
    messages.router,
    campaigns.router,
    tenants.router,
    suppressions.router,
    audit.router,
    jobs.router,
    unsubscribe.router,
    upstream.router,
)
