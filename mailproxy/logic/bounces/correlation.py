"""The `X-Genro-Mail-ID` header: names the tenant and the client's message id of an outgoing message, so that
a bounce or a receipt that quotes it finds the message; signed, so that a mail quoting a made-up or edited
value (another tenant's id) finds nothing.

Form: `<b64url(tenant)>.<b64url(id)>.<hmac16>`, the HMAC-SHA256 (first 16 bytes, b64url) over the tenant and
the id, under a key derived with HKDF-SHA256 from a deployment secret (docs/bounces.md, "Correlation"). Both
values are length-prefixed under the MAC, so no tenant/id split can be moved."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mailproxy.config import ConfigError, Settings

HEADER = "X-Genro-Mail-ID"
_INFO = b"genro-mail-proxy correlation v1"
_MAC_BYTES = 16


def correlation_key(deployment_secret: str | bytes) -> bytes:
    """The HMAC key of the header, derived from a secret the sender already holds (never the secret itself,
    so a leaked header key reveals nothing else)."""
    secret = deployment_secret.encode() if isinstance(deployment_secret, str) else deployment_secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, tenant_id: str, message_id: str) -> bytes:
    signed = b"".join(len(part).to_bytes(4, "big") + part for part in (tenant_id.encode(), message_id.encode()))
    return hmac.new(key, signed, hashlib.sha256).digest()[:_MAC_BYTES]


def correlation_id(tenant_id: str, message_id: str, *, key: bytes) -> str:
    """The header value of the message `message_id` of `tenant_id`."""
    mac = _mac(key, tenant_id, message_id)
    return f"{_b64(tenant_id.encode())}.{_b64(message_id.encode())}.{_b64(mac)}"


def parse_correlation_id(value: str, *, key: bytes) -> tuple[str, str] | None:
    """(tenant, message id) of a header value this deployment signed; None for anything else."""
    parts = value.strip().strip("<>").split(".")
    if len(parts) != 3:
        return None
    try:
        tenant_id, message_id, mac = _unb64(parts[0]).decode(), _unb64(parts[1]).decode(), _unb64(parts[2])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not tenant_id or not message_id or not hmac.compare_digest(mac, _mac(key, tenant_id, message_id)):
        return None
    return tenant_id, message_id


def deployment_key(settings: Settings) -> bytes:
    """The deployment's header key: from GMP_CORRELATION_SECRET, else (local mode) from GMP_LOCAL_KEY, which
    the sender already reads; a deployment without either cannot sign (ConfigError names the variable)."""
    secret = settings.correlation_secret or (settings.local_key if settings.mode == "local" else None)
    if secret is None:
        raise ConfigError("GMP_CORRELATION_SECRET: required in aws mode to sign X-Genro-Mail-ID")
    return correlation_key(secret.get_secret_value())
