"""Warnings -> one email per account owner: a plain-text and an HTML part, in the digest language.

The message is a pure function of its inputs: same warnings, night, sender and language give
byte-identical ``message.as_bytes()``. Nothing here reads the clock, the environment or the
order in which warnings arrive, so a re-run of a night renders exactly the mail it rendered before.
"""

from __future__ import annotations

import csv
import email.errors
import email.policy
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from functools import cache

import css_inline
import jinja2
from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

from loyalty_engine.errors import ConfigError
from loyalty_engine.rules.loader import SEVERITIES as RULE_SEVERITIES
from loyalty_engine.safe_text import escaped, printable

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

# The brief's order of care: defectors (and terrorists) first, then apostles, loyal accounts,
# opportunists, hostages; accounts whose group is unknown last.
CARE_ORDER = ("terrorist", "defector", "apostle", "loyal", "opportunist", "hostage")

CHART_HEIGHT = 36  # pixels of the tallest revenue bar
SPARKS = "▁▂▃▄▅▆▇█"  # the plain-text chart

# Every string of the templates, per language. Templates reference them as ``ui.<key>``; a key
# missing in one language fails loudly (StrictUndefined) instead of leaving a hole in the mail.
UI_STRINGS: dict[str, dict[str, str]] = {
    "de": {
        "subject": "Frühwarnung {night}: {summary}",
        "new_one": "1 neues Warnsignal",
        "new_many": "{count} neue Warnsignale",
        "at_one": " bei einem Kunden",
        "at_many": " bei {count} Kunden",
        "open_one": "1 weiterhin offen",
        "open_many": "{count} weiterhin offen",
        "resolved_one": "1 behoben",
        "resolved_many": "{count} behoben",
        "heading": "Frühwarnung vom {night}",
        "greeting": "Hallo {name},",
        "portfolio": "Ihr Portfolio: {watched} Kunden beobachtet, {warned} mit offenen Warnsignalen. Kundenbindungsrate der letzten 12 Monate: {retention}.",
        "ops_intro": "Diese Warnsignale konnten keinem Betreuer zugestellt werden. Bitte weiterleiten und die Betreuer-Adresse im ERP korrigieren.",
        "section_new": "Neue Warnsignale",
        "section_more": "Weitere Kunden mit neuen Warnsignalen",
        "section_open": "Weiterhin offen",
        "section_resolved": "Behoben",
        "since": "seit {date}",
        "account_id": "Kundennummer",
        "segment": "Segment",
        "group": "Gruppe",
        "revenue": "Umsatz der letzten 12 Monate: {amount}",
        "months": "{first} – {night}",
        "evidence": "Befund",
        "action": "Empfehlung",
        "routed": "Weitergeleitet",
        "attachment": "Die vollständige Liste hängt als CSV-Datei an.",
        "attachment_name": "fruehwarnung-{night}.csv",
        "footer": (
            "Diese Nachricht wurde automatisch vom Loyalty-Frühwarnsystem erstellt "
            "und berücksichtigt Daten bis einschließlich {night}."
        ),
        "unknown": "unbekannt",
        "critical": "kritisch",
        "high": "hoch",
        "medium": "mittel",
        "low": "niedrig",
        "info": "Hinweis",
        "apostle": "Apostel",
        "loyal": "Loyal",
        "opportunist": "Opportunist",
        "hostage": "Geisel",
        "defector": "Abwanderer",
        "terrorist": "Terrorist",
    },
    "en": {
        "subject": "Early warning {night}: {summary}",
        "new_one": "1 new warning sign",
        "new_many": "{count} new warning signs",
        "at_one": " at one account",
        "at_many": " at {count} accounts",
        "open_one": "1 still open",
        "open_many": "{count} still open",
        "resolved_one": "1 resolved",
        "resolved_many": "{count} resolved",
        "heading": "Early warning for {night}",
        "greeting": "Hello {name},",
        "portfolio": "Your portfolio: {watched} accounts watched, {warned} with open warnings. Retention rate over the last 12 months: {retention}.",
        "ops_intro": "These warnings could not go to an account owner. Please forward them and fix the owner address in the ERP.",
        "section_new": "New warning signs",
        "section_more": "More accounts with new warning signs",
        "section_open": "Still open",
        "section_resolved": "Resolved",
        "since": "since {date}",
        "account_id": "Account ID",
        "segment": "Segment",
        "group": "Group",
        "revenue": "Revenue over the last 12 months: {amount}",
        "months": "{first} – {night}",
        "evidence": "Evidence",
        "action": "Suggested action",
        "routed": "Forwarded",
        "attachment": "The complete list is attached as a CSV file.",
        "attachment_name": "early-warning-{night}.csv",
        "footer": (
            "This message was generated automatically by the loyalty early-warning system "
            "and covers data up to and including {night}."
        ),
        "unknown": "unknown",
        "critical": "critical",
        "high": "high",
        "medium": "medium",
        "low": "low",
        "info": "info",
        "apostle": "Apostle",
        "loyal": "Loyal",
        "opportunist": "Opportunist",
        "hostage": "Hostage",
        "defector": "Defector",
        "terrorist": "Terrorist",
    },
}


@dataclass(frozen=True)
class AccountWarning:
    """One warning for one account in tonight's digest, its texts already in the digest language."""

    account_id: str
    account_name: str
    owner_email: str
    owner_name: str
    rule_id: str
    severity: str  # info | low | medium | high | critical
    title: str
    message: str  # the evidence, numbers filled in
    action: str
    notice: str = "new"  # new | repeat (still open) | resolved
    since: date | None = None  # the night it started firing (resolved: the night it resolved)
    segment: str | None = None
    group: str | None = None  # loyalty group: apostle, loyal, opportunist, hostage, defector, terrorist
    revenue_12m: float | None = None
    monthly_revenue: tuple[float, ...] = ()  # the last 12 calendar months, oldest first
    recipient: str | None = None  # whom the digest goes to; default: the owner
    route_reason: str | None = None  # why it went to ops instead of the owner
    cc: str | None = None  # the supervisor, for critical warnings
    language: str | None = None  # the recipient's language; default: digest.language

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(
                f"warning {self.rule_id!r} for account {self.account_id!r}: unknown severity "
                f"{self.severity!r} (expected one of {', '.join(SEVERITIES)})"
            )
        # Every text a digest shows comes through here, from the extract (names, segments, the
        # bad value a route reason quotes) or from a rule file (titles, and messages with
        # evidence values such as a contact person filled in). Control characters become U+FFFD
        # once, for the HTML, the text part, the CSV and the To header's display name alike.
        # Markup needs nothing here: the HTML template escapes it, and Jinja never evaluates
        # what it prints, so "{{ 7*7 }}" in a name stays those characters.
        for name in _ONE_LINE_TEXTS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, printable(getattr(self, name), one_line=True))
        for name in ("message", "action"):  # a rule author may write these on several lines
            object.__setattr__(self, name, printable(getattr(self, name)))
        if self.route_reason is not None:  # for ops, quoting the bad value: show what is wrong in it
            object.__setattr__(self, "route_reason", escaped(self.route_reason))


_ONE_LINE_TEXTS = ("account_id", "account_name", "owner_name", "title", "segment")


@dataclass(frozen=True)
class Portfolio:
    """An owner's whole book, for the digest's header."""

    watched: int  # accounts not closed
    warned: int  # accounts with a firing warning tonight
    retention: float | None  # the brief's retention rate over the last 12 months; None: no customers a year ago


@dataclass(frozen=True)
class Digest:
    """The one email a recipient gets for a night."""

    night: date
    recipient: str  # the ledger key: the address lower-cased (a notice to ops: "notice:<address>")
    message: EmailMessage

    @property
    def envelope(self) -> list[str]:
        """Everyone the message goes to: To, then Cc."""
        return [a.addr_spec for header in ("To", "Cc") for a in getattr(self.message[header], "addresses", ())]


# A digest is read in a minute: past this many accounts with new warnings, the rest get one line each.
MAX_ACCOUNTS = 15


def render_digests(
    warnings: Iterable[AccountWarning],
    night: date,
    sender: str,
    language: str,
    max_accounts: int = MAX_ACCOUNTS,
    portfolios: dict[str, Portfolio] | None = None,
    currency: str = "EUR",
) -> list[Digest]:
    """One digest per recipient with at least one warning, sorted by recipient.

    Recipients are grouped by address, compared case-insensitively; the digest's ``recipient``
    is that address lower-cased. A warning's ``language`` (else ``language``) picks the texts.

    >>> w = AccountWarning("K-1", "Bäckerei Kühn", "anna@example.com", "Anna Groß",
    ...     "falling_order_frequency", "high", "Bestellfrequenz sinkt",
    ...     "0 Bestellungen in 90 Tagen, etwa 6 erwartet", "Entscheider anrufen.")
    >>> [d] = render_digests([w], date(2026, 11, 23), "loyalty@example.com", "de")
    >>> d.message["Subject"]
    'Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden'
    """
    if language not in UI_STRINGS:
        raise ConfigError(f"digest.language: must be one of {sorted(UI_STRINGS)}, got {language!r}")
    sender_domain = domain_of(sender)
    by_recipient: dict[str, list[AccountWarning]] = {}
    for warning in warnings:
        by_recipient.setdefault((warning.recipient or warning.owner_email).strip().lower(), []).append(warning)
    portfolios = portfolios or {}
    return [
        Digest(
            night,
            recipient,
            _render(recipient, owned, night, sender, sender_domain, owned[0].language or language, max_accounts, portfolios.get(recipient), currency),
        )
        for recipient, owned in sorted(by_recipient.items())
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
    portfolio: Portfolio | None,
    currency: str,
) -> EmailMessage:
    ui = UI_STRINGS[language]
    locale = LOCALES[language]
    night_label = format_date(night, "medium", locale=locale)
    number = lambda value: format_decimal(value, locale=locale)  # noqa: E731
    new = _accounts([w for w in warnings if w.notice == "new"], ui, night, locale, currency)
    still_open = _accounts([w for w in warnings if w.notice == "repeat"], ui, night, locale, currency)
    resolved = _accounts([w for w in warnings if w.notice == "resolved"], ui, night, locale, currency)
    counts = {key: sum(len(a["warnings"]) for a in accounts) for key, accounts in (("new", new), ("open", still_open), ("resolved", resolved))}
    summary = []
    if counts["new"]:
        summary.append(_plural(ui, "new", counts["new"], number) + _plural(ui, "at", len(new), number))
    for key in ("open", "resolved"):
        if counts[key]:
            summary.append(_plural(ui, key, counts[key], number))
    owners = {w.owner_email.strip().lower() for w in warnings}
    for_ops = any(w.route_reason for w in warnings) and recipient not in owners
    # Names should agree across one owner's rows; if the extract disagrees, pick one stably.
    owner_name = "" if for_ops else min((w.owner_name.strip() for w in warnings if w.owner_name.strip()), default="")
    header = ""
    if portfolio is not None and not for_ops:
        retention = ui["unknown"] if portfolio.retention is None else format_percent(portfolio.retention, locale=locale)
        header = ui["portfolio"].format(watched=number(portfolio.watched), warned=number(portfolio.warned), retention=retention)
    context = {
        "lang": language,
        "ui": ui,
        "subject": ui["subject"].format(night=night_label, summary=", ".join(summary)),
        "heading": ui["heading"].format(night=night_label),
        "greeting": ui["greeting"].format(name=owner_name or recipient),
        "header": header,
        "for_ops": for_ops,
        "accounts": new[:max_accounts],
        "more": new[max_accounts:],
        "still_open": still_open,
        "resolved": resolved,
        "footer": ui["footer"].format(night=night_label),
        "severity_colours": SEVERITY_COLOURS,
        "chart_height": CHART_HEIGHT,
    }
    text = template_environment().get_template("digest.txt.j2").render(context)
    html = _inliner().inline(template_environment().get_template("digest.html.j2").render(context))

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    try:
        message["To"] = Address(display_name=owner_name, addr_spec=recipient)
        supervisors = sorted({w.cc.strip().lower() for w in warnings if w.cc})
        if supervisors:
            message["Cc"] = [Address(addr_spec=address) for address in supervisors]
    except (ValueError, email.errors.HeaderParseError) as err:
        # Addresses were checked when the accounts were loaded; reaching this is a bug upstream.
        accounts_named = ", ".join(sorted({w.account_id for w in warnings}))
        raise ValueError(f"an address of account {accounts_named} is not an address: {err}") from None
    message["Subject"] = context["subject"]
    message["Date"] = format_datetime(datetime.combine(night, DATE_HEADER_TIME))
    message["Message-ID"] = message_id(night, recipient, sender_domain)
    # RFC 3834: tells out-of-office responders not to answer a machine.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Loyalty-Night"] = night.isoformat()
    message.set_content(text, subtype="plain", cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    attachment = ""
    if context["more"]:
        attachment = _csv(warnings, language)
        message.add_attachment(attachment, subtype="csv", charset="utf-8", filename=ui["attachment_name"].format(night=night.isoformat()))
    for part in message.iter_parts():
        del part["MIME-Version"]  # only the top level carries it
    # After the parts: set_content() clears every Content-* header it finds.
    message["Content-Language"] = language
    # The default boundaries are random. These are derived from the content, and "=_" never
    # occurs in a quoted-printable or base64 body, so they cannot collide with the parts.
    parts = hashlib.sha256(f"{text}\0{html}\0{attachment}".encode("utf-8")).hexdigest()[:32]
    if message.is_multipart() and message.get_content_subtype() == "mixed":
        message.set_boundary(f"=_mixed_{parts}")
        message.get_payload()[0].set_boundary(f"=_digest_{parts}")
    else:
        message.set_boundary(f"=_digest_{parts}")
    return message


def _plural(ui: dict[str, str], key: str, count: int, number) -> str:
    return ui[f"{key}_one"] if count == 1 else ui[f"{key}_many"].format(count=number(count))


def _accounts(warnings: list[AccountWarning], ui: dict[str, str], night: date, locale: str, currency: str) -> list[dict]:
    """Accounts with their warnings in the brief's order of care (defectors first), then by
    their most severe warning, then by revenue over the last 12 months, largest first."""
    by_account: dict[str, list[AccountWarning]] = {}
    for warning in warnings:
        by_account.setdefault(warning.account_id, []).append(warning)
    accounts = []
    for account_id, owned in by_account.items():
        # The same order in every language: severity, then the rule.
        owned.sort(key=lambda w: (_RANK[w.severity], w.rule_id))
        first = owned[0]
        months = first.monthly_revenue
        top = max(months, default=0) or 1
        accounts.append(
            {
                "id": account_id,
                "name": min(w.account_name for w in owned),
                "segment": first.segment,
                "group": ui[first.group] if first.group in CARE_ORDER else None,
                "care": CARE_ORDER.index(first.group) if first.group in CARE_ORDER else len(CARE_ORDER),
                "rank": _RANK[first.severity],
                "revenue_value": first.revenue_12m or 0,
                "revenue": ui["revenue"].format(amount=_money(first.revenue_12m or 0, currency, locale)) if first.revenue_12m is not None else "",
                "bars": [
                    {
                        "height": max(round(CHART_HEIGHT * value / top), 1),
                        "empty": value <= 0,
                        "title": f"{format_date(_month_back(night, len(months) - 1 - i), 'MMM yyyy', locale=locale)}: {_money(value, currency, locale)}",
                    }
                    for i, value in enumerate(months)
                ],
                # The last bar is the current month up to the night, drawn lighter: not a drop.
                "months": ui["months"].format(
                    first=format_date(_month_back(night, len(months) - 1), "MMM yyyy", locale=locale),
                    night=format_date(night, "medium", locale=locale),
                ) if months else "",
                "sparkline": "".join(SPARKS[min(int(len(SPARKS) * value / top), len(SPARKS) - 1)] if value > 0 else " " for value in months),
                "routed": _route_reason(first.route_reason, ui) if first.route_reason else "",
                "warnings": [
                    {
                        "severity": w.severity,
                        "label": ui[w.severity],
                        "title": w.title,
                        "message": w.message,
                        "action": w.action,
                        "since": ui["since"].format(date=format_date(w.since, "medium", locale=locale)) if w.since else "",
                    }
                    for w in owned
                ],
            }
        )
    accounts.sort(key=lambda a: (a["care"], a["rank"], -a["revenue_value"], a["name"].casefold(), a["name"], a["id"]))
    return accounts


def _money(value: float, currency: str, locale: str) -> str:
    """Whole currency units: 12.346 € in German, €12,346 in English."""
    pattern = Locale.parse(locale).currency_formats["standard"].pattern.split(";")[0].replace(".00", "")
    return format_currency(round(value), currency, format=pattern, locale=locale, currency_digits=False)


def _month_back(night: date, months: int) -> date:
    month = night.year * 12 + night.month - 1 - months
    return date(month // 12, month % 12 + 1, 1)


def _route_reason(reason: str, ui: dict[str, str]) -> str:
    """Routing's reasons are written for ops in English; the German digest says them in German."""
    if ui is UI_STRINGS["de"]:
        reason = reason.replace("account has no owner address", "Kunde hat keine Betreuer-Adresse")
        if reason.startswith("owner address "):
            reason = "Betreuer-Adresse " + reason.removeprefix("owner address ").replace(" is not valid", " ist ungültig")
        elif reason.startswith("owner name "):
            reason = "Betreuer-Name " + reason.removeprefix("owner name ").replace(" is not valid", " ist ungültig")
    return f"{ui['routed']}: {reason}"


def _csv(warnings: list[AccountWarning], language: str) -> str:
    """Every warning of the digest, one row each; German spreadsheets expect ';' and UTF-8 with a BOM."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if language == "de" else ",", lineterminator="\r\n")
    writer.writerow(["account_id", "account_name", "segment", "group", "revenue_12m", "notice", "severity", "rule_id", "title", "message", "action"])
    for w in sorted(warnings, key=lambda w: (w.notice, w.account_id, _RANK[w.severity], w.rule_id)):
        account = [_cell(w.account_id), _cell(w.account_name), _cell(w.segment or ""), w.group or "", round(w.revenue_12m or 0)]
        writer.writerow(account + [w.notice, w.severity, w.rule_id, _cell(w.title), _cell(w.message), _cell(w.action)])
    return "\ufeff" + out.getvalue()


def _cell(text: str) -> str:
    """A spreadsheet runs a cell that starts with = + - or @ as a formula (an account named
    `=HYPERLINK(…)`); a leading apostrophe keeps it text (OWASP's advice for CSV exports)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


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


@cache
def template_environment() -> jinja2.Environment:
    """The templates of digests and pages: autoescaped (STACK.md §6: select_autoescape misses *.html.j2 by default)."""
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
