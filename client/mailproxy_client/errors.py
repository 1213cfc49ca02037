"""Exceptions raised by :class:`mailproxy_client.MailProxyClient`: each carries the HTTP status and the API's error."""

from __future__ import annotations

from typing import Any


class MailProxyError(Exception):
    """The proxy answered with an error (``.status_code``), or could not be reached (``status_code`` None).

    ``.error`` is the API's own message (the ``error`` of its ``{"ok": false, "error": ...}`` body, or
    API Gateway's ``message``); ``.body`` the decoded JSON body when there was one.
    """

    def __init__(self, error: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(f"HTTP {status_code}: {error}" if status_code is not None else error)
        self.error = error
        self.status_code = status_code
        self.body = body
        self.partial: Any = None  # add_messages: the merged result of the calls that succeeded before


class AuthenticationError(MailProxyError):
    """401: the X-API-Token is missing or wrong."""


class ValidationFailed(MailProxyError):
    """400 or 422: the request was refused as invalid; ``.error`` names the field(s).

    ``.detail`` is the API's list of field errors (``[{"loc", "msg", "type"}]``) when it sent one.
    """

    @property
    def detail(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("detail"), list):
            return list(self.body["detail"])
        return []


class Forbidden(MailProxyError):
    """403: a tenant API key used on another tenant or on an admin-only route (or API Gateway refusing
    the path: a URL without the stage, for instance)."""


class NotFound(MailProxyError):
    """404: e.g. ``delete_account`` of an unknown account."""


class ConnectionFailed(MailProxyError):
    """The proxy could not be reached (connection refused, DNS, timeout), after every retry."""
