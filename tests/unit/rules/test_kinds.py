"""The registry of metric kinds (rules/kinds.py): every entry is complete and documented; every
kind loads, gives the same values in both compile forms, is what its entry says over no rows,
and is described in words by `explain`; and a new kind is one entry, touching no other file."""

from __future__ import annotations

import re
import string
from datetime import date, timedelta

import duckdb
import pytest
from sqlglot import exp

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules import compiler
from loyalty_engine.rules.explain import explain_account
from loyalty_engine.rules.kinds import COLUMN_TYPE, KINDS, NUMBER, TEXT, Kind, Option, Takes
from loyalty_engine.rules.loader import check_rule_files, load_rules
from tests.support.builders import ROOT

NIGHT = date(2026, 11, 23)
NIGHTS = [NIGHT - timedelta(days=back) for back in range(10)]
# What a metric of each kind reads in these tests (orders.currency: a text column).
TARGETS = {Takes.TABLE: "orders", Takes.NUMBER_COLUMN: "orders.amount", Takes.COLUMN: "orders.currency", Takes.ACCOUNT_COLUMN: "segment"}
# BUSY's orders, days before NIGHT: amount and currency.
ORDERS = {400: (90, "EUR"), 200: (120, "EUR"), 100: (180, "CHF"), 40: (200, "EUR"), 10: (60, "CHF"), 3: (160, "EUR")}


def test_every_kind_has_every_field():
    for name, kind in KINDS.items():
        assert re.fullmatch(r"[a-z][a-z_]*", name)
        assert isinstance(kind.takes, Takes) and isinstance(kind.needs_window, bool), name
        assert kind.value in (NUMBER, TEXT, COLUMN_TYPE), name
        assert kind.when_empty in (0, None), name
        assert callable(kind.compile) and isinstance(kind.reaches_before_window, bool), name
        assert all(isinstance(option, Option) for option in kind.options.values()), name
        for words in filter(None, (kind.words, kind.date_words)):
            fields = {field for _, field, _, _ in string.Formatter().parse(words) if field}
            assert fields <= {"table", "column", *kind.options}, name
            assert ("column" in fields) == (kind.takes is not Takes.TABLE), name
        # Only kinds that read a column can take its type.
        assert kind.value != COLUMN_TYPE or kind.takes is not Takes.TABLE, name


def test_every_kind_is_in_the_docs():
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    metrics = text[text.index("## Metrics"):text.index("### The built-in")]
    assert [name for name in KINDS if f"`{name}" not in metrics] == []


def metric_file(kind: str, **keys) -> str:
    """A rule file with metric `m` of the kind and a rule that shows it."""
    spec = {kind: TARGETS[KINDS[kind].takes], **({"window": "1y"} if KINDS[kind].reads_rows else {}), **keys}
    written = ", ".join(f"{key}: {value}" for key, value in spec.items())
    return (
        f"metrics:\n  m: {{{written}}}\n"
        "rules:\n  - {id: shows_m, severity: low, when: m is not null, title: t, message: '{{ m }}', action: a}\n"
    )


@pytest.fixture
def book():
    """An in-memory store: BUSY with orders over a year and more, EMPTY with none."""
    with duckdb.connect() as con:
        for table in TABLES.values():
            con.execute(table.create_sql())
        con.execute(
            "INSERT INTO accounts (account_id, name, owner_email, owner_name, status, segment) VALUES "
            "('BUSY', 'Busy', 'anna@example.com', 'Anna', 'active', 'A'), ('EMPTY', 'Empty', 'anna@example.com', 'Anna', 'active', NULL)"
        )
        for number, (days, (amount, currency)) in enumerate(ORDERS.items()):
            con.execute("INSERT INTO orders VALUES (?, 'BUSY', ?, ?, ?)", [f"O{number}", NIGHT - timedelta(days=days), amount, currency])
        yield con


def values_in_both_forms(con, folder, monkeypatch) -> dict[tuple[str, date], object]:
    """Metric m per (account, night), joined and streamed; the two must agree."""
    ruleset = load_rules(folder)
    forms = []
    for joined_nights in (len(NIGHTS), 0):
        monkeypatch.setattr(compiler, "JOINED_NIGHTS", joined_nights)
        result = con.sql(compiler.compile_rules(ruleset, NIGHTS).sql)
        m = result.columns.index("m")
        forms.append({(row[0], row[1]): row[m] for row in result.fetchall()})
    joined, streamed = forms
    assert joined == streamed
    return joined


def described(con, folder) -> str:
    """What `loyalty explain` says metric m is, for BUSY on NIGHT."""
    [rule] = explain_account(con, load_rules(folder), "BUSY", NIGHT, absent=set()).rules
    [what] = [what for name, _, what in rule.numbers if name == "m"]
    return what


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_compiles_in_both_forms_and_explains(kind, book, tmp_path, monkeypatch):
    (tmp_path / "m.yaml").write_text(metric_file(kind), encoding="utf-8")
    values = values_in_both_forms(book, tmp_path, monkeypatch)
    metric = load_rules(tmp_path).metrics["m"]
    for night in NIGHTS:
        assert values[("EMPTY", night)] == KINDS[kind].when_empty, "over no rows"
        busy = values[("BUSY", night)]
        assert busy is not None and isinstance(busy, str) == (metric.value_type == TEXT)
    what = described(book, tmp_path)
    assert what.startswith(metric.describe()) and "{" not in what
    if KINDS[kind].reads_rows:
        assert what.endswith(f", over 1y ({NIGHT - timedelta(days=364)} … {NIGHT})")


def _count_above(reading) -> exp.Expression:
    return reading.over(exp.Count(this=exp.Star()), also=reading.column() > exp.Literal.number(reading.metric.option("above")))


COUNT_ABOVE = Kind(
    takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=0,
    words="number of {table} with {column} above {above}", compile=_count_above,
    options={"above": Option("a number, e.g. 100", lambda text: text if re.fullmatch(r"\d+(\.\d+)?", text) else None)},
)


def test_a_new_kind_is_one_entry(book, tmp_path, monkeypatch):
    """Registered here and nowhere else, a kind loads, compiles in both forms and explains."""
    monkeypatch.setitem(KINDS, "count_above", COUNT_ABOVE)
    (tmp_path / "m.yaml").write_text(metric_file("count_above", above=150), encoding="utf-8")
    values = values_in_both_forms(book, tmp_path, monkeypatch)
    expected = {night: sum(1 for days, (amount, _) in ORDERS.items() if amount > 150 and (NIGHT - night).days <= days < (NIGHT - night).days + 365) for night in NIGHTS}
    assert {night: values[("BUSY", night)] for night in NIGHTS} == expected
    assert expected[NIGHT] == 3 and all(values[("EMPTY", night)] == 0 for night in NIGHTS)
    assert described(book, tmp_path) == f"number of orders with amount above 150, over 1y ({NIGHT - timedelta(days=364)} … {NIGHT})"


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("count_above: orders.amount, window: 1y", "m.yaml:2:6: count_above metric 'm' needs above: a number, e.g. 100"),
        ("count_above: orders.amount, above: lots, window: 1y", "m.yaml:2:42: above must be a number, e.g. 100, got 'lots'"),
        ("count_above: orders.currency, above: 1, window: 1y", "m.yaml:2:20: count_above needs table.column with a number column"),
        ("count_abov: orders.amount", "m.yaml:2:19: unknown key 'count_abov' (did you mean 'count_above'?) (a metric is one of count, "),
    ],
)
def test_a_new_kinds_mistakes_get_one_line_errors(written, problem, tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, "count_above", COUNT_ABOVE)
    (tmp_path / "m.yaml").write_text(f"metrics:\n  m: {{{written}}}\nrules: []\n", encoding="utf-8")
    _, problems = check_rule_files(tmp_path)
    assert len(problems) == 1 and isinstance(problems[0], RuleError)
    assert str(problems[0]).replace(str(tmp_path) + "/", "").startswith(problem)


def test_a_removed_kind_leaves_nothing_behind(tmp_path, monkeypatch):
    """No list elsewhere still knows a kind that the registry no longer has."""
    monkeypatch.delitem(KINDS, "rhythm")
    (tmp_path / "m.yaml").write_text(metric_file("count").replace("count:", "rhythm:"), encoding="utf-8")
    _, [problem] = check_rule_files(tmp_path)
    assert "unknown key 'rhythm'" in str(problem) and "rhythm," not in str(problem).split("one of")[1]
