"""Hysteresis: `keep_firing_for` and `resolve_when` keep a flapping warning one warning. Played
on real order rows through the nightly evaluation and the lifecycle, night by night, and the
backtest's replay of the same nights must agree with it warning for warning."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from loyalty_engine import store
from loyalty_engine.backtest import run_backtest
from loyalty_engine.config import BacktestSettings
from loyalty_engine.contract import TABLES
from loyalty_engine.lifecycle.warnings import advance_warnings
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.evaluate import NightOutcome, evaluate_rules
from loyalty_engine.rules.loader import load_rules

DAY1 = date(2026, 11, 2)
# One rule three ways: no order on the night itself. `plain` resolves the first night with an
# order; `lingering` keeps firing 2 nights after its condition last held; `sticky` keeps firing
# until the account ordered on 4 of the last 7 nights.
RULES = """
metrics:
  orders_tonight: {count: orders, window: 1d}
  orders_week:    {count: orders, window: 7d}
rules:
  - {id: plain, severity: high, when: orders_tonight = 0, title: t, message: m, action: a}
  - {id: lingering, severity: high, when: orders_tonight = 0, keep_firing_for: 2 nights, title: t, message: m, action: a}
  - id: sticky
    severity: high
    params: {enough: 4}
    when: orders_tonight = 0
    resolve_when: orders_week >= enough
    title: t
    message: m
    action: a
"""
# Nights with an order (the condition does not hold), per account, over nights 1 … 12.
ORDERS = {
    "FLAP": [2, 4, 6],             # true/false/true/false/true/false/true …
    "BACK": [3, 4, 5, 6, 7, 8, 9],  # fires on 1-2, then orders every night
    "GAP": [2, 3, 4, 5],           # fires on 1, orders four nights, then stops again
}
NIGHTS = 12


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """Every night through evaluate_rules and advance_warnings; then the backtest of the same nights."""
    folder = tmp_path_factory.mktemp("hysteresis")
    (folder / "rules").mkdir()
    (folder / "rules" / "r.yaml").write_text(RULES, encoding="utf-8")
    ruleset = load_rules(folder / "rules")
    con = store.connect(folder / "loyalty.duckdb")
    for table in TABLES.values():
        con.execute(table.create_sql())
    for account, nights in ORDERS.items():
        con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES (?, ?, 'anna@example.com', 'Anna', 'active')", [account, account])
        con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}-old", account, day(1) - timedelta(days=400)])
        for n in nights:
            con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}{n}", account, day(n)])
    for n in range(1, NIGHTS + 1):
        outcome = evaluate_rules(con, ruleset, day(n))
        advance_warnings(con, ruleset, day(n), outcome, [], 30)
    nightly = con.execute("SELECT night, account_id, rule_id, state, notice, held_nights, reason FROM warning_nights ORDER BY ALL").fetchall()
    # What rule tests and explain see: the compiled `fired` over the same nights, from one extract.
    compiled = compile_rules(ruleset, [day(n) for n in range(1, NIGHTS + 1)])
    result = con.sql(compiled.sql)
    fired = {(row[1], row[0], rule.id) for row in result.fetchall() for rule in ruleset.rules if row[result.columns.index(f"{rule.id}.fired")]}
    for table in TABLES:
        con.execute("INSERT INTO loads VALUES (?, ?, 'x', 0, 0, now())", [day(NIGHTS), table])
    backtest = run_backtest(con, ruleset, BacktestSettings(), day(1), day(NIGHTS), repeat_after_days=30)
    con.close()
    return nightly, backtest, fired


def notices(nightly, account: str, rule: str) -> list[str]:
    """The night's notice per night 1 … NIGHTS ('-': no open warning)."""
    by_night = {night: notice for night, a, r, _, notice, _, _ in nightly if (a, r) == (account, rule)}
    return [by_night.get(day(n), "-") for n in range(1, NIGHTS + 1)]


def test_a_flapping_account_warns_again_and_again_without_hysteresis(played):
    nightly, _, _ = played
    flap = notices(nightly, "FLAP", "plain")
    assert flap[:8] == ["new", "resolved", "new", "resolved", "new", "resolved", "new", "open"]
    assert flap.count("new") == 4


def test_keep_firing_for_makes_it_one_warning(played):
    nightly, _, _ = played
    flap = notices(nightly, "FLAP", "lingering")
    assert flap == ["new"] + ["open"] * (NIGHTS - 1)
    # GAP: new on 1, kept on nights 2 and 3 (orders), resolved on 4 (the third calm night), new on 6.
    assert notices(nightly, "GAP", "lingering")[:7] == ["new", "open", "open", "resolved", "-", "new", "open"]
    kept = {(n, h, r) for n, a, rule, s, _, h, r in nightly if (a, rule) == ("GAP", "lingering") and n in (day(2), day(3))}
    assert kept == {
        (day(2), -1, "kept firing: night 1 of 2 after its condition last held"),
        (day(3), -2, "kept firing: night 2 of 2 after its condition last held"),
    }


def test_resolve_when_makes_it_one_warning_until_the_account_is_back(played):
    nightly, _, _ = played
    assert notices(nightly, "FLAP", "sticky") == ["new"] + ["open"] * (NIGHTS - 1)
    # BACK orders from night 3: four orders in the week on night 6, resolved then, once.
    assert notices(nightly, "BACK", "sticky")[:8] == ["new", "open", "open", "open", "open", "resolved", "-", "-"]
    reasons = {r for n, a, rule, *_, r in nightly if (a, rule) == ("BACK", "sticky") and n in (day(3), day(4), day(5))}
    assert reasons == {"kept firing: resolve_when does not hold yet"}
    # Without hysteresis the same account is told on night 1 and resolved on night 3.
    assert notices(nightly, "BACK", "plain")[:4] == ["new", "open", "resolved", "-"]


def test_the_backtest_replays_hysteresis_exactly_as_the_nights_ran(played):
    nightly, backtest, _ = played
    replayed = sorted((row["night"], row["account_id"], row["rule_id"], row["notice"]) for row in backtest.warnings.to_pylist())
    assert replayed == sorted((n, a, r, notice) for n, a, r, _, notice, _, _ in nightly)
    flagged = {r["rule_id"]: r["accounts_flagged"] for r in backtest.rules}
    assert flagged == {"plain": 3, "lingering": 3, "sticky": 3}



def test_the_compiled_fired_column_agrees_with_the_lifecycle(played):
    nightly, _, fired = played
    assert fired == {(n, a, r) for n, a, r, state, *_ in nightly if state == "firing"}


# --- the lifecycle alone: signals and resolve conditions written straight into the database ---


@pytest.fixture
def book(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(RULES, encoding="utf-8")
    ruleset = load_rules(tmp_path / "rules")
    con = store.connect(tmp_path / "loyalty.duckdb")
    con.execute(TABLES["accounts"].create_sql())
    con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES ('A', 'Alpha', 'anna@example.com', 'Anna', 'active')")

    def night(n: int, held=(), unknown=(), resolve=None) -> tuple:
        """Night n: rules in `held` held for A, `unknown` could not be judged; `resolve`: sticky's
        resolve condition (True, False or None for no data). Returns {rule: (state, held_nights)}."""
        con.execute("DELETE FROM signals WHERE night = ?", [day(n)])
        for rule in held:
            con.execute("INSERT INTO signals VALUES (?, 'A', ?, 'high', '{}')", [day(n), rule])
        con.execute("CREATE OR REPLACE TEMP TABLE night_unknown (account_id VARCHAR, rule_id VARCHAR)")
        for rule in unknown:
            con.execute("INSERT INTO night_unknown VALUES ('A', ?)", [rule])
        con.execute("CREATE OR REPLACE TEMP TABLE night_resolve (account_id VARCHAR, rule_id VARCHAR, resolves BOOLEAN)")
        if resolve is not True and "sticky" not in held:
            con.execute("INSERT INTO night_resolve VALUES ('A', 'sticky', ?)", [resolve])
        advance_warnings(con, ruleset, day(n), NightOutcome(), [], 30)
        rows = con.execute("SELECT rule_id, state, held_nights FROM warning_nights WHERE night = ?", [day(n)]).fetchall()
        return {rule: (state, held_nights) for rule, state, held_nights in rows}

    night.con = con
    yield night
    con.close()


def test_nights_without_data_neither_count_nor_break_keep_firing_for(book):
    assert book(1, held=["lingering"])["lingering"] == ("firing", 1)
    assert book(2)["lingering"] == ("firing", -1)
    assert book(3, unknown=["lingering"])["lingering"] == ("firing", -1)  # kept as it was
    assert book(4)["lingering"] == ("firing", -2)
    assert book(5)["lingering"] == ("resolved", 0)
    assert "lingering" not in book(6)


def test_holding_again_starts_the_calm_nights_over(book):
    book(1, held=["lingering"])
    book(2)
    book(3)
    assert book(4, held=["lingering"])["lingering"] == ("firing", 1)
    assert book(5)["lingering"] == ("firing", -1)


def test_resolve_when_no_data_keeps_and_a_closed_account_resolves_at_once(book):
    assert book(1, held=["sticky"])["sticky"] == ("firing", 1)
    assert book(2, resolve=False)["sticky"] == ("firing", 2)  # kept firing: counts as held
    assert book(3, resolve=None)["sticky"] == ("firing", 2)  # no data: kept as it was
    # Its own `when` could not be judged, but resolve_when, which judges it now, could.
    assert book(4, unknown=["sticky"], resolve=False)["sticky"] == ("firing", 3)
    book.con.execute("UPDATE accounts SET status = 'closed'")
    assert book(5, resolve=False) == {"sticky": ("resolved", 0)}


def test_a_closed_account_ends_keep_firing_for_at_once(book):
    book(1, held=["lingering"])
    book.con.execute("UPDATE accounts SET status = 'closed'")
    assert book(2) == {"lingering": ("resolved", 0)}


def test_resolve_when_resolves_even_when_its_when_has_no_data(book):
    book(1, held=["sticky"])
    assert book(2, unknown=["sticky"], resolve=True)["sticky"] == ("resolved", 0)
