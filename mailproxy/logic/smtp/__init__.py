"""SMTP delivery with ``smtplib``: one connection per account per batch, with a clear outcome per message.

* ``use_tls=True`` on port 465 (or a port GMP_SMTP_IMPLICIT_TLS_PORTS names) -> implicit TLS from the
  first byte; on any other port -> STARTTLS, required: a server that does not offer it is an ``error``.
* ``use_tls=False`` -> plain connect, EHLO, then STARTTLS whenever the server offers it, EHLO again.
  Once STARTTLS is offered it must succeed: there is no fallback to plain text.
* ``use_tls=None`` -> the port decides: implicit TLS on 465, else as ``False`` (``transport.tls_mode``).
* Certificates are verified against the system store (``ssl.create_default_context()``, one per trust
  store that ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name at connect time), with the host name checked.
* AUTH only when user and password are both set, and only over an encrypted connection, except
  towards a loopback host (``is_loopback_host``).
* Outcomes: a 2xx reply to the end of DATA -> ``sent``; any 4xx, timeout, refused/dropped/reset
  connection, DNS or TLS failure -> ``deferred``; a permanent 5xx -> ``error`` with the server's reply.

The password never appears in a ``SendResult``, a probe step or a log line.

Modules: ``errors`` (outcomes, failures and their text, password scrubbing), ``transport`` (the
connection, its deadline and reply caps), ``message`` (serialization), ``session`` (the handshake and
the transaction), ``pool`` (``SmtpPool``), ``probe``.
"""

from mailproxy.logic.smtp.errors import HostRefused, Outcome, SendResult
from mailproxy.logic.smtp.pool import SmtpPool
from mailproxy.logic.smtp.probe import probe
from mailproxy.logic.smtp.session import is_loopback_host
from mailproxy.logic.smtp.transport import SmtpAccount

__all__ = [
    "HostRefused",
    "Outcome",
    "SendResult",
    "SmtpAccount",
    "SmtpPool",
    "is_loopback_host",
    "probe",
]
