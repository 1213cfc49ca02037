"""Python client of genro-mail-proxy (serverless): the REST API (:class:`MailProxyClient`), the delivery-report
helper for your own endpoint (:func:`parse_delivery_report`) and the ``gmp`` command line (``mailproxy_client.cli``)."""

from mailproxy_client.api import DEFAULT_URL, MAX_BATCH, MailProxyClient
from mailproxy_client.errors import (
    AuthenticationError,
    ConnectionFailed,
    Forbidden,
    MailProxyError,
    NotFound,
    ValidationFailed,
)
from mailproxy_client.models import (
    Account,
    AddMessagesResult,
    Attachment,
    DeliveryReport,
    HistoryEvent,
    Message,
    MessageInfo,
    MessagesPage,
    Rejection,
    SmtpCheck,
    SmtpStep,
    Status,
    Suppression,
    SuppressionsPage,
    Tenant,
)
from mailproxy_client.reports import ReportRejected, parse_delivery_report, verify_signature

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
    "SmtpCheck",
    "SmtpStep",
    "Status",
    "Suppression",
    "SuppressionsPage",
    "Tenant",
    "ValidationFailed",
    "parse_delivery_report",
    "verify_signature",
]

__version__ = "0.1.0"
