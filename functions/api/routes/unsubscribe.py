"""Hosted one-click unsubscribe (RFC 8058): the URL a message's `List-Unsubscribe` names when the client asks
for `list_unsubscribe: {hosted: true}`. Unauthenticated by design: the mailbox provider POSTs it on the
recipient's behalf, and the signed token (mailproxy/logic/unsubscribe.py) is the whole authorisation."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path

from functions.api.dependencies import ServicesDep
from mailproxy import runtime
from mailproxy.logic import policy
from mailproxy.logic.unsubscribe import MAX_TOKEN_LENGTH, unsubscribe, unsubscribe_key
from mailproxy.views import Answer

router = APIRouter(tags=["unsubscribe"])


@router.post("/unsubscribe/{token}")
def one_click_unsubscribe(
    token: Annotated[str, Path(min_length=1, max_length=MAX_TOKEN_LENGTH)], services: ServicesDep
) -> Answer:
    """RFC 8058 sends `List-Unsubscribe=One-Click` as the form body; the token alone decides, so the body is
    not read. Repeating the POST is harmless."""
    key = unsubscribe_key(runtime.correlation_key(services.settings))
    if unsubscribe(services, token, key=key, now=int(time.time())) is None:
        raise policy.NotFound("token: not a valid unsubscribe link")
    return Answer()
