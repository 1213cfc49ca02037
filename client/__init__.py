"""Python client of genro-mail-proxy (serverless): the REST API (:class:`MailProxyClient`), the delivery-report
helper for your own endpoint (:func:`parse_delivery_report`) and the ``gmp`` command line (``client.cli``)."""

from client.api import DEFAULT_URL, MAX_BATCH, MailProxyClient
from client.errors import (
    AuthenticationError,
    ConnectionFailed,
    Forbidden,
    MailProxyError,
    NotFound,
    ValidationFailed,
)
from client.models import (
    Account,
    AddMessagesResult,
    Attachment,
    DeliveryReport,
    HistoryEvent,
    Message,
    MessageInfo,
    MessagesPage,
    Rejection,
    Status,
    Tenant,
)
from client.reports import ReportRejected, parse_delivery_report, verify_signature

__all__ = [
    "DEFAULT_URL",
    "MAX_BATCH",
    "Account",
    "AddMessagesResult",
    "Attachment",
    "AuthenticationError",
    "ConnectionFailed",
    "DeliveryReport",
    "Forbidden",
    "HistoryEvent",
    "MailProxyClient",
    "MailProxyError",
    "Message",
    "MessageInfo",
    "MessagesPage",
    "NotFound",
    "Rejection",
    "ReportRejected",
    "Status",
    "Tenant",
    "ValidationFailed",
    "parse_delivery_report",
    "verify_signature",
]

__version__ = "0.1.0"
