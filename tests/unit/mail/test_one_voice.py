"""One voice per account: related rules (the same labels.signal) speak once, the strongest first;
an account with several warnings gets one "do this first"; a related rule's new warning is not
news when the owner was told of the signal already (mail/budget.py)."""

from __future__ import annotations

import dataclasses
from datetime import date

from loyalty_engine.contract import TABLES
from loyalty_engine.mail.budget import apply_budget
from loyalty_engine.mail.digest import AccountWarning, render_digests
from tests.unit.lifecycle.test_lifecycle import Book, day

NIGHT = date(2026, 11, 23)


def warning(rule, severity, title, action, signal, chance=0.2):
    return AccountWarning("K-1", "Kunde", "anna@example.com", "Anna", rule, severity, title, "m", action,
                          signal=signal, chance=chance, language="en")  # fmt: skip


def test_related_warnings_speak_once_and_the_account_gets_one_first_action():
    warnings = [
        warning("order_gap", "high", "Order overdue", "Call about the open order.", "orders", chance=0.18),
        warning("falling_frequency", "high", "Order frequency falling", "Ask what changed.", "orders", chance=0.25),
        warning("detractor", "medium", "Unhappy in the survey", "Visit.", "surveys"),
    ]
    [digest] = render_digests(warnings, NIGHT, "fw@example.com", "en")
    text = digest.message.get_body(("plain",)).get_content()
    # The stronger of the two order rules (same severity, higher precision) speaks; the other is named.
    assert text.count("[HIGH]") == 1 and "[HIGH] Order frequency falling" in text
    assert "(also: Order overdue)" in text
    assert text.index(">> Do this first: Ask what changed.") < text.index("[HIGH]")
    html = digest.message.get_body(("html",)).get_content()
    assert "Do this first: Ask what changed." in html and "also: Order overdue" in html
    [one] = render_digests(warnings[2:], NIGHT, "fw@example.com", "en")
    assert "Do this first" not in one.message.get_body(("plain",)).get_content()  # one voice: its own action


def test_a_related_rule_does_not_take_a_turn_as_news(tmp_path):
    book = Book(tmp_path)
    for name, table in TABLES.items():
        if name != "accounts":
            book.con.execute(table.create_sql())
    related = {"slow": "orders", "smaller": "orders"}
    book.night(1, {("A", "smaller")})
    apply_budget(book.con, day(1), 5, voices=related)
    book.night(2, {("A", "smaller")})
    apply_budget(book.con, day(2), 5, voices=related)
    book.night(3, {("A", "smaller"), ("A", "slow")})
    book.night(4, {("A", "smaller"), ("A", "slow")})  # slow fires (for: 2 nights): same signal, already told
    counts = apply_budget(book.con, day(4), 5, voices=related)
    rows = dict(book.con.execute("SELECT rule_id, notice || ':' || mailed FROM warning_nights WHERE night = ?", [day(4)]).fetchall())
    assert rows == {"smaller": "open:false", "slow": "open:false"} and counts["same_voice"] == 1
    book.night(5, {("A", "slow")})  # smaller resolves; slow carries on, counted as told on night 4
    apply_budget(book.con, day(5), 5, voices=related)
    assert book.con.execute("SELECT notice FROM warning_nights WHERE night = ? AND rule_id = 'slow'", [day(5)]).fetchone() == ("open",)
    book.con.close()


def test_a_shadow_rule_never_speaks_for_a_live_one(tmp_path):
    # A shadow rule's rows keep last_mailed as if mailed, but its owner never heard of it: a
    # related live rule's new warning is news and is mailed.
    book = Book(tmp_path)
    for name, table in TABLES.items():
        if name != "accounts":
            book.con.execute(table.create_sql())
    book.ruleset.rules[:] = [dataclasses.replace(r, mode="shadow") if r.id == "smaller" else r for r in book.ruleset.rules]
    related = {"slow": "orders", "smaller": "orders"}
    for n, held in [(1, {("A", "smaller")}), (2, {("A", "smaller")}), (3, {("A", "smaller"), ("A", "slow")}), (4, {("A", "smaller"), ("A", "slow")})]:
        book.night(n, held)
        counts = apply_budget(book.con, day(n), 5, voices=related)
    rows = dict(book.con.execute("SELECT rule_id, notice || ':' || mailed FROM warning_nights WHERE night = ?", [day(4)]).fetchall())
    assert rows == {"smaller": "open:false", "slow": "new:true"} and counts["same_voice"] == 0
    book.con.close()
