"""Rule unit tests written in YAML next to the rules (`rules/orders.test.yaml` tests the rules of
`rules/orders.yaml`), in the manner of `promtool test rules`:

    tests:
      - name: a monthly customer who stopped ordering
        nights: [2026-11-22, 2026-11-23]        # or night: 2026-11-23; several for `for:`
        orders:
          - {account_id: A1, every: 30d, from: 2025-01-01, until: 2025-08-01}
          - {account_id: A2, order_date: 2026-11-01, amount: 250}
        expect:                                  # warnings on the last night; [] = none may fire
          - {account: A1, rule: falling_order_frequency, values: {orders_recent: 0}}
      - name: the same at a lower share
        params: {falling_order_frequency: {share: 0.2}}   # the rule at other values of its params
        ...

Rows name only what matters: ids, the account's name and owner, amounts and currencies get
defaults, and every account a row mentions exists. A row with `every:` stands for one row per
date from `from:` to `until:`. Each case runs in its own in-memory DuckDB: nothing is read from or
written to the real database.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.loader import (
    Located, Rule, RuleSet, Span, Where, at, did_you_mean, load_rules, only_keys, place, read_located, rule_files,
)

DEFAULTS = {
    "accounts": {"owner_email": "owner@example.com", "owner_name": "Owner"},
    "orders": {"amount": 100, "currency": "EUR"},
    "interactions": {"kind": "call"},
}


@dataclass
class CaseResult:
    file: Path
    where: Where
    name: str
    missing: list[str] = field(default_factory=list)  # expected, did not fire
    unexpected: list[str] = field(default_factory=list)  # fired, not expected
    wrong_values: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_values)


def find_test_files(paths: list[Path]) -> list[Path]:
    """The *.test.yaml files named, a folder standing for those in it."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.test.yaml"))
        elif path.is_file():
            files.append(path)
        else:
            raise RuleError(f"{path}: no such test file or folder")
    return files


def run_rule_tests(path: Path) -> list[CaseResult]:
    """Run every case of one test file against the rules of the rule file beside it."""
    rule_file = path.with_name(path.name.removesuffix(".test.yaml") + ".yaml")
    if not rule_file.is_file():
        raise RuleError(f"{path}: no rule file {rule_file.name} beside it to test")
    # Metrics are shared across the folder's files, so the whole folder is read.
    everything = load_rules(rule_files(rule_file.parent))
    tested = [r for r in everything.rules if r.where.file == rule_file]
    ruleset = RuleSet(everything.metrics, tested)
    doc = _read(path)
    only_keys(path, doc, {"tests"})
    cases = doc.get("tests")
    if not isinstance(cases, list) or not cases:
        raise RuleError(f"{at(path, doc, 'tests' if 'tests' in doc else None)}: 'tests' must be a list of test cases")
    return [_run_case(path, case, ruleset) for case in cases]


def _read(path: Path) -> Located:
    doc = read_located(path)
    if not isinstance(doc, Located):
        raise RuleError(f"{path}:1:1: expected a mapping with 'tests'")
    return doc


def _run_case(path: Path, case, ruleset: RuleSet) -> CaseResult:
    if not isinstance(case, Located):
        raise RuleError(f"{path}: each test must be a mapping with name, night(s), tables and expect")
    only_keys(path, case, {"name", "night", "nights", "params", "expect", *TABLES})
    result = CaseResult(path, place(path, case, None), str(case.get("name", "unnamed")))
    nights = _nights(path, case)
    ruleset = _with_params(path, case, ruleset)
    rules = {rule.id: rule for rule in ruleset.rules if rule.enabled}
    expected = _expectations(path, case, rules)
    with duckdb.connect() as con:
        for table in TABLES.values():
            con.execute(table.create_sql())
        accounts = _insert_rows(path, case, con, nights[-1])
        for account, _ in expected:
            if account not in accounts:
                raise RuleError(f"{at(path, case, 'expect')}: expected account '{account}' has no rows in this test")
        for rule_id in {rule_id for _, rule_id in expected}:
            if rules[rule_id].for_nights > len(nights):
                raise RuleError(
                    f"{at(path, case, 'nights' if 'nights' in case else 'night')}: rule '{rule_id}' needs "
                    f"for: {rules[rule_id].for_nights} nights, the test evaluates {len(nights)}; list that many nights"
                )
        compiled = compile_rules(ruleset, nights)
        query = con.sql(compiled.sql)
        rows = [dict(zip(query.columns, row)) for row in query.fetchall() if row[1] == nights[-1]]
    fired = {}
    for row in rows:
        for rule in compiled.rules:
            if row[f"{rule.id}.fired"]:
                fired[(row["account_id"], rule.id)] = {n: row.get(f"{rule.id}.{n}", row.get(n)) for n in compiled.evidence[rule.id]}
    for key, values in expected.items():
        if key not in fired:
            result.missing.append(f"{key[1]} for {key[0]}")
            continue
        for name, want in values.items():
            got = fired[key].get(name, "(not a value of this rule)")
            if not _same(got, want):
                result.wrong_values.append(f"{key[1]} for {key[0]}: {name} = {got}, expected {want}")
    result.unexpected = [
        f"{rule_id} for {account} ({_evidence({k: v for k, v in values.items() if k not in rules[rule_id].params})})"
        for (account, rule_id), values in fired.items() if (account, rule_id) not in expected
    ]  # the numbers, not the thresholds the rule file already shows
    return result


def _with_params(path: Path, case: Located, ruleset: RuleSet) -> RuleSet:
    """The rules with the case's `params: {rule: {name: number}}` in place of the file's values."""
    given = case.get("params")
    if given is None:
        return ruleset
    if not isinstance(given, Located) or not all(isinstance(v, Located) for v in given.values()):
        raise RuleError(f"{at(path, case, 'params')}: params must map rule ids to their params, e.g. {{falling_order_frequency: {{share: 0.4}}}}")
    rules = {rule.id: rule for rule in ruleset.rules}
    for rule_id, values in given.items():
        rule = rules.get(rule_id)
        if rule is None:
            raise RuleError(f"{at(path, given, rule_id)}: rule '{rule_id}' is not a rule of {path.name.removesuffix('.test.yaml')}.yaml")
        for name, value in values.items():
            if name not in rule.params:
                known = ", ".join(rule.params) or "none"
                raise RuleError(f"{at(path, values, name)}: rule '{rule_id}' has no param '{name}'{did_you_mean(str(name), rule.params)} (its params: {known})")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RuleError(f"{at(path, values, name)}: param '{name}' must be a number, got {value!r}")
        rules[rule_id] = dataclasses.replace(rule, params={**rule.params, **values})
    return RuleSet(ruleset.metrics, [rules[rule.id] for rule in ruleset.rules])


def _nights(path: Path, case: Located) -> list[date]:
    given = case.get("nights", [case["night"]] if "night" in case else None)
    if not isinstance(given, list) or not given or not all(isinstance(n, date) for n in given):
        raise RuleError(f"{at(path, case, 'nights' if 'nights' in case else None)}: a test needs night: YYYY-MM-DD or nights: [YYYY-MM-DD, …]")
    nights = sorted(given)
    if any((later - earlier).days != 1 for earlier, later in zip(nights, nights[1:])):
        raise RuleError(f"{at(path, case, 'nights')}: nights must follow one another day by day")
    return nights


def _expectations(path: Path, case: Located, rules: dict[str, Rule]) -> dict[tuple[str, str], dict]:
    if "expect" not in case:
        raise RuleError(f"{at(path, case, None)}: test '{case.get('name', '')}' needs expect: (a list of warnings, [] for none)")
    expect = case["expect"] or []
    if not isinstance(expect, list):
        raise RuleError(f"{at(path, case, 'expect')}: expect must be a list of {{account: …, rule: …}}")
    expected = {}
    for item in expect:
        if not isinstance(item, Located) or "account" not in item or "rule" not in item:
            raise RuleError(f"{at(path, case, 'expect')}: each expected warning needs account and rule")
        only_keys(path, item, {"account", "rule", "values"})
        if item["rule"] not in rules:
            raise RuleError(f"{at(path, item, 'rule')}: rule '{item['rule']}' is not an enabled rule of {path.name.removesuffix('.test.yaml')}.yaml")
        expected[(str(item["account"]), item["rule"])] = dict(item.get("values") or {})
    return expected


def _insert_rows(path: Path, case: Located, con: duckdb.DuckDBPyConnection, last_night: date) -> set[str]:
    """Insert the case's rows (defaults filled in, series expanded); return every account named."""
    accounts: dict[str, Where] = {}
    explicit: set[str] = set()
    for name, table in TABLES.items():
        rows = case.get(name) or []
        if not isinstance(rows, list):
            raise RuleError(f"{at(path, case, name)}: {name} must be a list of rows")
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, Located):
                raise RuleError(f"{at(path, case, name)}: each row of {name} must be a mapping of column: value")
            allowed = {c.name for c in table.columns} | ({"every", "from", "until"} if table.event_date else set())
            only_keys(path, row, allowed)
            for values in _expand(path, row, table.event_date):
                values = {**DEFAULTS.get(name, {}), **values}
                if table.key not in values:
                    values[table.key] = f"{name[0].upper()}{number}-{values.get(table.event_date, '')}"
                if name == "accounts":
                    values.setdefault("name", values.get("account_id"))
                    explicit.add(str(values.get("account_id")))
                event = values.get(table.event_date) if table.event_date else None
                if isinstance(event, date) and event > last_night and name != "contracts":
                    raise RuleError(
                        f"{place(path, row, None)}: {name} row dated {event} lies after the last night "
                        f"{last_night}: the test cannot see it; move it or evaluate a later night"
                    )
                accounts.setdefault(str(values.get("account_id")), place(path, row, None))
                _insert(con, path, row, name, values)
    for account in sorted(set(accounts) - explicit):
        _insert(con, path, case, "accounts", {**DEFAULTS["accounts"], "account_id": account, "name": account})
    for name, table in TABLES.items():
        for column in table.derived:
            con.execute(f"UPDATE {name} SET {column.name} = {column.sql}")
    return set(accounts)


def _expand(path: Path, row: Located, event: str | None):
    """One row, or with every/from/until one per date of the series."""
    if "every" not in row:
        return [dict(row)]
    step = Span.parse(row["every"])
    if step is None or step.unit not in "dw" or not isinstance(row.get("from"), date) or not isinstance(row.get("until"), date):
        raise RuleError(f"{at(path, row, 'every')}: a series needs every: 7d (days or weeks), from: YYYY-MM-DD and until: YYYY-MM-DD")
    days = step.amount * (7 if step.unit == "w" else 1)
    base = {k: v for k, v in row.items() if k not in ("every", "from", "until")}
    series, day = [], row["from"]
    while day <= row["until"]:
        series.append({**base, event: day})
        day += timedelta(days=days)
    return series


def _insert(con: duckdb.DuckDBPyConnection, path: Path, row: Located, table: str, values: dict) -> None:
    columns = list(values)
    try:
        con.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [None if v is None else str(v) for v in values.values()],
        )
    except duckdb.Error as error:
        raise RuleError(f"{place(path, row, None)}: {table} row cannot be stored: {str(error).splitlines()[0]}") from None


def _same(got, want) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-6, abs_tol=0.005)
    return got == want


def _evidence(values: dict) -> str:
    return ", ".join(f"{k} = {f'{v:.2f}'.rstrip('0').rstrip('.') if isinstance(v, float) else v}" for k, v in values.items())
