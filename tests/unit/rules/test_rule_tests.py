"""`loyalty rules test`: YAML rule tests beside the rules, like `promtool test rules`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loyalty_engine.errors import RuleError
from loyalty_engine.rules.testing import run_rule_tests
from tests.support.builders import ROOT


@pytest.fixture
def rules(tmp_path) -> Path:
    shutil.copy(ROOT / "rules" / "orders.yaml", tmp_path / "orders.yaml")
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "orders.test.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_wrong_expectation_fails_with_a_diff(rules):
    path = write(rules, """\
tests:
  - name: wrong on purpose
    nights: [2026-11-21, 2026-11-22, 2026-11-23]
    orders:
      - {account_id: A, every: 7d, from: 2025-11-03, until: 2026-02-28}
      - {account_id: A, every: 14d, from: 2026-03-07, until: 2026-06-30}
      - {account_id: A, every: 30d, from: 2026-07-12, until: 2026-11-10}
      - {account_id: W, every: 7d, from: 2025-01-05, until: 2026-09-28}
    expect:
      - {account: A, rule: falling_order_frequency, values: {orders_recent: 4}}
      - {account: A, rule: falling_order_value}
""")
    [result] = run_rule_tests(path)
    assert not result.passed and str(result.where) == f"{path}:2:5"
    assert result.missing == ["falling_order_value for A"]
    assert result.wrong_values == ["falling_order_frequency for A: orders_recent = 3, expected 4"]
    assert result.unexpected == [
        "order_gap_beyond_rhythm for W (days_since_order = 57, orders_two_years = 91, silence_unusual = 0, usual_order_gap = 7)"
    ]


@pytest.mark.parametrize("case, error", [
    ("night: 2026-11-23\n    orders:\n      - {account_id: A, order_date: 2026-12-01}\n    expect: []",
     "4:9: orders row dated 2026-12-01 lies after the last night 2026-11-23: the test cannot see it"),
    ("night: 2026-11-23\n    orders:\n      - {account_id: A, order_date: 2026-01-01}\n    expect:\n      - {account: A, rule: falling_order_frequency}",
     "2:12: rule 'falling_order_frequency' needs for: 3 nights, the test evaluates 1; list that many nights"),
    ("nights: [2026-11-20, 2026-11-23]\n    expect: []", "2:13: nights must follow one another day by day"),
    ("orders: []\n    expect: []", "2:5: a test needs night: YYYY-MM-DD or nights: [YYYY-MM-DD, …]"),
    ("night: 2026-11-23\n    orders:\n      - {account_id: A, order_date: 2026-01-01, amout: 5}\n    expect: []",
     "4:56: unknown key 'amout' (did you mean 'amount'?)"),
    ("night: 2026-11-23\n    expect:\n      - {account: A, rule: nps_detractor}", "4:28: rule 'nps_detractor' is not an enabled rule of orders.yaml"),
])  # fmt: skip
def test_a_test_that_cannot_test_anything_is_an_error_not_a_pass(rules, case, error):
    path = write(rules, "tests:\n  - " + case + "\n")
    with pytest.raises(RuleError) as raised:
        run_rule_tests(path)
    assert str(raised.value).startswith(f"{path}:") and error in str(raised.value)
