"""Rules name their thresholds (`params:`): the condition reads them by name, the SQL has them as
numbers, `with_variants` evaluates many combinations in one query, and `explain` shows them."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules.compiler import compile_rules, with_variants
from loyalty_engine.rules.explain import explain_account, render
from loyalty_engine.rules.loader import load_rules

NIGHT = date(2026, 11, 23)
RULES = """
metrics:
  orders_recent: {count: orders, window: 90d}
rules:
  - id: few_orders
    severity: high
    params: {floor: 3, share: 0.5}
    when: orders_recent < floor and orders_recent >= share
    values: {missing: floor - orders_recent}
    title: t
    message: "{{ orders_recent }} orders, fewer than {{ floor }}"
    action: a
"""
# Orders in the last 90 days per account.
ORDERS = {"NONE": 0, "TWO": 2, "FIVE": 5}


@pytest.fixture
def ruleset(tmp_path):
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    return load_rules(tmp_path)


@pytest.fixture
def con():
    with duckdb.connect() as con:
        for table in TABLES.values():
            con.execute(table.create_sql())
        for account, orders in ORDERS.items():
            con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES (?, ?, 'a@example.com', 'A', 'active')", [account, account])
            for n in range(orders):
                con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}{n}", account, NIGHT - timedelta(days=10 * n)])
        yield con


def rows(con, compiled) -> dict[str, dict]:
    result = con.sql(compiled.sql)
    return {row[0]: dict(zip(result.columns, row)) for row in result.fetchall()}


def test_params_are_read_by_name_and_compiled_as_numbers(con, ruleset):
    assert ruleset.rules[0].params == {"floor": 3, "share": 0.5}
    compiled = compile_rules(ruleset, NIGHT)
    assert "floor" not in compiled.sql.replace('"few_orders.floor"', "")
    found = rows(con, compiled)
    assert {a for a, r in found.items() if r["few_orders.fired"]} == {"TWO"}
    # A param the texts print is part of the evidence, as the number it was.
    assert "floor" in compiled.evidence["few_orders"] and found["TWO"]["few_orders.floor"] == 3
    assert found["TWO"]["few_orders.missing"] == 1


def test_variants_vary_the_outcome_in_one_query(con, ruleset):
    variants = with_variants(ruleset, "few_orders", [{"floor": 1}, {"floor": 3}, {"floor": 6}, {"floor": 6, "share": 0}])
    assert [r.id for r in variants.rules] == [f"few_orders@{n}" for n in range(4)]
    compiled = compile_rules(variants, NIGHT)
    assert compiled.sql.count("orders_metrics AS") == 1  # the metrics once, every combination a column
    found = rows(con, compiled)
    fired = {rule.id: {a for a, r in found.items() if r[f"{rule.id}.fired"]} for rule in variants.rules}
    assert fired == {"few_orders@0": set(), "few_orders@1": {"TWO"}, "few_orders@2": {"TWO", "FIVE"}, "few_orders@3": {"NONE", "TWO", "FIVE"}}
    # The file's rule is untouched.
    assert ruleset.rules[0].params == {"floor": 3, "share": 0.5}


def test_a_variant_names_only_the_rules_params_as_numbers(ruleset):
    with pytest.raises(RuleError, match=r"rule 'few_orders' has no param 'flor' \(did you mean 'floor'\?\) \(its params: floor, share\)"):
        with_variants(ruleset, "few_orders", [{"flor": 2}])
    with pytest.raises(RuleError, match="must be a number"):
        with_variants(ruleset, "few_orders", [{"floor": "2"}])
    with pytest.raises(RuleError, match="unknown rule 'few_order'"):
        with_variants(ruleset, "few_order", [{"floor": 2}])


def test_a_negative_param_compiles(con, tmp_path):
    (tmp_path / "r.yaml").write_text(RULES.replace("share: 0.5", "share: -1").replace("floor: 3", "floor: 1.5"), encoding="utf-8")
    found = rows(con, compile_rules(load_rules(tmp_path), NIGHT))
    assert {a for a, r in found.items() if r["few_orders.fired"]} == {"NONE"}


def test_explain_shows_params_by_name_with_their_values(con, ruleset):
    explained = explain_account(con, ruleset, "TWO", NIGHT, set())
    numbers = {name: (value, what) for name, value, what in explained.rules[0].numbers}
    assert numbers["floor"] == (3, "param")
    assert numbers["share"] == (0.5, "param")
    text = render(explained)
    assert "when orders_recent < floor and orders_recent >= share" in text
    assert "orders_recent < floor" in text and "2 < 3" in text


@pytest.mark.slow  # several CLI processes or a replay: seconds
def test_one_backtest_of_the_variants_equals_a_backtest_per_combination(tmp_path, ruleset):
    """What `loyalty tune` builds on: the variants replayed together give each combination the
    figures a backtest of the rule with those params alone gives."""
    import dataclasses

    from loyalty_engine import store
    from loyalty_engine.backtest import run_backtest
    from loyalty_engine.config import BacktestSettings
    from loyalty_engine.rules.loader import RuleSet

    con = store.connect(tmp_path / "loyalty.duckdb")
    for table in TABLES.values():
        con.execute(table.create_sql())
    first, last = NIGHT - timedelta(days=30), NIGHT
    for number in range(12):  # accounts whose orders thin out at different times
        account = f"A{number}"
        con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES (?, ?, 'a@example.com', 'A', 'active')", [account, account])
        for n in range(30):
            day = first - timedelta(days=120) + timedelta(days=n * (4 + number))
            if day <= last:
                con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}-{n}", account, day])
    for table in TABLES:
        con.execute("INSERT INTO loads VALUES (?, ?, 'x', 0, 0, now())", [last, table])
    combinations = [{"floor": floor, "share": share} for floor in (3, 9) for share in (0, 2)]
    together = run_backtest(con, with_variants(ruleset, "few_orders", combinations), BacktestSettings(), first, last)
    rule = ruleset.rules[0]
    for index, combination in enumerate(combinations):
        alone = run_backtest(con, RuleSet(ruleset.metrics, [dataclasses.replace(rule, params=combination)]), BacktestSettings(), first, last)
        figures = next(r for r in together.rules if r["rule_id"] == f"few_orders@{index}")
        assert {k: v for k, v in figures.items() if k not in ("rule_id",)} == {k: v for k, v in alone.rules[0].items() if k != "rule_id"}, combination
    assert len({r["accounts_flagged"] for r in together.rules}) > 1  # the params matter here
    con.close()
