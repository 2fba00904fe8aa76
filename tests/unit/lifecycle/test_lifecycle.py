"""The warning lifecycle, night by night: pending, firing, repeat, resolved; snoozes, inhibition,
nights without data. The night's signals are written straight into the database, so each case
says exactly which conditions held on which night."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pytest

from loyalty_engine import store
from loyalty_engine.contract import TABLES
from loyalty_engine.lifecycle.warnings import advance_warnings
from loyalty_engine.lifecycle.routing import route_warnings
from loyalty_engine.rules.evaluate import NightOutcome
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.lifecycle.snoozes import Snooze

RULES = """
metrics:
  orders_recent: {count: orders, window: 90d}
rules:
  - {id: slow, severity: high, when: orders_recent < 5, for: 2 nights, title: t, message: m, action: a}
  - {id: stopped, severity: critical, when: orders_recent = 0, inhibits: [smaller], title: t, message: m, action: a}
  - {id: smaller, severity: medium, when: orders_recent < 9, title: t, message: m, action: a}
"""
DAY1 = date(2026, 11, 2)


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


class Book:
    """A database with accounts, and a way to play one night's signals through the lifecycle."""

    def __init__(self, folder):
        (folder / "rules").mkdir()
        (folder / "rules" / "r.yaml").write_text(RULES, encoding="utf-8")
        self.ruleset = load_rules(folder / "rules")
        self.con = store.connect(folder / "loyalty.duckdb")
        self.con.execute(TABLES["accounts"].create_sql())
        self.con.execute(
            """INSERT INTO accounts (account_id, name, owner_email, owner_name, status, supervisor_email) VALUES
               ('A', 'Alpha', 'anna@example.com', 'Anna', 'active', 'chefin@example.com'),
               ('B', 'Beta', NULL, NULL, 'active', NULL),
               ('C', 'Gamma', 'carl@example.com', 'Carl', 'active', NULL)"""
        )

    def night(self, n: int, held: set[tuple[str, str]], unknown=(), skipped=(), snoozes=(), repeat=7) -> dict:
        """Play night n: `held` (account, rule) signals; returns (account, rule) -> (state, notice, mailed)."""
        self.con.execute("DELETE FROM signals WHERE night = ?", [day(n)])
        for account, rule in held:
            severity = next(r.severity for r in self.ruleset.rules if r.id == rule)
            self.con.execute("INSERT INTO signals VALUES (?, ?, ?, ?, '{}')", [day(n), account, rule, severity])
        table = pa.table({"account_id": pa.array([u[0] for u in unknown], pa.string()), "rule_id": pa.array([u[1] for u in unknown], pa.string())})
        self.con.register("unknown_input", table)
        self.con.execute("CREATE OR REPLACE TEMP TABLE night_unknown AS SELECT * FROM unknown_input")
        self.con.unregister("unknown_input")
        outcome = NightOutcome(skipped={rule: "needs an absent table" for rule in skipped})
        advance_warnings(self.con, self.ruleset, day(n), outcome, list(snoozes), repeat)
        route_warnings(self.con, day(n))
        rows = self.con.execute(
            "SELECT account_id, rule_id, state, notice, mailed FROM warning_nights WHERE night = ?", [day(n)]
        ).fetchall()
        return {(a, r): (state, notice, mailed) for a, r, state, notice, mailed in rows}


@pytest.fixture
def book(tmp_path):
    book = Book(tmp_path)
    yield book
    book.con.close()


def test_for_two_nights_then_new_then_quiet_then_repeat_then_resolved_once(book):
    slow = ("A", "slow")
    assert book.night(1, {slow})[slow] == ("pending", "pending", False)
    assert book.night(2, {slow})[slow] == ("firing", "new", True)
    for n in range(3, 9):  # mailed on night 2: quiet until 7 days have passed
        assert book.night(n, {slow})[slow] == ("firing", "open", False), n
    assert book.night(9, {slow})[slow] == ("firing", "repeat", True)
    assert book.night(10, {slow})[slow] == ("firing", "open", False)
    assert book.night(11, set())[slow] == ("resolved", "resolved", True)
    assert slow not in book.night(12, set())


def test_a_night_not_evaluated_neither_advances_nor_resets(book):
    slow = ("A", "slow")
    book.night(1, {slow})
    # Nights 2 and 3 are not evaluated at all (no extract): night 4 continues from night 1.
    assert book.night(4, {slow})[slow] == ("firing", "new", True)


def test_a_pending_warning_that_stops_holding_lapses(book):
    slow = ("A", "slow")
    book.night(1, {slow})
    assert slow not in book.night(2, set())
    assert book.night(3, {slow})[slow] == ("pending", "pending", False)


def test_no_data_a_missing_account_or_an_absent_table_keep_the_state(book):
    slow = ("A", "slow")
    book.night(1, {slow})
    book.night(2, {slow})
    assert book.night(3, set(), unknown=[slow])[slow] == ("firing", "kept", False)
    assert book.night(4, set(), skipped=["slow"])[slow] == ("firing", "kept", False)
    book.con.execute("DELETE FROM accounts WHERE account_id = 'A'")
    assert book.night(5, set())[slow] == ("firing", "kept", False)
    book.con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES ('A', 'Alpha', 'anna@example.com', 'Anna', 'active')")
    # Still firing when it is judged again: mailed on night 2, so not new, and not yet due.
    assert book.night(6, {slow})[slow] == ("firing", "open", False)
    assert book.night(7, set())[slow] == ("resolved", "resolved", True)


def test_a_closed_account_ends_its_warnings_without_mail(book):
    stopped = ("A", "stopped")
    book.night(1, {stopped})
    book.con.execute("UPDATE accounts SET status = 'closed' WHERE account_id = 'A'")
    assert book.night(2, set())[stopped] == ("resolved", "inhibited", False)


def test_a_snoozed_warning_is_kept_but_not_mailed_and_comes_back_as_new(book):
    stopped = ("C", "stopped")
    snooze = Snooze(1, "C", None, day(4), "Werksferien", "anna")
    assert book.night(1, {stopped})[stopped] == ("firing", "new", True)
    for n in (2, 3, 4):  # up to and including the snooze's last night
        assert book.night(n, {stopped}, snoozes=[snooze])[stopped] == ("firing", "snoozed", False)
    assert book.night(5, {stopped}, snoozes=[snooze])[stopped] == ("firing", "new", True)
    reason = book.con.execute("SELECT reason FROM warning_nights WHERE night = ? AND rule_id = 'stopped'", [day(3)]).fetchone()[0]
    assert reason == "snooze 1 until 2026-11-05: Werksferien (anna)"


def test_a_snooze_of_one_rule_leaves_the_others(book):
    snooze = Snooze(1, "C", "smaller", day(9), "Umbau")
    tonight = book.night(1, {("C", "smaller"), ("C", "slow")}, snoozes=[snooze])
    assert tonight[("C", "smaller")][1] == "snoozed" and tonight[("C", "slow")][1] == "pending"


def test_resolving_while_snoozed_or_never_told_is_not_mailed(book):
    stopped = ("C", "stopped")
    snooze = Snooze(1, "C", None, day(9), "Umbau")
    book.night(1, {stopped}, snoozes=[snooze])
    assert book.night(2, set(), snoozes=[snooze])[stopped] == ("resolved", "resolved", False)


def test_a_stronger_rule_hides_a_weaker_one_until_it_resolves(book):
    stopped, smaller = ("C", "stopped"), ("C", "smaller")
    tonight = book.night(1, {stopped, smaller})
    assert tonight[stopped][1:] == ("new", True) and tonight[smaller][1:] == ("inhibited", False)
    tonight = book.night(2, {smaller})
    assert tonight[stopped][1:] == ("resolved", True) and tonight[smaller][1:] == ("new", True)


def test_routing_owner_ops_and_supervisor(book):
    book.night(1, {("A", "stopped"), ("A", "smaller"), ("B", "smaller")})
    rows = book.con.execute(
        "SELECT account_id, rule_id, recipient, route_reason, cc FROM warning_nights WHERE night = ? ORDER BY 1, 2", [day(1)]
    ).fetchall()
    assert rows == [
        ("A", "smaller", "anna@example.com", None, None),
        ("A", "stopped", "anna@example.com", None, "chefin@example.com"),  # critical: the supervisor too
        ("B", "smaller", None, "no_owner_address", None),  # a RouteReason; i18n has the words
    ]


def test_re_running_a_night_gives_the_same_result(book):
    book.night(1, {("A", "slow")})
    first = book.night(2, {("A", "slow")})
    assert book.night(2, {("A", "slow")}) == first
