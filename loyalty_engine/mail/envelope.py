"""The envelope of every mail a night sends: sender check, Message-ID, headers, MIME boundaries.

Digests and ops notices share it. Each part is derived from the night, the sender and the
recipient, never from the clock or a random number, so re-running a night produces the same
bytes and the delivery ledger knows the mail it already sent.
"""

from __future__ import annotations

import email.policy
import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr

from loyalty_engine.errors import ConfigError
from loyalty_engine.safe_text import escaped

# The Date header is the night at midnight UTC, not the moment of rendering: the header is part
# of the bytes, and a re-run of the night must produce the same bytes (and the same ledger row).
DATE_HEADER_TIME = time(0, 0, tzinfo=UTC)


def domain_of(sender: str) -> str:
    """The domain of the sender's address: the right-hand side of every Message-ID we mint."""
    _, address = parseaddr(sender)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        raise ConfigError(f"email.sender: {sender!r} is not an email address (expected name@domain)")
    # The From header carries the setting as written: one address, nothing that could end the
    # header line or hide in it ("a@x.de\r\nBcc: …" parses as a@x.de, then fails the header).
    if len(getaddresses([sender])) != 1 or escaped(sender) != sender:
        raise ConfigError(f"email.sender: {sender!r} must be one address such as 'Name <name@example.com>'")
    return domain.lower()


def message_id(night: date, recipient: str, sender_domain: str) -> str:
    """The Message-ID of a night's mail for one recipient (its ledger key); a re-send carries the same one.

    >>> message_id(date(2026, 11, 23), "anna@example.com", "example.com")
    '<digest.2026-11-23.f7d54c22dda5b178@example.com>'
    """
    digest = hashlib.sha256(recipient.lower().encode("utf-8")).hexdigest()[:16]
    return f"<digest.{night.isoformat()}.{digest}@{sender_domain}>"


def addressed(
    sender: str, to: Address, subject: str, night: date, ledger_key: str, sender_domain: str, cc: Sequence[Address] = ()
) -> EmailMessage:
    """A new message with the headers every mail of the night carries, in a fixed order."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = list(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.combine(night, DATE_HEADER_TIME))
    message["Message-ID"] = message_id(night, ledger_key, sender_domain)
    # RFC 3834: tells out-of-office responders not to answer a machine.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Loyalty-Night"] = night.isoformat()
    return message


def seal(message: EmailMessage, *contents: str) -> None:
    """Once the parts are in: MIME-Version on the top level only, and boundaries derived from
    the parts' `contents` instead of the default random ones."""
    for part in message.iter_parts():
        del part["MIME-Version"]  # only the top level carries it
    # "=_" never occurs in a quoted-printable or base64 body, so these cannot collide with the parts.
    parts = hashlib.sha256("\0".join(contents).encode("utf-8")).hexdigest()[:32]
    if message.is_multipart() and message.get_content_subtype() == "mixed":
        message.set_boundary(f"=_mixed_{parts}")
        message.get_payload()[0].set_boundary(f"=_digest_{parts}")
    else:
        message.set_boundary(f"=_digest_{parts}")
