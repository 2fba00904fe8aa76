"""Every way a rule file can be wrong gets one line naming file:line:column; each message is pinned
by a *.bad.yaml fixture beside the text it must produce (*.error, FILE standing for the path)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import duckdb
import pytest

from loyalty_engine import api
from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.kinds import KINDS
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import ROOT

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
BAD = sorted((ROOT / "tests" / "fixtures" / "bad_rules").glob("*.bad.yaml"))


def expected_lines(fixture: Path, path: Path) -> list[str]:
    """What `loyalty rules check` must print for the fixture: its *.errors (every problem, one a
    line, in file order), else its one-line *.error."""
    every = fixture.with_name(fixture.name.replace(".bad.yaml", ".errors"))
    one = every.with_suffix(".error")
    text = (every if every.exists() else one).read_text(encoding="utf-8")
    return [line.replace("FILE", str(path)) for line in text.strip().splitlines()]


@pytest.mark.parametrize("fixture", BAD, ids=[p.name.removesuffix(".bad.yaml") for p in BAD])
def test_bad_rule_file_gets_its_one_line_error(fixture, tmp_path):
    """The nightly run refuses the rules with one line: the first problem `rules check` lists."""
    path = tmp_path / "rule.yaml"
    shutil.copy(fixture, path)
    with pytest.raises(RuleError) as error:
        prove_rules(load_rules(tmp_path), date(2026, 11, 23))
    assert str(error.value) == expected_lines(fixture, path)[0]
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("fixture", BAD, ids=[p.name.removesuffix(".bad.yaml") for p in BAD])
def test_rules_check_lists_every_problem_of_the_file(fixture, tmp_path):
    """`loyalty rules check` (its api function): every problem of every rule, one line each, in file order."""
    path = tmp_path / "rule.yaml"
    shutil.copy(fixture, path)
    check = api.rules_check([tmp_path])
    assert [str(problem) for problem in check.problems] == expected_lines(fixture, path)


def test_rules_check_prints_every_problem_at_once_and_exits_1(tmp_path):
    """Through the real command: one line per problem on stderr, a count, exit 1, no traceback."""
    fixture = ROOT / "tests" / "fixtures" / "bad_rules" / "every_problem_of_a_rule.bad.yaml"
    path = tmp_path / "rule.yaml"
    shutil.copy(fixture, path)
    result = subprocess.run([LOYALTY, "rules", "check", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    expected = expected_lines(fixture, path)
    assert result.stderr.splitlines() == [*expected, f"{len(expected)} problems in 1 rule file"]
    assert "Traceback" not in result.stderr and result.stdout == ""


CATALOGUE = {
    "falling_order_frequency", "falling_order_value", "order_gap_beyond_rhythm", "sudden_zero_complaints",
    "complaint_spike", "falling_inquiries", "escalation_to_supervisor", "contact_person_changed",
    "competitor_mentioned", "owner_contact_thinning", "shorter_contracts", "smaller_contract_value", "nps_detractor",
}  # fmt: skip


def test_the_catalogue_ships_every_warning_sign_with_both_languages():
    ruleset = load_rules(ROOT / "rules")
    assert {r.id for r in ruleset.rules} == CATALOGUE
    for rule in ruleset.rules:
        for texts in (rule.title, rule.message, rule.action):
            assert set(texts) == {"de", "en"} and all(text.strip() for text in texts.values()), rule.id


def test_a_night_with_every_shipped_rule_scans_each_table_once():
    """All metrics of a table come from one grouped scan, all rules from one query: the plan
    reads each table once, however many rules and nights (here the 2 that `for:` needs)."""
    compiled = compile_rules(load_rules(ROOT / "rules"), [date(2026, 11, 22), date(2026, 11, 23)])
    with duckdb.connect() as con:
        for table in TABLES.values():
            con.execute(table.create_sql())
        plan = con.execute("EXPLAIN " + compiled.sql).fetchall()[0][1]
    assert Counter(re.findall(r"Table: memory\.main\.(\w+)", plan)) == {name: 1 for name in TABLES}


def test_the_same_rules_generate_for_another_engine():
    """Trees, not strings: each shipped rule's query transpiles to Trino without DuckDB-only
    constructs, except exactly the rules that read a kind the registry marks as DuckDB-only
    (LGAMMA, which neither Trino nor Spark has, and list lambdas)."""
    import dataclasses
    import re

    import sqlglot

    ruleset = load_rules(ROOT / "rules")
    duckdb_only = {m.name for m in ruleset.metrics.values() if not KINDS[m.kind].portable}
    texts = lambda rule: " ".join([rule.when, rule.resolve_when or "", *rule.values.values()])  # noqa: E731
    needs_duckdb = set()
    for rule in ruleset.rules:
        sql = compile_rules(dataclasses.replace(ruleset, rules=[rule]), date(2026, 11, 23)).sql
        trino = sqlglot.transpile(sql, read="duckdb", write="trino", unsupported_level=sqlglot.ErrorLevel.RAISE)[0]
        assert "ROW_NUMBER() OVER" in trino or "FILTER" in trino.upper(), rule.id
        if "LGAMMA(" in trino.upper():
            needs_duckdb.add(rule.id)
    reading = {rule.id for rule in ruleset.rules if any(re.search(rf"\b{name}\b", texts(rule)) for name in duckdb_only)}
    assert needs_duckdb == reading and len(reading) < len(ruleset.rules)


def test_a_disabled_rule_is_not_evaluated(tmp_path):
    text = (ROOT / "rules" / "contracts.yaml").read_text(encoding="utf-8")
    (tmp_path / "contracts.yaml").write_text(text.replace("severity: medium", "severity: medium\n    enabled: false", 1))
    sql = compile_rules(load_rules(tmp_path), date(2026, 11, 23)).sql
    assert "shorter_contracts.fired" not in sql and "smaller_contract_value.fired" in sql


def test_rule_ids_are_unique_across_files(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        shutil.copy(ROOT / "rules" / "contracts.yaml", tmp_path / name)
    with pytest.raises(RuleError, match=r"b.yaml:\d+:\d+: rule id 'shorter_contracts' is already used at .*a.yaml:\d+:\d+"):
        load_rules(tmp_path)
