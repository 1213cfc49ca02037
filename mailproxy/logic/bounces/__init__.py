"""What happens after "250 OK": bounce, complaint and PEC-receipt mail read from IMAP mailboxes (issue 17)."""
