"""The `Authorization` header of the proxy's requests to a client's endpoints (attachment fetches, delivery
reports): a bearer token, or Basic with user and password (UTF-8, base64)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from mailproxy.logic.http_guard import is_printable_ascii


class BadCredential(ValueError):
    """A stored credential that cannot go into a header (written before the API validated it). The message
    names the field, never the value."""


@dataclass(frozen=True)
class HttpAuth:
    """A token wins over user and password; Basic needs both of them; neither: no header."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.user is not None and self.password is not None:
            basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {}

    def check(self, kind: str) -> None:
        """Raise BadCredential when a credential the header carries is not printable ASCII (a line break
        would inject a header; other characters have no agreed encoding). `kind` starts the message, e.g.
        ``"report credential"``."""
        if self.token:
            _check(kind, "token", self.token)
        elif self.user is not None and self.password is not None:
            _check(kind, "user", self.user)
            _check(kind, "password", self.password)


def _check(kind: str, name: str, value: str) -> None:
    if not is_printable_ascii(value):
        raise BadCredential(f"{kind} {name}: holds a line break or a character that is not printable ASCII")
