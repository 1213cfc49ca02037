"""Real-looking notices as remote MTAs send them, around an original that carries X-Genro-Mail-ID:
RFC 3464 DSNs in the styles of Postfix, Gmail and Office 365, Exim's plain-text bounce, an ARF complaint
(RFC 5965) and PEC receipts. Each returns the raw bytes an MTA would deliver to the mailbox."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from mailproxy.logic.bounces.correlation import HEADER, correlation_id

TEST_KEY_SECRET = "test-correlation-secret"
RECIPIENT = "gone@example.net"


def original(tenant_id: str, message_id: str, key: bytes, *, correlation: str | None = None) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "news@sender.example"
    mail["To"] = RECIPIENT
    mail["Subject"] = "Your invoice"
    mail["Message-ID"] = f"<{message_id}@sender.example>"
    mail[HEADER] = correlation if correlation is not None else correlation_id(tenant_id, message_id, key=key)
    mail.set_content("Dear customer, ...\n")
    return mail


def _report(
    subject: str, sender: str, human: str, status_fields: str, returned: EmailMessage, *, headers_only: bool
) -> bytes:
    """A multipart/report as MTAs write it: the human part, the machine part, the returned original."""
    return _multipart_report(
        "delivery-status",
        subject,
        sender,
        human,
        "message/delivery-status",
        status_fields,
        returned,
        headers_only=headers_only,
    )


def _multipart_report(
    report_type: str,
    subject: str,
    sender: str,
    human: str,
    machine_type: str,
    machine: str,
    returned: EmailMessage,
    *,
    headers_only: bool,
) -> bytes:
    boundary = "=_report_boundary_42"
    original_bytes = returned.as_bytes(policy=SMTP).decode()
    if headers_only:
        returned_part = "Content-Type: text/rfc822-headers\r\n\r\n" + original_bytes.split("\r\n\r\n", 1)[0]
    else:
        returned_part = "Content-Type: message/rfc822\r\n\r\n" + original_bytes
    text = (
        f"From: {sender}\r\nTo: bounces@sender.example\r\nSubject: {subject}\r\n"
        "Date: Tue, 01 Dec 2026 10:00:05 +0000\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{human}\r\n"
        f"--{boundary}\r\nContent-Type: {machine_type}\r\n\r\n{machine}\r\n"
        f"--{boundary}\r\n{returned_part}\r\n--{boundary}--\r\n"
    )
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def postfix_dsn(returned: EmailMessage, *, status: str = "5.1.1", action: str = "failed") -> bytes:
    return _report(
        "Undelivered Mail Returned to Sender",
        "MAILER-DAEMON@mx.sender.example (Mail Delivery System)",
        "This is the mail system at host mx.sender.example.\n\nI'm sorry to have to inform you that your message"
        " could not\nbe delivered to one or more recipients.\n",
        "Reporting-MTA: dns; mx.sender.example\nArrival-Date: Tue,  1 Dec 2026 10:00:00 +0000\n\n"
        f"Final-Recipient: rfc822; {RECIPIENT}\nOriginal-Recipient: rfc822;{RECIPIENT}\nAction: {action}\n"
        f"Status: {status}\nRemote-MTA: dns; mx.example.net\n"
        f"Diagnostic-Code: smtp; 550 {status} <{RECIPIENT}>: Recipient address rejected:\n User unknown\n",
        returned,
        headers_only=False,
    )


def gmail_dsn(returned: EmailMessage) -> bytes:
    return _report(
        "Delivery Status Notification (Delay)",
        "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "Message temporarily rejected\n\nThere was a temporary problem delivering your message.\n",
        "Reporting-MTA: dns; googlemail.com\n\n"
        f"Final-Recipient: rfc822; {RECIPIENT}\nAction: delayed\nStatus: 4.2.2\n"
        "Diagnostic-Code: smtp; 452 4.2.2 The recipient's inbox is out of storage space.\n",
        returned,
        headers_only=True,
    )


def office365_dsn(returned: EmailMessage) -> bytes:
    return _report(
        "Undeliverable: Your invoice",
        "Microsoft Outlook <MAILER-DAEMON@EUR01.prod.outlook.com>",
        "Delivery has failed to these recipients or groups:\n\n" + RECIPIENT + "\nThe email address wasn't found.\n",
        "Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com\n\n"
        f"Final-recipient: RFC822; {RECIPIENT}\nAction: failed\nStatus: 5.1.10\n"
        "Diagnostic-code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup\n",
        returned,
        headers_only=True,
    )


def exim_bounce(returned: EmailMessage) -> bytes:
    """Exim's classic plain-text bounce: the original quoted inline below the failure."""
    bounce = EmailMessage()
    bounce["From"] = "Mail Delivery System <Mailer-Daemon@mx.example.net>"
    bounce["To"] = "bounces@sender.example"
    bounce["Subject"] = "Mail delivery failed: returning message to sender"
    bounce["X-Failed-Recipients"] = RECIPIENT
    quoted = "".join(f"{k}: {v}\n" for k, v in returned.items())
    bounce.set_content(
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"  {RECIPIENT}\n    SMTP error from remote mail server after RCPT TO:<{RECIPIENT}>:\n"
        "    550 5.1.1 No such user here\n\n------ This is a copy of the message, including all the headers."
        f" ------\n{quoted}\nDear customer, ...\n"
    )
    return bounce.as_bytes(policy=SMTP)


def arf_complaint(returned: EmailMessage) -> bytes:
    return _multipart_report(
        "feedback-report",
        "complaint about message from 192.0.2.10",
        "staff@hotmail.com",
        "This is an email abuse report for an email message received from IP 192.0.2.10.\n",
        "message/feedback-report",
        "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
        f"Original-Mail-From: <bounces@sender.example>\nOriginal-Rcpt-To: <{RECIPIENT}>\n"
        "Arrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\nSource-IP: 192.0.2.10\n",
        returned,
        headers_only=False,
    )


def pec_receipt(returned: EmailMessage, receipt: str, *, attach_original: bool = True) -> bytes:
    """A PEC provider's receipt: `X-Ricevuta`, `X-Riferimento-Message-ID`, the original as postacert.eml."""
    mail = EmailMessage()
    mail["From"] = "posta-certificata@pec.provider.it"
    mail["To"] = "sender@pec.sender.it"
    mail["Subject"] = f"{receipt.upper()}: Your invoice"
    mail["X-Ricevuta"] = receipt
    mail["X-Riferimento-Message-ID"] = str(returned["Message-ID"])
    mail["X-Trasporto"] = "posta-certificata"
    mail.set_content(f'Ricevuta di {receipt} del messaggio "Your invoice".\n')
    if attach_original:
        mail.add_attachment(returned, filename="postacert.eml")
    return mail.as_bytes(policy=SMTP)


def not_a_bounce() -> bytes:
    mail = EmailMessage()
    mail["From"] = "someone@example.org"
    mail["To"] = "bounces@sender.example"
    mail["Subject"] = "hello, is this the sales address?"
    mail.set_content("Just a question.\n")
    return mail.as_bytes(policy=SMTP)
