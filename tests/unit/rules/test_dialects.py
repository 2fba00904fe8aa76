"""The one tree, generated for DuckDB and for Spark (rules/dialects.py): the Spark SQL of every
shipped rule holds none of the constructs Spark rejects, and each difference is one rewrite.
Fast: no Spark here (tests/system/test_spark_engine.py runs it)."""

from __future__ import annotations

import math
import re
from datetime import date, timedelta

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from loyalty_engine.errors import RuleError
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.dialects import for_dialect, log_gamma
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import ROOT

NIGHT = date(2028, 2, 29)
# What Spark 4.3 rejects or computes otherwise than DuckDB (issue 19's probe), as it would be written.
REJECTED = {
    "an interval mixing months and days": r"INTERVAL '[^']*months?[^']*days?",
    "median over a frame": r"\bMEDIAN\(",
    "count(DISTINCT) over a frame": r"COUNT\(DISTINCT",
    "DuckDB's list functions": r"\bLIST_\w+\(",
    "lgamma, which Spark lacks": r"\bLGAMMA\(",
    "DuckDB's lambda syntax": r"\bLAMBDA\b",
    "a frame ordered by a date": r"ORDER BY day\s+RANGE",
}


@pytest.fixture(scope="module")
def shipped():
    return load_rules(ROOT / "rules")


@pytest.mark.parametrize("nights", [1, 5, 30], ids=["one night", "joined", "streamed"])
def test_spark_sql_of_the_shipped_rules_holds_nothing_spark_rejects(shipped, nights):
    sql = compile_rules(shipped, [NIGHT - timedelta(days=n) for n in range(nights)], dialect="spark", streamed=nights > 5).sql
    found = {what: re.findall(pattern, sql, flags=re.IGNORECASE)[:1] for what, pattern in REJECTED.items()}
    assert {what: hit for what, hit in found.items() if hit} == {}
    # arg_max / max_by never sees a NULL value: every one is filtered on it.
    for call in re.finditer(r"MAX_BY\(([^,]+),[^)]*\) FILTER\s*\(\s*WHERE ([^)]*)", sql):
        assert f"NOT {call.group(1).strip()} IS NULL" in call.group(2).replace("\n", " ") or "IS NULL" in call.group(2)
    sqlglot.parse_one(sql, read="spark")  # and it reads back as Spark SQL


def test_the_duckdb_sql_shares_the_portable_frames(shipped):
    streamed = compile_rules(shipped, [NIGHT - timedelta(days=n) for n in range(30)]).sql
    assert "months -1 day" not in streamed and re.search(r"ORDER BY \"?at\"?\s+RANGE BETWEEN INTERVAL '\d+' (DAY|MONTH) PRECEDING", streamed)
    assert "MEDIAN(" in streamed.upper()  # DuckDB keeps its own median: the Spark pass swaps it


@pytest.mark.parametrize(
    "duckdb_sql, spark_sql",
    [
        ("SELECT MEDIAN(gap) FILTER(WHERE gap > 0) FROM t", "SELECT PERCENTILE(gap, 0.5) FILTER(WHERE gap > 0) FROM t"),
        ("SELECT COUNT(DISTINCT x) FILTER(WHERE y) OVER (PARTITION BY a) FROM t",
         "SELECT SIZE(COLLECT_SET(x) FILTER(WHERE y) OVER (PARTITION BY a)) FROM t"),
        ("SELECT COUNT(DISTINCT x) FROM t", "SELECT SIZE(COLLECT_SET(x)) FROM t"),
        ("SELECT a / NULLIF(b, 0) FROM t", "SELECT CAST(a AS DOUBLE) / NULLIF(b, 0) FROM t"),
        ("SELECT t.a AS x, SUM(x) OVER (PARTITION BY t.k) AS y FROM tab AS t", "SELECT t.a AS x, SUM((t.a)) OVER (PARTITION BY t.k) AS y FROM tab AS t"),
    ],
)
def test_each_difference_is_one_rewrite(duckdb_sql, spark_sql):
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    assert for_dialect(tree, "spark").sql("spark") == spark_sql
    assert for_dialect(tree, "duckdb").sql("duckdb") == tree.sql("duckdb")


def test_the_sum_over_k_has_spark_form_and_no_terms_gives_null():
    tree = sqlglot.parse_one("SELECT COALESCE(LIST_SUM(LIST_TRANSFORM(RANGE(lo, hi + 1), LAMBDA k : k * 2)), 0) FROM t", read="duckdb")
    sql = for_dialect(tree, "spark").sql("spark")
    assert sql == "SELECT COALESCE(CASE WHEN hi + 1 - 1 >= lo THEN AGGREGATE(SEQUENCE(lo, hi + 1 - 1), CAST(0 AS DOUBLE), (acc, k) -> acc + k * 2) END, 0) FROM t"


@pytest.mark.parametrize("z", [0.01, 0.3, 1, 2, 5, 17.5, 1_000, 123_456.7, 1e9])
def test_log_gamma_in_plain_arithmetic_is_lgamma(z):
    value = duckdb.sql("SELECT " + log_gamma(exp.Literal.number(z)).sql("duckdb")).fetchall()[0][0]
    assert math.isclose(value, math.lgamma(z), rel_tol=1e-13, abs_tol=1e-13)


def test_a_window_in_months_with_a_baseline_in_days_is_refused_in_sparks_streamed_form(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "metrics:\n  m: {unusual: orders, window: 3m, baseline: 365d}\n"
        "rules:\n  - {id: r, severity: low, when: m < 0.1, title: t, message: '{{ m }}', action: a}\n",
        encoding="utf-8",
    )
    nights = [NIGHT - timedelta(days=n) for n in range(30)]
    compile_rules(load_rules(tmp_path), nights)  # DuckDB runs it
    compile_rules(load_rules(tmp_path), nights, dialect="spark")  # Spark joins: no frame needs it
    with pytest.raises(RuleError, match=r"a window in months with a span in days before it .* cannot be evaluated on Spark"):
        compile_rules(load_rules(tmp_path), nights, dialect="spark", streamed=True)
