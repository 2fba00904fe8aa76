"""Mails to ops when a night stops: the gate failed, or the digests are held (alert flood).

One mail per ops address and night and kind, through the ledger (key `notice:<kind>:<address>`),
so a re-run of a night that fails again does not mail ops again.
"""

from __future__ import annotations

from datetime import date
from email.headerregistry import Address

from loyalty_engine import i18n
from loyalty_engine.gate import Check, DigestsHeld, GateStop, Outcome
from loyalty_engine.mail.digest import Digest
from loyalty_engine.mail.envelope import addressed, domain_of


def render_gate_notice(night: date, sender: str, recipients: list[str], language: str, stop: GateStop) -> list[Digest]:
    """One plain-text mail to each ops address saying exactly why the night stopped."""
    words = i18n.language(language)
    texts = words.notices
    kind = "held" if isinstance(stop, DigestsHeld) else "failed"
    night_label = words.date(night)
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
    subject = texts[f"{kind}_subject"].format(night=night_label, first=first)
    notices = []
    for address in recipients:
        key = f"notice:{kind}:{address}"
        message = addressed(sender, Address(addr_spec=address), subject, night, key, domain_of(sender))
        message.set_content(body, cte="quoted-printable")
        notices.append(Digest(night, key, message))
    return notices


def _headline(check: Check) -> str:
    """A check in a few words, for a subject line (file paths stay in the body)."""
    where = f"{check.table} {check.name}" if check.table != "*" else check.name
    if check.name in ("presence", "readable", "schema"):
        return where
    return f"{where}: {check.figure}"


def tell_ops(settings, night: date, stop: GateStop, warn) -> None:
    """Mail ops why the night stopped (once per night, kind and address, through the ledger);
    `warn` gets a line for an empty ops list or a notice not delivered."""
    from loyalty_engine import store
    from loyalty_engine.mail.delivery import deliver_digests

    if not settings.email.ops_recipients:
        warn(f"night {night} stopped and email.ops_recipients is empty: nobody is told")
        return
    notices = render_gate_notice(night, settings.email.sender, settings.email.ops_recipients, settings.digest.language, stop)
    with store.connect(settings.database) as con:
        report = deliver_digests(con, notices, settings.email)
    for who, why in report.failed.items():
        warn(f"notice to {who} not delivered: {why}")
