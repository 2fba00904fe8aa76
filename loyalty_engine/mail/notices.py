"""Mails to ops when a night stops: the gate failed, or the digests are held (alert flood).

One mail per ops address and night and kind, through the ledger (key `notice:<kind>:<address>`),
so a re-run of a night that fails again does not mail ops again.
"""

from __future__ import annotations

import email.policy
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from babel.dates import format_date

from loyalty_engine.mail.digest import DATE_HEADER_TIME, LOCALES, Digest, domain_of, message_id
from loyalty_engine.gate import Check, DigestsHeld, GateStop, Outcome

TEXTS = {
    "de": {
        "failed_subject": "Frühwarnung {night}: Nacht angehalten, keine Digests versandt ({first})",
        "held_subject": "Frühwarnung {night}: Digests zurückgehalten, {first}",
        "failed_intro": (
            "Die Extrakte für den {night} haben die Prüfung nicht bestanden. Die Nacht wurde nicht "
            "ausgewertet, nichts wurde ersetzt, kein Betreuer hat eine E-Mail bekommen."
        ),
        "held_intro": (
            "Die Nacht {night} ist ausgewertet, aber sie würde ungewöhnlich viele Kunden neu warnen. "
            "Die Digests an die Betreuer sind zurückgehalten, bis jemand draufgeschaut hat."
        ),
        "failed_todo": (
            "Was tun: den Export prüfen oder neu liefern, dann `loyalty run --date {iso}`. "
            "`loyalty gate --date {iso}` zeigt die Prüfungen erneut."
        ),
        "held_todo": (
            "Was tun: die Warnungen ansehen (`loyalty alerts --date {iso}`). Stimmen sie, gibt "
            "`loyalty release --date {iso}` die Digests frei. Sind die Daten falsch: Export neu liefern, "
            "dann `loyalty run --date {iso}`."
        ),
        "problems": "Was nicht stimmt:",
        "all_checks": "Alle Prüfungen:",
    },
    "en": {
        "failed_subject": "Early warning {night}: night stopped, no digests sent ({first})",
        "held_subject": "Early warning {night}: digests held, {first}",
        "failed_intro": (
            "The extracts for {night} failed the data-quality gate. The night was not evaluated, "
            "nothing was replaced, and no account owner was mailed."
        ),
        "held_intro": (
            "The night {night} was evaluated, but it would warn unusually many accounts for the first "
            "time. The owners' digests are held until someone has looked."
        ),
        "failed_todo": (
            "What to do: check or re-deliver the export, then `loyalty run --date {iso}`. "
            "`loyalty gate --date {iso}` shows the checks again."
        ),
        "held_todo": (
            "What to do: look at the warnings (`loyalty alerts --date {iso}`). If they are right, "
            "`loyalty release --date {iso}` sends the digests. If the data is wrong, re-deliver the "
            "export, then `loyalty run --date {iso}`."
        ),
        "problems": "What is wrong:",
        "all_checks": "All checks:",
    },
}


def render_gate_notice(night: date, sender: str, recipients: list[str], language: str, stop: GateStop) -> list[Digest]:
    """One plain-text mail to each ops address saying exactly why the night stopped."""
    texts = TEXTS[language]
    kind = "held" if isinstance(stop, DigestsHeld) else "failed"
    night_label = format_date(night, "medium", locale=LOCALES[language])
    stopping = [c for c in stop.checks if c.outcome in (Outcome.FAIL, Outcome.HOLD)]
    first = _headline(stopping[0]) + (f" +{len(stopping) - 1}" if len(stopping) > 1 else "")
    body = "\n".join(
        [
            texts[f"{kind}_intro"].format(night=night_label),
            "",
            texts["problems"],
            *(f"- {check.text()}" for check in stopping),
            "",
            texts[f"{kind}_todo"].format(iso=night.isoformat()),
            "",
            texts["all_checks"],
            *(f"  {check.line()}" for check in stop.checks),
            "",
        ]
    )
    notices = []
    for address in recipients:
        key = f"notice:{kind}:{address}"
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = sender
        message["To"] = Address(addr_spec=address)
        message["Subject"] = texts[f"{kind}_subject"].format(night=night_label, first=first)
        message["Date"] = format_datetime(datetime.combine(night, DATE_HEADER_TIME))
        message["Message-ID"] = message_id(night, key, domain_of(sender))
        message["Auto-Submitted"] = "auto-generated"
        message["X-Loyalty-Night"] = night.isoformat()
        message.set_content(body, cte="quoted-printable")
        notices.append(Digest(night, key, message))
    return notices


def _headline(check: Check) -> str:
    """A check in a few words, for a subject line (file paths stay in the body)."""
    where = f"{check.table} {check.name}" if check.table != "*" else check.name
    if check.name in ("presence", "readable", "schema"):
        return where
    return f"{where}: {check.figure}"
