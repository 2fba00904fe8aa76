"""Warnings -> one email per account owner: a plain-text and an HTML part, in the digest language.

What a digest holds (AccountWarning, Portfolio, Digest) and how it is laid out: accounts in the
brief's order of care, the revenue chart, the CSV attachment. Its words and number formats come
from i18n/, its templates through templating.py, its headers and boundaries from envelope.py.

The message is a pure function of its inputs: same warnings, night, sender and language give
byte-identical ``message.as_bytes()``. Nothing here reads the clock, the environment or the
order in which warnings arrive, so a re-run of a night renders exactly the mail it rendered before.
"""

from __future__ import annotations

import csv
import email.errors
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from email.headerregistry import Address
from email.message import EmailMessage

from loyalty_engine import i18n
from loyalty_engine.i18n import Language
from loyalty_engine.mail.budget import DEFAULT_CHANCE, rank_key
from loyalty_engine.mail.envelope import addressed, domain_of, seal
from loyalty_engine.rules.loader import SEVERITIES as RULE_SEVERITIES
from loyalty_engine.safe_text import escaped, printable
from loyalty_engine.templating import inline_css, render

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

# The brief's order of care: defectors (and terrorists) first, then apostles, loyal accounts,
# opportunists, hostages; accounts whose group is unknown last.
CARE_ORDER = ("terrorist", "defector", "apostle", "loyal", "opportunist", "hostage")

CHART_HEIGHT = 36  # pixels of the tallest revenue bar
SPARKS = "▁▂▃▄▅▆▇█"  # the plain-text chart


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
    notice: str = "new"  # new | repeat (still open) | resolved | waiting (over the budget) | intro (first night, over the budget)
    since: date | None = None  # the night it started firing (resolved: the night it resolved)
    segment: str | None = None
    group: str | None = None  # loyalty group: apostle, loyal, opportunist, hostage, defector, terrorist
    revenue_12m: float | None = None
    monthly_revenue: tuple[float, ...] = ()  # the last 12 calendar months, oldest first
    recipient: str | None = None  # whom the digest goes to; default: the owner
    route_reason: str | None = None  # why it went to ops instead of the owner: a lifecycle.routing.RouteReason
    cc: str | None = None  # the supervisor, for critical warnings
    language: str | None = None  # the recipient's language; default: digest.language
    route_value: str | None = None  # the bad owner address or name the route reason quotes
    chance: float | None = None  # the chance that it means a loss (mail/budget.py); stake = chance x revenue_12m
    signal: str | None = None  # the rule's labels.signal: related rules speak once per account
    odds: str = ""  # the odds behind the warning from the last backtest, in the reader's words; "" before one
    # The owner's three verdict links (feedback/links.py), as (verdict, url): useful, false_alarm,
    # already_known; () when feedback.base_url is unset or the warning went to ops.
    verdicts: tuple[tuple[str, str], ...] = ()

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
        for name in ("route_reason", "route_value"):  # for ops, quoting the bad value: show what is wrong in it
            if getattr(self, name) is not None:
                object.__setattr__(self, name, escaped(getattr(self, name)))


_ONE_LINE_TEXTS = ("account_id", "account_name", "owner_name", "title", "segment")


@dataclass(frozen=True)
class LostAccount:
    """An account that became lost (lifecycle/lost.py), announced once in its owner's digest."""

    account_id: str
    account_name: str
    last_order: date
    silent_days: int  # backtest.lost.no_order_days: the definition, for the note

    def __post_init__(self) -> None:
        for name in ("account_id", "account_name"):
            object.__setattr__(self, name, printable(getattr(self, name), one_line=True))


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


# Lost accounts listed by name in one digest; the rest are counted.
MAX_LOST = 10

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
    lost: dict[str, list[LostAccount]] | None = None,
) -> list[Digest]:
    """One digest per recipient with at least one warning, sorted by recipient. `lost` (by
    recipient) are the lost accounts announced in that recipient's digest, in their own section.

    Recipients are grouped by address, compared case-insensitively; the digest's ``recipient``
    is that address lower-cased. A warning's ``language`` (else ``language``) picks the texts.

    >>> w = AccountWarning("K-1", "Bäckerei Kühn", "anna@example.com", "Anna Groß",
    ...     "falling_order_frequency", "high", "Bestellfrequenz sinkt",
    ...     "0 Bestellungen in 90 Tagen, etwa 6 erwartet", "Entscheider anrufen.")
    >>> [d] = render_digests([w], date(2026, 11, 23), "loyalty@example.com", "de")
    >>> d.message["Subject"]
    'Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden'
    """
    i18n.language(language)  # an unknown language fails before any digest is rendered
    sender_domain = domain_of(sender)
    by_recipient: dict[str, list[AccountWarning]] = {}
    for warning in warnings:
        by_recipient.setdefault((warning.recipient or warning.owner_email).strip().lower(), []).append(warning)
    portfolios = portfolios or {}
    lost = lost or {}
    return [
        Digest(
            night,
            recipient,
            _render(recipient, owned, night, sender, sender_domain, owned[0].language or language, max_accounts, portfolios.get(recipient), currency,
                    lost.get(recipient, [])),
        )
        for recipient, owned in sorted(by_recipient.items())
    ]


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
    lost: list[LostAccount] = (),
) -> EmailMessage:
    words = i18n.language(language)
    ui = words.digest
    night_label = words.date(night)
    new = _accounts([w for w in warnings if w.notice == "new"], words, night, currency)
    still_open = _accounts([w for w in warnings if w.notice == "repeat"], words, night, currency)
    resolved = _accounts([w for w in warnings if w.notice == "resolved"], words, night, currency)
    counts = {key: sum(len(a["warnings"]) for a in accounts) for key, accounts in (("new", new), ("open", still_open), ("resolved", resolved))}
    # Held back by the attention budget (mail/budget.py): counted here, listed in the attachment.
    waiting = sum(w.notice == "waiting" for w in warnings)
    introduced = sum(w.notice == "intro" for w in warnings)
    held_back = []
    if introduced:
        held_back.append(words.plural(ui["intro_more"], introduced))
    if waiting:
        held_back.append(words.plural(ui["waiting"], waiting))
    summary = []
    if counts["new"]:
        summary.append(words.plural(ui["new"], counts["new"]) + words.plural(ui["at"], len(new)))
    for key in ("open", "resolved"):
        if counts[key]:
            summary.append(words.plural(ui[key], counts[key]))
    owners = {w.owner_email.strip().lower() for w in warnings}
    for_ops = any(w.route_reason for w in warnings) and recipient not in owners
    # Names should agree across one owner's rows; if the extract disagrees, pick one stably.
    owner_name = "" if for_ops else min((w.owner_name.strip() for w in warnings if w.owner_name.strip()), default="")
    header = ""
    if portfolio is not None and not for_ops:
        retention = ui["unknown"] if portfolio.retention is None else words.percent(portfolio.retention)
        header = words.plural(ui["portfolio"], portfolio.watched, warned=words.number(portfolio.warned), retention=retention)
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
        # The most recently lost first; past MAX_LOST (a first night's starting state) a count.
        "lost": [
            {"name": a.account_name, "id": a.account_id, "line": ui["lost_line"].format(date=words.date(a.last_order))}
            for a in sorted(lost, key=lambda a: (-a.last_order.toordinal(), a.account_name.casefold(), a.account_id))[:MAX_LOST]
        ],
        "lost_more": words.plural(ui["lost_more"], len(lost) - MAX_LOST) if len(lost) > MAX_LOST else "",
        "lost_note": words.plural(ui["lost_note"], lost[0].silent_days) if lost else "",
        "first_night": bool(introduced),
        "held_back": held_back,
        "footer": ui["footer"].format(night=night_label),
        "severity_colours": SEVERITY_COLOURS,
        "chart_height": CHART_HEIGHT,
    }
    text = render("digest.txt.j2", context)
    html = inline_css(render("digest.html.j2", context))

    try:
        to = Address(display_name=owner_name, addr_spec=recipient)
        supervisors = [Address(addr_spec=address) for address in sorted({w.cc.strip().lower() for w in warnings if w.cc})]
        message = addressed(sender, to, context["subject"], night, recipient, sender_domain, cc=supervisors)
    except (ValueError, email.errors.HeaderParseError) as err:
        # Addresses were checked when the accounts were loaded; reaching this is a bug upstream.
        accounts_named = ", ".join(sorted({w.account_id for w in warnings}))
        raise ValueError(f"an address of account {accounts_named} is not an address: {err}") from None
    message.set_content(text, subtype="plain", cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    attachment = ""
    if context["more"] or held_back:
        attachment = _csv(warnings, words)
        message.add_attachment(attachment, subtype="csv", charset="utf-8", filename=ui["attachment_name"].format(night=night.isoformat()))
    # After the parts: set_content() clears every Content-* header it finds.
    message["Content-Language"] = language
    seal(message, text, html, attachment)
    return message


def _accounts(warnings: list[AccountWarning], words: Language, night: date, currency: str) -> list[dict]:
    """Accounts with their warnings, most important first (mail/budget.py's rank_key): by their
    most severe warning, then accounts with revenue in 12 months before those without, then what
    is at stake (the chance of a loss times that revenue), then the brief's order of care."""
    ui = words.digest
    by_account: dict[str, list[AccountWarning]] = {}
    for warning in warnings:
        by_account.setdefault(warning.account_id, []).append(warning)
    accounts = []
    for account_id, owned in by_account.items():
        # The same order in every language: severity, then the rule's chance of a loss, then the rule.
        owned.sort(key=lambda w: (_RANK[w.severity], -(w.chance if w.chance is not None else DEFAULT_CHANCE), w.rule_id))
        first = owned[0]
        # One voice per signal: the strongest related warning speaks, the others are named beside it.
        voices: dict[str, list[AccountWarning]] = {}
        for w in owned:
            voices.setdefault(w.signal or f"rule:{w.rule_id}", []).append(w)
        spoken = [group for group in voices.values()]
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
                "key": min(rank_key(w.severity, w.chance if w.chance is not None else DEFAULT_CHANCE, w.revenue_12m, w.group) for w in owned),
                "revenue": ui["revenue"].format(amount=words.money(first.revenue_12m or 0, currency)) if first.revenue_12m is not None else "",
                "bars": [
                    {
                        "height": max(round(CHART_HEIGHT * value / top), 1),
                        "empty": value <= 0,
                        "title": f"{words.date(_month_back(night, len(months) - 1 - i), 'MMM yyyy')}: {words.money(value, currency)}",
                    }
                    for i, value in enumerate(months)
                ],
                # The last bar is the current month up to the night, drawn lighter: not a drop.
                "months": ui["months"].format(
                    first=words.date(_month_back(night, len(months) - 1), "MMM yyyy"),
                    night=words.date(night),
                ) if months else "",
                "sparkline": "".join(SPARKS[min(int(len(SPARKS) * value / top), len(SPARKS) - 1)] if value > 0 else " " for value in months),
                "routed": ui["routed"].format(reason=words.route_reason(first.route_reason, first.route_value)) if first.route_reason else "",
                "warnings": [
                    {
                        "severity": w.severity,
                        "label": ui[w.severity],
                        "title": w.title,
                        "message": w.message,
                        "action": w.action,
                        "since": ui["since"].format(date=words.date(w.since)) if w.since else "",
                        "odds": w.odds,
                        "also": ui["also"].format(titles=", ".join(o.title for o in others)) if others else "",
                        "verdicts": _verdicts(w, ui),
                    }
                    for w, *others in spoken
                ],
                # Several voices, several actions: the most important warning's action first.
                "first": ui["first"].format(action=first.action) if len(spoken) > 1 and first.action.strip() else "",
            }
        )
    accounts.sort(key=lambda a: (a["key"], a["name"].casefold(), a["name"], a["id"]))
    return accounts


def _verdicts(warning: AccountWarning, ui) -> list[dict]:
    """The warning's verdict links with their words; the url as it is (a signed token, ids only)."""
    return [{"verdict": verdict, "label": ui[f"verdict_{verdict}"], "url": url} for verdict, url in warning.verdicts]


def _month_back(night: date, months: int) -> date:
    month = night.year * 12 + night.month - 1 - months
    return date(month // 12, month % 12 + 1, 1)


def _csv(warnings: list[AccountWarning], words: Language) -> str:
    """Every warning of the digest, one row each, UTF-8 with a BOM, columns split as the
    reader's spreadsheet expects (';' where the decimal mark is a comma, as in German)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=words.csv_delimiter, lineterminator="\r\n")
    writer.writerow(["account_id", "account_name", "segment", "group", "revenue_12m", "notice", "severity", "rule_id", "title", "message", "action"])
    for w in sorted(warnings, key=lambda w: (_CSV_ORDER.get(w.notice, len(_CSV_ORDER)), w.notice, w.account_id, _RANK[w.severity], w.rule_id)):
        account = [_cell(w.account_id), _cell(w.account_name), _cell(w.segment or ""), w.group or "", round(w.revenue_12m or 0)]
        writer.writerow(account + [w.notice, w.severity, w.rule_id, _cell(w.title), _cell(w.message), _cell(w.action)])
    return "\ufeff" + out.getvalue()


# The attachment's rows: what the body shows first, then what the budget held back, then the rest.
_CSV_ORDER = {"new": 0, "waiting": 1, "intro": 2, "repeat": 3, "resolved": 4}


def _cell(text: str) -> str:
    """A spreadsheet runs a cell that starts with = + - or @ as a formula (an account named
    `=HYPERLINK(…)`); a leading apostrophe keeps it text (OWASP's advice for CSV exports)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
