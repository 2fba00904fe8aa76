"""Warnings -> one email per account owner: a plain-text and an HTML part, in the digest language.

The message is a pure function of its inputs: same warnings, night, sender and language give
byte-identical ``message.as_bytes()``. Nothing here reads the clock, the environment or the
order in which warnings arrive, so a re-run of a night renders exactly the mail it rendered before.
"""

from __future__ import annotations

import email.errors
import email.policy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import cache

import css_inline
import jinja2
from babel.dates import format_date
from babel.numbers import format_decimal

from loyalty_engine.errors import ConfigError
from loyalty_engine.rules.loader import SEVERITIES as RULE_SEVERITIES

# Most severe first: the order accounts and warnings appear in the digest.
SEVERITIES = tuple(reversed(RULE_SEVERITIES))
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}

# Label colours (background, text). Contrast is at least 4.5:1 for each pair, and the label
# also carries the severity as a word, so the mail stays readable when a client drops colours.
SEVERITY_COLOURS = {
    "critical": ("#b71c1c", "#ffffff"),
    "high": ("#c2410c", "#ffffff"),
    "medium": ("#facc15", "#1f2937"),
    "low": ("#1d4ed8", "#ffffff"),
    "info": ("#e5e7eb", "#1f2937"),
}

# The Date header is the night at midnight UTC, not the moment of rendering: the header is part
# of the bytes, and a re-run of the night must produce the same bytes (and the same ledger row).
DATE_HEADER_TIME = time(0, 0, tzinfo=UTC)

LOCALES = {"de": "de_DE", "en": "en_GB"}

# Every string of the templates, per language. Templates reference them as ``ui.<key>``; a key
# missing in one language fails loudly (StrictUndefined) instead of leaving a hole in the mail.
UI_STRINGS: dict[str, dict[str, str]] = {
    "de": {
        "subject_one": "Frühwarnung {night}: 1 Kunde mit Warnsignalen",
        "subject_many": "Frühwarnung {night}: {count} Kunden mit Warnsignalen",
        "heading": "Frühwarnung vom {night}",
        "greeting": "Hallo {name},",
        "intro_one": "bei einem Ihrer Kunden zeigen sich Warnsignale:",
        "intro_many": "bei {count} Ihrer Kunden zeigen sich Warnsignale, die dringendsten zuerst:",
        "account_id": "Kundennummer",
        "evidence": "Befund",
        "action": "Empfehlung",
        "more_one": "Ein weiterer Kunde mit Warnsignalen ist hier nicht aufgeführt.",
        "more_many": "{count} weitere Kunden mit Warnsignalen sind hier nicht aufgeführt.",
        "footer": (
            "Diese Nachricht wurde automatisch vom Loyalty-Frühwarnsystem erstellt "
            "und berücksichtigt Daten bis einschließlich {night}."
        ),
        "critical": "kritisch",
        "high": "hoch",
        "medium": "mittel",
        "low": "niedrig",
        "info": "Hinweis",
    },
    "en": {
        "subject_one": "Early warning {night}: 1 account shows warning signs",
        "subject_many": "Early warning {night}: {count} accounts show warning signs",
        "heading": "Early warning for {night}",
        "greeting": "Hello {name},",
        "intro_one": "one of your accounts shows warning signs:",
        "intro_many": "{count} of your accounts show warning signs, most urgent first:",
        "account_id": "Account ID",
        "evidence": "Evidence",
        "action": "Suggested action",
        "more_one": "One more account with warning signs is not listed here.",
        "more_many": "{count} more accounts with warning signs are not listed here.",
        "footer": (
            "This message was generated automatically by the loyalty early-warning system "
            "and covers data up to and including {night}."
        ),
        "critical": "critical",
        "high": "high",
        "medium": "medium",
        "low": "low",
        "info": "info",
    },
}


@dataclass(frozen=True)
class AccountWarning:
    """One firing warning for one account, with its texts already in the digest language."""

    account_id: str
    account_name: str
    owner_email: str
    owner_name: str
    rule_id: str
    severity: str  # info | low | medium | high | critical
    title: str
    message: str  # the evidence, numbers filled in
    action: str

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(
                f"warning {self.rule_id!r} for account {self.account_id!r}: unknown severity "
                f"{self.severity!r} (expected one of {', '.join(SEVERITIES)})"
            )


@dataclass(frozen=True)
class Digest:
    """The one email an owner gets for a night."""

    night: date
    recipient: str  # owner email, lower-cased: the ledger key
    message: EmailMessage


# A digest is read in a minute: past this many accounts, the rest are counted, not listed.
MAX_ACCOUNTS = 25


def render_digests(
    warnings: Iterable[AccountWarning], night: date, sender: str, language: str, max_accounts: int = MAX_ACCOUNTS
) -> list[Digest]:
    """One digest per owner with at least one warning, sorted by recipient; the most urgent
    `max_accounts` accounts are listed, the others counted.

    Owners are grouped by their email address, compared case-insensitively; the digest's
    ``recipient`` is that address lower-cased.

    >>> w = AccountWarning("K-1", "Bäckerei Kühn", "anna@example.com", "Anna Groß",
    ...     "falling_order_frequency", "high", "Bestellfrequenz sinkt",
    ...     "0 Bestellungen in 90 Tagen, etwa 6 erwartet", "Entscheider anrufen.")
    >>> [d] = render_digests([w], date(2026, 11, 23), "loyalty@example.com", "de")
    >>> d.message["Subject"]
    'Frühwarnung 23.11.2026: 1 Kunde mit Warnsignalen'
    """
    if language not in UI_STRINGS:
        raise ConfigError(f"digest.language: must be one of {sorted(UI_STRINGS)}, got {language!r}")
    sender_domain = _domain_of(sender)
    by_owner: dict[str, list[AccountWarning]] = {}
    for warning in warnings:
        by_owner.setdefault(warning.owner_email.strip().lower(), []).append(warning)
    return [
        Digest(night, recipient, _render(recipient, owned, night, sender, sender_domain, language, max_accounts))
        for recipient, owned in sorted(by_owner.items())
    ]


def message_id(night: date, recipient: str, sender_domain: str) -> str:
    """The Message-ID of a night's digest for one recipient; a re-send carries the same one.

    >>> message_id(date(2026, 11, 23), "anna@example.com", "example.com")
    '<digest.2026-11-23.f7d54c22dda5b178@example.com>'
    """
    digest = hashlib.sha256(recipient.lower().encode("utf-8")).hexdigest()[:16]
    return f"<digest.{night.isoformat()}.{digest}@{sender_domain}>"


def _render(
    recipient: str,
    warnings: list[AccountWarning],
    night: date,
    sender: str,
    sender_domain: str,
    language: str,
    max_accounts: int,
) -> EmailMessage:
    ui = UI_STRINGS[language]
    night_label = format_date(night, "medium", locale=LOCALES[language])
    accounts = _accounts(warnings, ui)
    count = len(accounts)
    hidden = max(count - max_accounts, 0)
    more = ui["more_one" if hidden == 1 else "more_many"].format(count=format_decimal(hidden, locale=LOCALES[language]))
    count_label = format_decimal(count, locale=LOCALES[language])
    # Names should agree across one owner's rows; if the extract disagrees, pick one stably.
    owner_name = min((w.owner_name.strip() for w in warnings if w.owner_name.strip()), default="")
    which = "one" if count == 1 else "many"
    context = {
        "lang": language,
        "ui": ui,
        "subject": ui[f"subject_{which}"].format(night=night_label, count=count_label),
        "heading": ui["heading"].format(night=night_label),
        "greeting": ui["greeting"].format(name=owner_name or recipient),
        "intro": ui[f"intro_{which}"].format(count=count_label),
        "footer": ui["footer"].format(night=night_label),
        "accounts": accounts[:max_accounts],
        "more": more if hidden else "",
        "severity_colours": SEVERITY_COLOURS,
    }
    text = _environment().get_template("digest.txt.j2").render(context)
    html = _inliner().inline(_environment().get_template("digest.html.j2").render(context))

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    try:
        message["To"] = Address(display_name=owner_name, addr_spec=recipient)
    except (ValueError, email.errors.HeaderParseError) as err:
        # Routing sends warnings without a valid owner to ops; reaching this is a bug upstream.
        accounts_named = ", ".join(a["id"] for a in accounts)
        raise ValueError(f"owner email {recipient!r} of account {accounts_named} is not an address: {err}") from None
    message["Subject"] = context["subject"]
    message["Date"] = format_datetime(datetime.combine(night, DATE_HEADER_TIME))
    message["Message-ID"] = message_id(night, recipient, sender_domain)
    # RFC 3834: tells out-of-office responders not to answer a machine.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Loyalty-Night"] = night.isoformat()
    message.set_content(text, subtype="plain", cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    for part in message.iter_parts():
        del part["MIME-Version"]  # only the top level carries it
    # After the parts: set_content() clears every Content-* header it finds.
    message["Content-Language"] = language
    # The default boundary is random. This one is derived from the content, and "=_" never
    # occurs in a quoted-printable body, so it cannot collide with the parts it separates.
    parts = hashlib.sha256(f"{text}\0{html}".encode("utf-8")).hexdigest()[:32]
    message.set_boundary(f"=_digest_{parts}")
    return message


def _accounts(warnings: list[AccountWarning], ui: dict[str, str]) -> list[dict]:
    """Accounts with their warnings, most severe account first, then most warnings, then by name."""
    by_account: dict[str, list[AccountWarning]] = {}
    for warning in warnings:
        by_account.setdefault(warning.account_id, []).append(warning)
    accounts = []
    for account_id, owned in by_account.items():
        owned.sort(key=lambda w: (_RANK[w.severity], w.title.casefold(), w.rule_id))
        accounts.append(
            {
                "id": account_id,
                "name": min(w.account_name for w in owned),
                "rank": _RANK[owned[0].severity],
                "warnings": [
                    {
                        "severity": w.severity,
                        "label": ui[w.severity],
                        "title": w.title,
                        "message": w.message,
                        "action": w.action,
                    }
                    for w in owned
                ],
            }
        )
    # Most severe first; among equals, the account showing more warning signs first.
    accounts.sort(key=lambda a: (a["rank"], -len(a["warnings"]), a["name"].casefold(), a["name"], a["id"]))
    return accounts


def _domain_of(sender: str) -> str:
    """The domain of the sender's address: the right-hand side of every Message-ID we mint."""
    _, address = parseaddr(sender)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        raise ConfigError(f"email.sender: {sender!r} is not an email address (expected name@domain)")
    return domain.lower()


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("loyalty_engine", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml", "html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@cache
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(load_remote_stylesheets=False)
