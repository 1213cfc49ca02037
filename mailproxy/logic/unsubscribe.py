"""Hosted one-click unsubscribe (RFC 8058): the signed token of a recipient's `List-Unsubscribe` URL, and what a
POST of it does (the address goes on the tenant's suppression list).

Token form: `<b64url(tenant)>.<b64url(address)>.<b64url(message id)>.<hmac16>`, HMAC-SHA256 (first 16 bytes)
over the three length-prefixed values, under a key derived with HKDF-SHA256 (its own label) from the key that
signs X-Genro-Mail-ID: one deployment secret, and neither key reveals the other. The endpoint is unauthenticated,
so the token is the whole authorisation: verified in constant time, and any fault in it is the same "invalid".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mailproxy.logic.bounces.apply import record_notice
from mailproxy.models import SuppressionReason
from mailproxy.services import Services

_INFO = b"genro-mail-proxy unsubscribe v1"
_MAC_BYTES = 16
MAX_TOKEN_LENGTH = 2048  # three ids of <= 512 bytes, b64url, and the MAC
UNSUBSCRIBED_EVENT = "unsubscribed"  # the history event, and the notice id: one per message


class Unsubscription(NamedTuple):
    tenant_id: str
    address: str
    message_id: str


def unsubscribe_key(correlation_key: bytes) -> bytes:
    """The token key, derived from the deployment's correlation key (`runtime.correlation_key`) so that a
    leaked token key reveals nothing else."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(correlation_key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, target: Unsubscription) -> bytes:
    signed = b"".join(len(part).to_bytes(4, "big") + part for part in (value.encode() for value in target))
    return hmac.new(key, signed, hashlib.sha256).digest()[:_MAC_BYTES]


def unsubscribe_token(target: Unsubscription, *, key: bytes) -> str:
    """The token of the hosted URL that unsubscribes `target.address` from the tenant's mail."""
    return ".".join([*(_b64(value.encode()) for value in target), _b64(_mac(key, target))])


def verify_token(token: str, *, key: bytes) -> Unsubscription | None:
    """What a token this deployment signed names; None for anything else (forged, edited, truncated)."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 4:
        return None
    try:
        tenant_id, address, message_id = (_unb64(part).decode() for part in parts[:3])
        mac = _unb64(parts[3])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    target = Unsubscription(tenant_id, address, message_id)
    if not all(target) or not hmac.compare_digest(mac, _mac(key, target)):
        return None
    return target


def unsubscribe(services: Services, token: str, *, key: bytes, now: int) -> Unsubscription | None:
    """Put the token's address on its tenant's suppression list and report `unsubscribed_ts` on the message it
    came from (once: a second POST changes nothing but the list entry's time); None when the token is not
    valid. A message already removed (cleanup) has nothing to report; the address is suppressed all the same."""
    target = verify_token(token, key=key)
    if target is None:
        return None
    services.suppressions.add(target.tenant_id, target.address, SuppressionReason.UNSUBSCRIBE, target.message_id)
    if services.messages.get(target.tenant_id, target.message_id) is not None:
        record_notice(
            services,
            target.tenant_id,
            target.message_id,
            UNSUBSCRIBED_EVENT,
            {"unsubscribed_ts": now},
            UNSUBSCRIBED_EVENT,
            now,
        )
    return target
