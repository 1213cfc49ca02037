"""Receive delivery reports: check and parse the proxy's POST to your endpoint, with no web framework.

    from mailproxy_client.reports import ReportRejected, parse_delivery_report

    def proxy_sync(request):                       # your framework's view, whatever it is
        try:
            reports = parse_delivery_report(request.body, request.headers,
                                            bearer_token=SYNC_TOKEN, signing_secret=SYNC_SECRET)
        except ReportRejected as exc:
            return Response(status=exc.status_code)  # 401 or 400: the proxy sends the batch again later
        for report in reports:                     # report.status: "sent" | "error" | "deferred"
            update_my_database(report.id, report.status, report.error)
        return Response(status=200, json={"ok": True})   # any 2xx acknowledges the whole batch

Answer 2xx only once the reports are stored: anything else makes the proxy send them again next run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from mailproxy_client.models import DeliveryReport

__all__ = ["SIGNATURE_HEADER", "DeliveryReport", "ReportRejected", "parse_delivery_report", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-GMP-Signature"


class ReportRejected(Exception):
    """The request is not a valid delivery report from the proxy. ``reason`` says why (safe to log: no
    secret in it); ``status_code`` is what to answer: 401 (authentication, signature) or 400 (payload)."""

    def __init__(self, reason: str, *, status_code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value the proxy sends: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str, header: str | None, body: bytes, *, tolerance: int = 300, now: float | None = None
) -> None:
    """Raise :class:`ReportRejected` (401) unless ``header`` signs ``body`` with ``secret`` within
    ``tolerance`` seconds of ``now``."""
    if not header:
        raise ReportRejected(f"missing {SIGNATURE_HEADER} header", status_code=401)
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise ReportRejected(f"malformed {SIGNATURE_HEADER}: bad timestamp", status_code=401) from None
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise ReportRejected(f"malformed {SIGNATURE_HEADER}: expected t=<unix>,v1=<hex>", status_code=401)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise ReportRejected(f"{SIGNATURE_HEADER} timestamp outside the {tolerance} s tolerance", status_code=401)
    expected = sign(secret, body, timestamp).rsplit("v1=", 1)[1]
    matched = False
    for candidate in candidates:  # compare with every one, in constant time
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise ReportRejected(f"{SIGNATURE_HEADER} does not match the body", status_code=401)


def parse_delivery_report(
    body: bytes,
    headers: Mapping[str, str],
    *,
    bearer_token: str | None = None,
    basic: tuple[str, str] | None = None,
    signing_secret: str | None = None,
    tolerance: int = 300,
    now: float | None = None,
) -> list[DeliveryReport]:
    """Check a delivery-report request and return its entries.

    * ``bearer_token`` / ``basic=(user, password)``: the credentials you configured on the proxy
      (``GMP_CLIENT_SYNC_TOKEN`` / ``GMP_CLIENT_SYNC_USER`` + ``PASSWORD``); when either is given the
      request must carry a matching ``Authorization`` (either one, if both are given). Compared in
      constant time.
    * ``signing_secret`` (``GMP_CLIENT_SYNC_SECRET``): the ``X-GMP-Signature`` header must sign the raw
      ``body`` and be at most ``tolerance`` seconds old.
    * The body must be ``{"delivery_report": [{"id", "account_id", "priority", "sent_ts", "error_ts",
      "error", "deferred_ts"}, ...]}``; newer proxies add ``tenant_id`` (and ``deferred_reason``) to each
      entry, older entries without it are accepted (``report.tenant_id`` is then None).
    * A tenant with its own report endpoint verifies with its own signing secret
      (``POST /tenant/{id}/signing-secret``), not the deployment's.

    ``headers``: any mapping (names are matched case-insensitively). Raises :class:`ReportRejected`.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if bearer_token is not None or basic is not None:
        _check_authorization(lowered.get("authorization"), bearer_token, basic)
    if signing_secret is not None:
        verify_signature(signing_secret, lowered.get(SIGNATURE_HEADER.lower()), body, tolerance=tolerance, now=now)
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ReportRejected("the body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("delivery_report"), list):
        raise ReportRejected('the body must be {"delivery_report": [...]}')
    reports: list[DeliveryReport] = []
    for position, entry in enumerate(payload["delivery_report"]):
        try:
            reports.append(DeliveryReport.model_validate(entry, strict=False))
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
            )
            raise ReportRejected(f"delivery_report.{position}: {fields}") from None
    return reports


def _check_authorization(given: str | None, bearer_token: str | None, basic: tuple[str, str] | None) -> None:
    if not given:
        raise ReportRejected("missing Authorization header", status_code=401)
    scheme, _, credentials = given.strip().partition(" ")
    credentials = credentials.strip()
    ok = False
    if bearer_token is not None and scheme.lower() == "bearer":
        ok = hmac.compare_digest(credentials.encode(), bearer_token.encode())
    elif basic is not None and scheme.lower() == "basic":
        expected = f"{basic[0]}:{basic[1]}".encode()
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        ok = hmac.compare_digest(decoded, expected)
    if not ok:
        raise ReportRejected("wrong or unsupported Authorization", status_code=401)
