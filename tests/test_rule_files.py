"""Every way a rule file can be wrong gets one line naming file:line:column; each message is pinned
by a *.bad.yaml fixture beside the text it must produce (*.error, FILE standing for the path)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from loyalty_engine.errors import RuleError
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.loader import load_rules
from tests.conftest import ROOT

BAD = sorted((Path(__file__).parent / "fixtures" / "bad_rules").glob("*.bad.yaml"))


@pytest.mark.parametrize("fixture", BAD, ids=[p.name.removesuffix(".bad.yaml") for p in BAD])
def test_bad_rule_file_gets_its_one_line_error(fixture, tmp_path):
    path = tmp_path / "rule.yaml"
    shutil.copy(fixture, path)
    expected = fixture.with_name(fixture.name.replace(".bad.yaml", ".error")).read_text(encoding="utf-8").strip()
    with pytest.raises(RuleError) as error:
        prove_rules(load_rules(tmp_path), date(2026, 11, 23))
    assert str(error.value) == expected.replace("FILE", str(path))
    assert "\n" not in str(error.value)


def test_shipped_rules_compile_and_state_their_thresholds_as_data():
    ruleset = load_rules(ROOT / "rules")
    assert [r.id for r in ruleset.rules] == ["falling_order_frequency", "shorter_contracts", "sudden_zero_complaints"]
    compiled = compile_rules(ruleset, date(2026, 11, 23))
    assert "BETWEEN CAST('2025-08-26' AS DATE) AND CAST('2026-08-25' AS DATE)" in compiled.sql  # D-454 … D-90
    assert "BETWEEN CAST('2026-08-26' AS DATE) AND CAST('2026-11-23' AS DATE)" in compiled.sql  # D-89 … D


def test_the_same_rules_generate_for_another_engine():
    """Trees, not strings: the night's query transpiles to Trino without DuckDB-only constructs."""
    import sqlglot

    sql = compile_rules(load_rules(ROOT / "rules"), date(2026, 11, 23)).sql
    trino = sqlglot.transpile(sql, read="duckdb", write="trino", unsupported_level=sqlglot.ErrorLevel.RAISE)[0]
    assert "ROW_NUMBER() OVER" in trino and "FILTER" in trino.upper()


def test_a_disabled_rule_is_not_evaluated(tmp_path):
    text = (ROOT / "rules" / "shorter_contracts.yaml").read_text(encoding="utf-8")
    (tmp_path / "shorter_contracts.yaml").write_text(text.replace("severity: medium", "severity: medium\n    enabled: false"))
    assert "shorter_contracts.fired" not in compile_rules(load_rules(tmp_path), date(2026, 11, 23)).sql


def test_rule_ids_are_unique_across_files(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        shutil.copy(ROOT / "rules" / "shorter_contracts.yaml", tmp_path / name)
    with pytest.raises(RuleError, match=r"b.yaml:\d+:\d+: rule id 'shorter_contracts' is already used at .*a.yaml:\d+:\d+"):
        load_rules(tmp_path)
