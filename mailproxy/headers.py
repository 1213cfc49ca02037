"""The rules of a mail's header fields, shared by the API's validation (models) and the MIME builder:
which names are valid, which the proxy sets itself, and what one address is."""

from __future__ import annotations

import functools
import re
from email import headerregistry
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address

HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 field-name: printable ASCII except ':'

# Lower-case names the proxy sets from the message's own fields: a client's extra header may not set them.
PROTECTED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "return-path",
        "sender",
        "list-unsubscribe",  # built from the message's `list_unsubscribe` (RFC 8058)
        "list-unsubscribe-post",
        "x-genro-mail-id",  # the signed correlation id of bounces and receipts
    }
)

_HEADER_REGISTRY = headerregistry.HeaderRegistry()


@functools.lru_cache(maxsize=4096)  # Address objects are immutable; bulk mail repeats its senders
def parse_address(value: str) -> Address:
    """Parse one RFC 5322 address (``"Name <user@host>"`` or ``user@host``) into an ``Address``.

    Raises ``ValueError`` when ``value`` is not exactly one valid mailbox. Non-ASCII display names are
    fine; a non-ASCII local part is accepted too (it needs a server offering SMTPUTF8).
    """
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ValueError("an address may not contain line breaks")
    try:
        header = _HEADER_REGISTRY("To", value)
    except Exception as exc:  # the parser raises assorted errors on malformed input
        raise ValueError(f"invalid address {value!r}") from exc
    if not isinstance(header, headerregistry.AddressHeader):  # pragma: no cover - "To" is one
        raise ValueError(f"invalid address {value!r}")
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        raise ValueError(f"invalid address {value!r}")
    if len(header.groups) != 1 or header.groups[0].display_name is not None:
        raise ValueError(f"expected a single address, got {value!r}")
    (address,) = header.groups[0].addresses
    if not address.username or not address.domain:
        raise ValueError(f"invalid address {value!r}")
    return address
