"""Hysteresis and params in rule files: `loyalty rules test` cases (YAML, as in rules/*.test.yaml)
with a flapping account, and `explain` saying why a warning fires on a night its condition
does not hold."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules.explain import explain_account, render
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.rules.testing import run_rule_tests

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
    message: "{{ orders_week }} orders this week, {{ enough }} needed"
    action: a
"""
TESTS = """
tests:
  - name: a flapping account (no order, order, no order, order) stays one warning
    nights: [2026-11-20, 2026-11-21, 2026-11-22, 2026-11-23]
    orders:
      - {account_id: FLAP, order_date: 2026-11-21}
      - {account_id: FLAP, order_date: 2026-11-23}
    expect:
      - {account: FLAP, rule: lingering}
      - {account: FLAP, rule: sticky, values: {orders_week: 2, enough: 4}}
  - name: keep_firing_for ends on the third calm night; resolve_when once the account is back
    nights: [2026-11-19, 2026-11-20, 2026-11-21, 2026-11-22]
    orders:
      - {account_id: BACK, every: 1d, from: 2026-11-20, until: 2026-11-22}
    expect:
      - {account: BACK, rule: sticky, values: {orders_week: 3}}
  - name: four orders in the week resolve it
    nights: [2026-11-19, 2026-11-20, 2026-11-21, 2026-11-22, 2026-11-23]
    orders:
      - {account_id: BACK, every: 1d, from: 2026-11-20, until: 2026-11-23}
    expect: []
"""


def test_rule_tests_see_hysteresis_over_their_nights(tmp_path):
    (tmp_path / "h.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "h.test.yaml").write_text(TESTS, encoding="utf-8")
    results = run_rule_tests(tmp_path / "h.test.yaml")
    assert [(r.name, r.missing, r.unexpected, r.wrong_values) for r in results if not r.passed] == []


def test_without_hysteresis_the_flapping_account_is_quiet_on_a_night_with_an_order(tmp_path):
    (tmp_path / "h.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "h.test.yaml").write_text(TESTS.replace("      - {account: FLAP, rule: lingering}\n", "      - {account: FLAP, rule: plain}\n"), encoding="utf-8")
    first = run_rule_tests(tmp_path / "h.test.yaml")[0]
    assert first.missing == ["plain for FLAP"]
    assert first.unexpected == ["lingering for FLAP (orders_tonight = 1)"]


def test_explain_says_why_a_warning_fires_when_its_condition_does_not_hold(tmp_path):
    (tmp_path / "h.yaml").write_text(RULES, encoding="utf-8")
    ruleset = load_rules(tmp_path)
    night = date(2026, 11, 23)
    with duckdb.connect() as con:
        for table in TABLES.values():
            con.execute(table.create_sql())
        con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES ('FLAP', 'Flap', 'a@example.com', 'A', 'active')")
        for back in (0, 2):
            con.execute("INSERT INTO orders VALUES (?, 'FLAP', ?, 100, 'EUR')", [f"O{back}", night - timedelta(days=back)])
        explained = explain_account(con, ruleset, "FLAP", night, set())
    outcomes = {item.rule.id: item.outcome for item in explained.rules}
    assert outcomes == {
        "plain": "quiet",
        "lingering": "fires: kept firing for up to 2 nights after its condition last held",
        "sticky": "fires: kept firing until resolve_when holds (not yet tonight)",
    }
    text = render(explained)
    assert "  resolve when orders_week >= enough" in text and "  keep firing for 2 nights after it last held" in text
    assert "sticky (high): FIRES: kept firing until resolve_when holds (not yet tonight)" in text
    assert "enough" in {name for name, _, _ in explained.rules[2].numbers}


PARAM_TESTS = """
tests:
  - name: two orders this week are not enough at the file's threshold
    nights: [2026-11-22, 2026-11-23]
    orders:
      - {account_id: FLAP, order_date: 2026-11-21}
      - {account_id: FLAP, order_date: 2026-11-23}
    expect:
      - {account: FLAP, rule: sticky}
      - {account: FLAP, rule: lingering}
  - name: at enough = 2 they resolve it
    params: {sticky: {enough: 2}}
    nights: [2026-11-22, 2026-11-23]
    orders:
      - {account_id: FLAP, order_date: 2026-11-21}
      - {account_id: FLAP, order_date: 2026-11-23}
    expect:
      - {account: FLAP, rule: lingering}
"""


def test_a_rule_test_can_set_params_and_they_vary_the_outcome(tmp_path):
    (tmp_path / "h.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "h.test.yaml").write_text(PARAM_TESTS, encoding="utf-8")
    results = run_rule_tests(tmp_path / "h.test.yaml")
    assert [(r.name, r.missing, r.unexpected) for r in results if not r.passed] == []


@pytest.mark.parametrize("params, error", [
    ("{sticky: {enogh: 2}}", "h.test.yaml:3:30: rule 'sticky' has no param 'enogh' (did you mean 'enough'?) (its params: enough)"),
    ("{sticky: {enough: two}}", "h.test.yaml:3:31: param 'enough' must be a number, got 'two'"),
    ("{stiky: {enough: 2}}", "h.test.yaml:3:21: rule 'stiky' is not a rule of h.yaml"),
    ("{plain: {enough: 2}}", "h.test.yaml:3:30: rule 'plain' has no param 'enough' (its params: none)"),
])
def test_a_rule_tests_params_name_the_rules_params(tmp_path, params, error):
    (tmp_path / "h.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "h.test.yaml").write_text(f"tests:\n  - name: x\n    params: {params}\n    night: 2026-11-23\n    expect: []\n", encoding="utf-8")
    with pytest.raises(RuleError) as raised:
        run_rule_tests(tmp_path / "h.test.yaml")
    assert str(raised.value).replace(str(tmp_path) + "/", "") == error
