"""Run the night's compiled rules in DuckDB and store what fired in the `warnings` table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import duckdb

from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.loader import RuleSet


@dataclass(frozen=True)
class FiredRule:
    account_id: str
    rule_id: str
    severity: str
    evidence: dict[str, float | int | None]  # the numbers behind the warning, by metric/value name


def evaluate_rules(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, night: date) -> list[FiredRule]:
    """Evaluate every enabled rule for all accounts at once, as of the night; replace its warnings."""
    compiled = compile_rules(ruleset, night)
    result = con.sql(compiled.sql)
    names = result.columns
    fired = []
    # One row per account that has at least one warning: a handful, not the order history.
    for row in result.fetchall():
        values = dict(zip(names, row))
        for rule in compiled.rules:
            if values[f"{rule.id}.fired"]:
                evidence = {n: _plain(values.get(n, values.get(f"{rule.id}.{n}"))) for n in compiled.evidence[rule.id]}
                fired.append(FiredRule(values["account_id"], rule.id, rule.severity, evidence))
    con.begin()
    con.execute("DELETE FROM warnings WHERE night = ?", [night])
    if fired:
        con.executemany(
            "INSERT INTO warnings VALUES (?, ?, ?, ?, ?)",
            [[night, f.account_id, f.rule_id, f.severity, json.dumps(f.evidence)] for f in fired],
        )
    con.commit()
    return fired


def _plain(value):
    """Whole numbers as int (12.0 months reads as 12), everything else as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
