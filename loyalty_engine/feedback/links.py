"""Verdict links: what a digest's three links say, signed so that nobody can forge or alter one.

A link is ``<feedback.base_url>/v/<token>``. The token holds only ids and dates: the night, the
account id, the rule id, the verdict, the last day the link works, and a tag of the owner's
address (an HMAC of it, so the address itself never travels in a URL or a proxy log). Its
signature, HMAC-SHA256 over all of that under the secret from `feedback.secret_env`, binds them
together: change one character and the link is refused.

The token is a pure function of its inputs (no clock, no random number), so re-rendering a night
renders byte-identical digests, as the delivery ledger expects (mail/envelope.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loyalty_engine.config import FeedbackSettings
    from loyalty_engine.mail.digest import AccountWarning

# Bumped if the token's layout changes: old links are then refused like forged ones.
VERSION = 1
# Far longer than any real token (about 160 characters); longer ones are refused before decoding.
MAX_TOKEN_CHARS = 600
PATH = "/v/"  # the verdict pages' path under feedback.base_url


class Verdict(str, Enum):
    """What the owner says about a warning."""

    USEFUL = "useful"  # it told them something: counts for the rule's precision
    FALSE_ALARM = "false_alarm"  # nothing is wrong with the account: counts against it
    ALREADY_KNOWN = "already_known"  # true, but not news: not counted; the warning rests 30 days


# Days an "already known" warning is not mailed.
REST_DAYS = 30


@dataclass(frozen=True)
class Ticket:
    """What a valid token says: which warning, whose, which verdict, until when."""

    night: date
    account_id: str
    rule_id: str
    owner_tag: str  # owner_tag(secret, owner address)
    verdict: Verdict
    expires: date  # the last day the link works
    language: str  # the digest's language: the page answers in it ("": digest.language)


class BadToken(Exception):
    """A token that is malformed, altered or signed with another secret (one answer for all)."""


class Expired(Exception):
    """A genuine token past its last day."""

    def __init__(self, ticket: Ticket):
        super().__init__(f"expired on {ticket.expires}")
        self.ticket = ticket


def owner_tag(secret: bytes, owner: str) -> str:
    """A short keyed tag of the owner's address: compared, never shown; unguessable without the secret."""
    return hmac.new(secret, b"owner\0" + owner.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def sign(secret: bytes, night: date, account_id: str, rule_id: str, owner: str, verdict: Verdict, link_days: int, language: str) -> str:
    """The token for one verdict on one warning of one night's digest.

    >>> t = sign(b"k" * 32, date(2026, 11, 23), "K-1", "falling_order_frequency", "anna@example.com", Verdict.USEFUL, 30, "de")
    >>> read(b"k" * 32, t, today=date(2026, 11, 24)).expires
    datetime.date(2026, 12, 23)
    """
    body = [VERSION, night.isoformat(), account_id, rule_id, owner_tag(secret, owner), Verdict(verdict).value,
            (night + timedelta(days=link_days)).isoformat(), language]
    payload = _b64(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_b64(_mac(secret, payload))}"


def read(secret: bytes, token: str, today: date) -> Ticket:
    """What the token says, if its signature holds (BadToken otherwise) and it has not expired
    (Expired). The signature is checked first, in constant time, before anything in it is trusted."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise BadToken("not a token")
    payload, signature = token.split(".")
    try:
        given = _unb64(signature)
    except ValueError:
        raise BadToken("not a token") from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise BadToken("wrong signature")
    try:
        version, night, account_id, rule_id, tag, verdict, expires, language = json.loads(_unb64(payload))
        if version != VERSION or not all(isinstance(v, str) for v in (night, account_id, rule_id, tag, verdict, expires, language)):
            raise ValueError(version)
        ticket = Ticket(date.fromisoformat(night), account_id, rule_id, tag, Verdict(verdict), date.fromisoformat(expires), language)
    except (ValueError, TypeError):
        # Signed by us but not readable: only a changed secret or layout gets here.
        raise BadToken("unreadable") from None
    if today > ticket.expires:
        raise Expired(ticket)
    return ticket


def verdict_links(
    base_url: str, secret: bytes, night: date, account_id: str, rule_id: str, owner: str, link_days: int, language: str
) -> dict[str, str]:
    """The three links under one warning, by verdict value."""
    return {
        verdict.value: f"{base_url}{PATH}{sign(secret, night, account_id, rule_id, owner, verdict, link_days, language)}"
        for verdict in Verdict
    }


# Warnings an owner can answer: the ones told as current tonight. A resolved one is over; an
# intro or waiting one is only in the attachment.
ANSWERABLE = ("new", "repeat")


def with_links(warnings: Iterable["AccountWarning"], night: date, feedback: "FeedbackSettings") -> list["AccountWarning"]:
    """The warnings, each one mailed to its own owner carrying its three verdict links (when
    feedback.base_url is set). Warnings routed to ops have none: the verdict is the owner's."""
    warnings = list(warnings)
    if not feedback.base_url:
        return warnings
    secret = feedback.secret()
    linked = []
    for w in warnings:
        owner = w.owner_email.strip().lower()
        if w.notice in ANSWERABLE and owner and (w.recipient or owner).strip().lower() == owner and not w.route_reason:
            links = verdict_links(feedback.base_url, secret, night, w.account_id, w.rule_id, owner, feedback.link_days, w.language or "")
            w = replace(w, verdicts=tuple(links.items()))
        linked.append(w)
    return linked


# HMAC-SHA256 truncated to 128 bits (as RFC 4868 does for IPsec): shorter links, still unforgeable.
MAC_BYTES = 16


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, b"verdict\0" + payload.encode("ascii", "replace"), hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text) or not text.isascii():
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
