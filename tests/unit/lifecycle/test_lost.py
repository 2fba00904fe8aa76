"""Lost accounts are told once (lifecycle/lost.py) on a real DuckDB file: silent beyond
backtest.lost, announced in the owner's next digest, their warnings held back while lost, active
again when they order; the same spells as the backtest's account_fates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty_engine.backtest import account_fates
from loyalty_engine.config import LostSettings
from loyalty_engine.contract import TABLES
from loyalty_engine.lifecycle.lost import announce_lost, mark_lost
from loyalty_engine.mail.budget import apply_budget
from loyalty_engine.mail.digest import render_digests
from loyalty_engine.mail.mailing import night_mailing
from tests.unit.lifecycle.test_lifecycle import Book, day

LOST = LostSettings(no_order_days=30, regular_orders=4)


@pytest.fixture
def book(tmp_path):
    book = Book(tmp_path)
    for name, table in TABLES.items():
        if name != "accounts":
            book.con.execute(table.create_sql())
    # A ordered weekly until 40 days before night 1: lost (30 silent days) already on night 1.
    # C ordered weekly until day(4) - 30: lost from night 4.
    for account, last in (("A", day(1) - timedelta(days=40)), ("C", day(4) - timedelta(days=30))):
        for week in range(10):
            when = last - timedelta(days=7 * week)
            book.con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}{week}", account, when])
    yield book
    book.con.close()


def play(book, n, held):
    """Night n as night.py runs it: lost accounts, lifecycle, routing, digest policy, announcement."""
    mark_lost(book.con, day(n), LOST)
    notices = book.night(n, held)
    apply_budget(book.con, day(n), 5)
    announce_lost(book.con, day(n))
    return notices


def test_a_lost_account_is_told_once_its_warnings_held_back_and_it_comes_back_when_it_orders(book):
    first = play(book, 1, {("A", "smaller"), ("C", "smaller")})
    # The first night: A already lost, the starting state (not news); its warning held back.
    assert first[("A", "smaller")][1:] == ("inhibited", False)
    assert book.con.execute("SELECT account_id, announced FROM lost_nights WHERE night = ?", [day(1)]).fetchall() == [("A", day(1))]
    play(book, 2, {("A", "smaller"), ("C", "smaller")})
    play(book, 3, {("A", "smaller"), ("C", "smaller")})
    # Night 4: C becomes lost; Carl has nothing new, so it waits for Carl's next digest.
    fourth = play(book, 4, {("A", "smaller"), ("C", "smaller")})
    assert fourth[("C", "smaller")][1:] == ("inhibited", False)
    assert book.con.execute("SELECT account_id, announced FROM lost_nights WHERE night = ? ORDER BY 1", [day(4)]).fetchall() == [("A", day(1)), ("C", None)]
    assert night_mailing(book.con, book.ruleset, day(4), "de", []).lost == {}
    # Night 5: something new for Carl (a warning of his other account): the digest announces C.
    book.con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES ('K', 'Kappa', 'carl@example.com', 'Carl', 'active')")
    play(book, 5, {("A", "smaller"), ("C", "smaller"), ("K", "smaller")})
    mailing = night_mailing(book.con, book.ruleset, day(5), "en", [], silent_days=30)
    assert [(a.account_id, a.last_order) for a in mailing.lost["carl@example.com"]] == [("C", day(4) - timedelta(days=30))]
    [digest] = render_digests([w for w in mailing.warnings if w.recipient == "carl@example.com"], day(5), "fw@example.com", "en", lost=mailing.lost)
    text = digest.message.get_body(("plain",)).get_content()
    assert "== Lost accounts ==" in text and "- Gamma (C): no order since" in text and "No order for 30 days" in text
    # Re-running night 5 announces it again on that night only; night 6 does not.
    play(book, 5, {("A", "smaller"), ("C", "smaller"), ("K", "smaller")})
    assert book.con.execute("SELECT announced FROM lost_nights WHERE night = ? AND account_id = 'C'", [day(5)]).fetchone() == (day(5),)
    play(book, 6, {("A", "smaller"), ("C", "smaller"), ("K", "smaller"), ("K", "slow")})
    assert night_mailing(book.con, book.ruleset, day(6), "de", []).lost == {}
    # C orders again: active again, its warning still firing is new to Carl.
    book.con.execute("INSERT INTO orders VALUES ('C-back', 'C', ?, 100, 'EUR')", [day(7)])
    seventh = play(book, 7, {("C", "smaller")})
    assert seventh[("C", "smaller")][1:] == ("new", True)
    assert book.con.execute("SELECT account_id FROM lost_nights WHERE night = ?", [day(7)]).fetchall() == [("A",)]


def test_the_backtest_calls_the_same_accounts_lost(book):
    account_fates(book.con, LOST, day(4))
    fates = dict(book.con.execute("SELECT account_id, lost_on FROM account_fates WHERE lost_how = 'stopped'").fetchall())
    mark_lost(book.con, day(4), LOST)
    nightly = dict(book.con.execute("SELECT account_id, last_order FROM night_lost").fetchall())
    assert fates == nightly and set(nightly) == {"A", "C"}
