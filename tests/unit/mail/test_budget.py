"""The attention budget and deferred resolutions (mail/budget.py) on a real DuckDB file, through
the real lifecycle, routing and mailing query."""

from __future__ import annotations

import pytest

from loyalty_engine.contract import TABLES
from loyalty_engine.mail.budget import DEFAULT_CHANCE, DEFERRED, apply_budget, rank_key
from loyalty_engine.mail.mailing import night_mailing
from tests.unit.lifecycle.test_lifecycle import Book, day


@pytest.fixture
def book(tmp_path):
    book = Book(tmp_path)
    for name, table in TABLES.items():
        if name != "accounts":
            book.con.execute(table.create_sql())
    # Anna's further accounts: D with 50,000 € in the last year, E with 5,000 €, F with none.
    book.con.execute(
        """INSERT INTO accounts (account_id, name, owner_email, owner_name, status, language) VALUES
           ('D', 'Delta', 'anna@example.com', 'Anna', 'active', 'en'),
           ('E', 'Epsilon', 'anna@example.com', 'Anna', 'active', 'en'),
           ('F', 'Phi', 'anna@example.com', 'Anna', 'active', 'de')"""
    )
    book.con.execute(
        """INSERT INTO orders (order_id, account_id, order_date, amount, currency) VALUES
           ('o1', 'D', DATE '2026-06-01', 50000, 'EUR'), ('o2', 'E', DATE '2026-06-01', 5000, 'EUR'),
           ('o3', 'F', DATE '2024-06-01', 90000, 'EUR')"""
    )
    yield book
    book.con.close()


def test_the_budget_keeps_what_is_most_at_stake_and_the_rest_waits_then_comes_next_night(book):
    held = {("D", "smaller"), ("E", "smaller"), ("F", "smaller")}
    book.night(1, held)
    apply_budget(book.con, day(1), 1)
    first = dict(book.con.execute("SELECT account_id, notice FROM warning_nights WHERE night = ?", [day(1)]).fetchall())
    assert first == {"D": "new", "E": "intro", "F": "intro"}  # the first night: an introduction, the rest told in the CSV
    book.night(2, held | {("E", "stopped")})  # a critical one always goes out, beside the budget
    counts = apply_budget(book.con, day(2), 1)
    second = dict(book.con.execute("SELECT account_id || '/' || rule_id, notice FROM warning_nights WHERE night = ? AND notice NOT IN ('open', 'inhibited')", [day(2)]).fetchall())
    assert second == {"E/stopped": "new"} and counts["waiting"] == 0  # E's 'smaller' is hidden by 'stopped'

    # From the second night on, new warnings over the budget wait and come back as new.
    book.night(3, {("D", "slow"), ("E", "slow"), ("F", "slow")})
    book.night(4, {("D", "slow"), ("E", "slow"), ("F", "slow")})
    apply_budget(book.con, day(4), 1)
    rows = dict(book.con.execute("SELECT account_id, notice || ':' || mailed FROM warning_nights WHERE night = ? AND rule_id = 'slow'", [day(4)]).fetchall())
    assert rows == {"D": "new:true", "E": "waiting:false", "F": "waiting:false"}
    mailing = night_mailing(book.con, book.ruleset, day(4), "de", [])
    assert {(w.account_id, w.notice) for w in mailing.warnings if w.rule_id == "slow"} == {("D", "new"), ("E", "waiting"), ("F", "waiting")}
    assert {w.language for w in mailing.warnings if w.recipient == "anna@example.com"} == {"en"}  # 2 en, 2 without, 1 de: English
    book.night(5, {("D", "slow"), ("E", "slow"), ("F", "slow")})
    apply_budget(book.con, day(5), 1)
    rows = dict(book.con.execute("SELECT account_id, notice FROM warning_nights WHERE night = ? AND rule_id = 'slow'", [day(5)]).fetchall())
    assert rows == {"D": "open", "E": "new", "F": "waiting"}  # E has revenue; F has none in 12 months


def test_rank_key_severity_then_revenue_then_stake():
    dead = rank_key("high", 0.9, 0.0, "defector")
    live = rank_key("high", 0.0, 10.0, "hostage")
    assert live < dead  # no revenue never outranks revenue at the same severity, whatever the chance
    assert rank_key("critical", DEFAULT_CHANCE, 0.0, None) < live
    assert rank_key("high", 0.5, 20_000, None) < rank_key("high", 0.05, 100_000, None)


def test_a_night_of_resolutions_alone_sends_nothing_and_the_next_digest_carries_them(book):
    book.night(1, {("A", "smaller")})
    apply_budget(book.con, day(1), 5)
    book.night(2, set())
    counts = apply_budget(book.con, day(2), 5)
    assert counts["deferred"] == 1
    assert book.con.execute("SELECT notice, mailed, reason FROM warning_nights WHERE night = ?", [day(2)]).fetchall() == [("resolved", False, DEFERRED)]
    assert night_mailing(book.con, book.ruleset, day(2), "de", []).warnings == []
    book.night(3, {("A", "slow")})
    book.night(4, {("A", "slow")})
    apply_budget(book.con, day(4), 5)
    told = {(w.rule_id, w.notice) for w in night_mailing(book.con, book.ruleset, day(4), "de", []).warnings}
    assert told == {("slow", "new"), ("smaller", "resolved")}
    book.night(5, {("A", "slow")})
    book.night(6, {("A", "slow"), ("A", "stopped")})
    apply_budget(book.con, day(6), 5)
    told = {(w.rule_id, w.notice) for w in night_mailing(book.con, book.ruleset, day(6), "de", []).warnings}
    assert told == {("stopped", "new")}  # told once: the resolution went out on night 4


def test_a_weekly_cadence_mails_on_its_weekday_and_the_immediate_severity_at_once(book):
    weekly = dict(cadence="weekly", weekday="monday", immediate_severity="critical")
    assert day(1).weekday() == 0 and day(8).weekday() == 0
    book.night(1, {("D", "smaller")})
    apply_budget(book.con, day(1), 5, **weekly)  # the first night introduces, whatever the weekday
    assert book.con.execute("SELECT notice, mailed FROM warning_nights WHERE night = ?", [day(1)]).fetchall() == [("new", True)]
    notices = {}
    for n in range(2, 9):
        held = {("E", "slow")} | ({("D", "smaller")} if n < 5 else set()) | ({("E", "stopped")} if n == 4 else set())
        book.night(n, held)
        apply_budget(book.con, day(n), 5, **weekly)
        notices[n] = {f"{a}/{r}": (notice, mailed) for a, r, notice, mailed in book.con.execute(
            "SELECT account_id, rule_id, notice, mailed FROM warning_nights WHERE night = ? AND notice <> 'pending'", [day(n)]).fetchall()}
    assert notices[3]["E/slow"] == ("waiting", False)  # Tuesday's new high warning waits for Monday
    assert notices[4]["E/stopped"] == ("new", True)  # a critical one goes out at once
    assert notices[5]["D/smaller"] == ("resolved", False)  # resolved on a Friday: no mail of its own
    assert notices[7]["E/slow"] == ("waiting", False)
    assert notices[8]["E/slow"] == ("new", True)  # Monday: the week's digest
    told = {(w.account_id, w.rule_id, w.notice) for w in night_mailing(book.con, book.ruleset, day(8), "de", []).warnings}
    # The week's resolutions too: D's of Friday, and the critical one mailed on Wednesday, resolved Friday.
    assert told == {("E", "slow", "new"), ("D", "smaller", "resolved"), ("E", "stopped", "resolved")}
    sent = [n for n in range(2, 9) if any(mailed for _, mailed in notices[n].values())]
    assert sent == [4, 8]


def test_a_repeat_alone_sends_nothing_and_rides_along_with_the_next_new_warning(book):
    slow = ("A", "slow")
    for n in (1, 2):
        book.night(n, {slow})
        apply_budget(book.con, day(n), 5)
    for n in range(3, 11):  # due for its repeat on night 9 (7 days after night 2), nothing else new
        notices = book.night(n, {slow})
        counts = apply_budget(book.con, day(n), 5)
        row = book.con.execute("SELECT notice, mailed, last_mailed FROM warning_nights WHERE night = ? AND rule_id = 'slow'", [day(n)]).fetchone()
        assert row == ("open", False, day(2)), n  # still told on night 2: due again every night
        if n >= 9:
            assert notices[slow][1] == "repeat" and counts["repeat_later"] == 1
        assert night_mailing(book.con, book.ruleset, day(n), "de", []).warnings == []
    book.night(11, {slow, ("A", "smaller")})
    apply_budget(book.con, day(11), 5)
    told = {(w.rule_id, w.notice) for w in night_mailing(book.con, book.ruleset, day(11), "de", []).warnings}
    assert told == {("smaller", "new"), ("slow", "repeat")}  # the repeat rides along with something new
    assert book.con.execute("SELECT last_mailed FROM warning_nights WHERE night = ? AND rule_id = 'slow'", [day(11)]).fetchone()[0] == day(11)


def test_the_odds_behind_a_warning_come_from_the_last_backtest_and_stay_hidden_before_one(book):
    from datetime import date

    from loyalty_engine.backtest import Backtest, store_figures
    from pathlib import Path

    from loyalty_engine.mail.digest import render_digests
    from loyalty_engine.mail.mailing import odds

    book.night(1, {("D", "smaller")})
    apply_budget(book.con, day(1), 5)
    [before] = night_mailing(book.con, book.ruleset, day(1), "de", []).warnings
    assert before.odds == ""  # no backtest yet: no odds
    figures = dict(nights_fired=30, accounts_flagged=130, emails_per_owner_week=1.0, precision=0.38, too_late=3, recall=0.5,
                   median_lead_days=20.0, outcome_known=120, lost_after_warning=46, lost_in_range=50, caught=25)
    backtest = Backtest(date(2025, 12, 1), date(2026, 11, 30), date(2026, 11, 30), 365, 2,
                        [{"rule_id": "smaller", "mode": "live", **figures}], figures)
    store_figures(book.con, backtest, Path("rules"))
    mailing = night_mailing(book.con, book.ruleset, day(1), "de", [], horizon_days=180)
    [warning] = mailing.warnings
    # Anna reads English (most of her accounts say so).
    assert warning.odds == "Of the 120 accounts this rule warned in the last backtest (1 Dec 2025 – 30 Nov 2026), 38% were lost within 6 months."
    [digest] = render_digests(mailing.warnings, day(1), "fw@example.com", "de")
    assert warning.odds in digest.message.get_body(("plain",)).get_content()
    # German, with its plural forms (CLDR through Babel).
    row = {"outcome_known": 1, "lost_after_warning": 1, "first_night": date(2025, 12, 1), "last_night": date(2026, 11, 30)}
    assert odds(row, "de", 30) == "Von 1 Kunden, den diese Regel im letzten Backtest (01.12.2025 – 30.11.2026) gewarnt hat, ging 100\u00a0% innerhalb von einem Monat verloren."
    assert odds(row | {"outcome_known": 120, "lost_after_warning": 46}, "de", 180) == (
        "Von den 120 Kunden, die diese Regel im letzten Backtest (01.12.2025 – 30.11.2026) gewarnt hat, gingen 38\u00a0% innerhalb von 6 Monaten verloren.")
    assert odds(row | {"outcome_known": 0}, "de", 180) == ""
