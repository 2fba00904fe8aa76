"""Run the compiled rules in DuckDB and store the night's signals: where a rule's condition held."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as pa

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.lifecycle.warnings import NIGHT_RESOLVE_COLUMNS
from loyalty_engine.rules.compiler import check_filter, check_rule, compile_rules
from loyalty_engine.rules.loader import RuleSet


@dataclass(frozen=True)
class Signal:
    """A rule's condition held for an account on the night (the lifecycle decides what it means)."""

    account_id: str
    rule_id: str
    severity: str
    evidence: dict[str, float | int | str | None]  # the numbers behind the warning, by metric/value name


@dataclass
class NightOutcome:
    signals: list[Signal] = field(default_factory=list)
    # Rule id -> accounts whose condition was unknown (a metric it needs had no data).
    no_data: dict[str, int] = field(default_factory=dict)
    # Rule id -> why it was not evaluated tonight (an optional table it needs is absent).
    skipped: dict[str, str] = field(default_factory=dict)


def prove_rules(ruleset: RuleSet, night: date, problems: list[RuleError] | None = None) -> None:
    """Check every rule and run its SQL on empty tables in memory, so that a rule that cannot be
    evaluated stops the night before any data is replaced, with its file and line. With
    `problems`, every problem of every rule is noted there instead of raising at the first (the
    rules `check_rule_files` could read only in part, `ruleset.unfinished`, are checked too)."""

    def note(problem: RuleError) -> None:
        if problems is None:
            raise problem
        for each in getattr(problem, "problems", None) or [problem]:
            if str(each) not in map(str, problems):  # a broken metric filter, found again by its rule
                problems.append(each)

    with duckdb.connect() as scratch:
        for table in TABLES.values():
            scratch.execute(table.create_sql())
        for metric in ruleset.metrics.values():
            try:
                check_filter(metric)
            except RuleError as problem:
                note(problem)
        for rule in [*ruleset.rules, *ruleset.unfinished]:
            if rule.enabled is False:
                continue
            try:
                checked = check_rule(ruleset, rule)
                if rule in ruleset.unfinished or checked.uses(ruleset.broken):
                    continue  # its SQL cannot be built; its problems are reported already
                sql = compile_rules(RuleSet(ruleset.metrics, [rule]), night).sql
                try:
                    scratch.execute(sql).fetchall()
                except duckdb.Error as error:
                    raise RuleError(f"{rule.where}: rule '{rule.id}' cannot be evaluated: {str(error).splitlines()[0]}") from None
            except RuleError as problem:
                note(problem)


def runnable(ruleset: RuleSet, absent: set[str]) -> tuple[RuleSet, dict[str, str]]:
    """The enabled rules that can run without the absent optional tables, and why the others cannot."""
    rules, skipped = [], {}
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        missing = sorted(check_rule(ruleset, rule).tables & absent)
        if missing:
            skipped[rule.id] = f"needs the optional table {', '.join(missing)}, absent tonight"
        else:
            rules.append(rule)
    return RuleSet(ruleset.metrics, rules), skipped


def evaluate_rules(
    con: duckdb.DuckDBPyConnection, ruleset: RuleSet, night: date, absent: set[str] = frozenset(), spark=None
) -> NightOutcome:
    """Evaluate every enabled rule for all accounts at once, as of the night; replace its signals.

    `for: N nights` is not applied here: the lifecycle counts the evaluated nights a signal
    held in a row. The (account, rule) pairs whose condition could not be judged (a metric had
    no data) are left in the TEMP table `night_unknown` on `con`, for `advance_warnings`, and for
    rules with resolve_when the pairs it does not resolve tonight in `night_resolve`.

    With `spark` (a session whose views `spark_engine.read_extracts` made), the rules run there
    and only their outcomes come back; everything from here on is the same."""
    ruleset, skipped = runnable(ruleset, absent)
    outcome = NightOutcome(skipped=skipped)
    if spark is None:
        compiled = compile_rules(ruleset, [night])
        con.execute(f"CREATE OR REPLACE TEMP TABLE night_outcomes AS {compiled.sql}")
    else:
        from loyalty_engine.spark_engine import evaluate_on_spark

        compiled, outcomes = evaluate_on_spark(spark, ruleset, [night])
        con.register("spark_outcomes", outcomes)
        con.execute("CREATE OR REPLACE TEMP TABLE night_outcomes AS SELECT * FROM spark_outcomes")
        con.unregister("spark_outcomes")
    held_any = " OR ".join(f'"{r.id}.holds"' for r in compiled.rules) or "false"
    result = con.sql(f"SELECT * FROM night_outcomes WHERE {held_any}")
    names = result.columns
    # One row per account with at least one signal: a handful, not the order history.
    for row in result.fetchall():
        values = dict(zip(names, row))
        for rule in compiled.rules:
            if values[f"{rule.id}.holds"]:
                evidence = {n: _plain(values.get(f"{rule.id}.{n}", values.get(n))) for n in compiled.evidence[rule.id]}
                outcome.signals.append(Signal(values["account_id"], rule.id, rule.severity, evidence))
    unknown = " UNION ALL ".join(
        f"SELECT account_id, '{r.id}' AS rule_id FROM night_outcomes WHERE \"{r.id}.holds\" IS NULL" for r in compiled.rules
    ) or "SELECT NULL::VARCHAR AS account_id, NULL::VARCHAR AS rule_id WHERE false"
    con.execute(f"CREATE OR REPLACE TEMP TABLE night_unknown AS {unknown}")
    # Rules with resolve_when: where it did not hold (or is unknown) and `when` did not either.
    con.execute(f"CREATE OR REPLACE TEMP TABLE night_resolve ({NIGHT_RESOLVE_COLUMNS})")
    for rule in (r for r in compiled.rules if r.resolve_when is not None):
        holds, resolves = f'"{rule.id}.holds"', f'"{rule.id}.resolves"'
        con.execute(
            f"INSERT INTO night_resolve SELECT account_id, ?, {resolves} FROM night_outcomes WHERE {holds} IS NOT TRUE AND {resolves} IS NOT TRUE",
            [rule.id],
        )
    outcome.no_data = dict.fromkeys((r.id for r in compiled.rules), 0)
    outcome.no_data.update(con.execute("SELECT rule_id, count(*) FROM night_unknown GROUP BY rule_id").fetchall())
    con.execute("DROP TABLE night_outcomes")
    _store(con, night, outcome.signals)
    return outcome


def _store(con: duckdb.DuckDBPyConnection, night: date, signals: list[Signal]) -> None:
    rows = pa.table(
        {
            "account_id": pa.array([f.account_id for f in signals], pa.string()),
            "rule_id": pa.array([f.rule_id for f in signals], pa.string()),
            "severity": pa.array([f.severity for f in signals], pa.string()),
            "evidence": pa.array([json.dumps(f.evidence, ensure_ascii=False) for f in signals], pa.string()),
        }
    )
    con.execute("DELETE FROM signals WHERE night = ?", [night])
    # One insert from Arrow: executemany costs a round trip per row (1.5 s for 8,000).
    con.register("night_signals", rows)
    con.execute("INSERT INTO signals SELECT ?, account_id, rule_id, severity, evidence FROM night_signals", [night])
    con.unregister("night_signals")


def _plain(value):
    """Whole numbers as int (12.0 months reads as 12); other floats to 12 significant digits:
    DuckDB sums a trend's or a spread's terms in whatever order its threads finish, so the last
    digits vary from run to run, and a re-run night must store the same evidence."""
    if isinstance(value, Decimal):  # Spark's decimals arrive as such; DuckDB's query gives doubles there
        value = float(value)
    if isinstance(value, float) and math.isfinite(value):
        value = float(f"{value:.12g}")
        return int(value) if value.is_integer() else value
    return value
