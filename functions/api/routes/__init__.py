"""The API's routes, one router per area; `ROUTERS` in the order the OpenAPI document (docs/api.md) lists them."""

from __future__ import annotations

from functions.api.routes import accounts, campaigns, messages, status, tenants

ROUTERS = (status.router, accounts.router, messages.router, campaigns.router, tenants.router)
