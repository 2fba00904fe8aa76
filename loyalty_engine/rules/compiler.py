"""Checked rules -> one SQL query per night, built as sqlglot expression trees.

A rule's `when` and `values` are parsed by sqlglot, every node is checked against an allow-list
(arithmetic, comparisons, and/or/not, between, in, a few null-safe functions) and every name
against the known metrics, and only then is SQL generated. Nothing a rule file says can read a
file, touch a table or run a statement. Dates are literals computed here, and only portable
constructs are used (FILTER, row_number, NULLIF), so other dialects can be generated later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import sqlglot
from dateutil.relativedelta import relativedelta
from sqlglot import exp

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules.loader import Metric, Rule, RuleSet, Span, Where, placeholders

DIALECT = "duckdb"
ALLOWED_NODES = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Neg,
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.In, exp.Between, exp.Is, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.Coalesce, exp.Abs, exp.Least, exp.Greatest, exp.Round,
)  # fmt: skip
CONDITIONS = (exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In, exp.Between, exp.Is, exp.Boolean)


@dataclass(frozen=True)
class CompiledRules:
    sql: str
    rules: list[Rule]
    # Per rule: the metric and value names its evidence shows (everything it reads or prints).
    evidence: dict[str, list[str]]


def window_bounds(metric: Metric, night: date) -> tuple[date | None, date]:
    """First and last day a metric counts: a window of N ending at E covers E-N+1 … E."""
    end = night - _delta(metric.ending)
    if metric.window is None:
        return None, end
    return end - _delta(metric.window) + timedelta(days=1), end


def _delta(span: Span) -> timedelta | relativedelta:
    if span.unit == "d":
        return timedelta(days=span.amount)
    if span.unit == "w":
        return timedelta(weeks=span.amount)
    return relativedelta(months=span.amount) if span.unit == "m" else relativedelta(years=span.amount)


def check_rules(ruleset: RuleSet) -> dict[str, tuple[exp.Expression, dict[str, exp.Expression]]]:
    """Parse and check every enabled rule; return its condition and values as trees."""
    checked = {}
    for rule in ruleset.rules:
        values = {
            name: _parse(text, rule.places[f"values.{name}"], set(ruleset.metrics), "values." + name)
            for name, text in rule.values.items()
        }
        for name in values:
            if name in ruleset.metrics:
                raise RuleError(f"{rule.places[f'values.{name}']}: value '{name}' has the name of a metric")
        when = _parse(rule.when, rule.places["when"], set(ruleset.metrics) | set(values), "when")
        if not isinstance(_unwrap(when), CONDITIONS):
            raise RuleError(f"{rule.places['when']}: when must be a condition (a comparison, and/or/not …), got '{rule.when}'")
        _Types(rule.places["when"], rule.when, "when").expect(when, CONDITION)
        for name, tree in values.items():
            _Types(rule.places[f"values.{name}"], rule.values[name], f"values.{name}").expect(tree, NUMBER)
        known = set(ruleset.metrics) | set(values)
        for key, texts in (("title", rule.title), ("message", rule.message), ("action", rule.action)):
            for language, text in texts.items():
                unknown = sorted(placeholders(text) - known)
                if unknown:
                    raise RuleError(
                        f"{rule.where}: rule '{rule.id}' {key}.{language} uses unknown placeholder "
                        f"'{unknown[0]}' (known: {', '.join(sorted(known))})"
                    )
        checked[rule.id] = (when, values)
    return checked


def compile_rules(ruleset: RuleSet, night: date) -> CompiledRules:
    """One query: a row per account with any rule firing, its metrics, a flag and values per rule."""
    rules = [r for r in ruleset.rules if r.enabled]
    checked = check_rules(RuleSet(ruleset.metrics, rules))
    used = _metrics_used(ruleset, rules, checked)
    metrics_query = _metrics_query([ruleset.metrics[n] for n in used], night)
    columns: list[exp.Expression] = [exp.column("account_id")] + [exp.column(n) for n in used]
    conditions = []
    evidence = {}
    for rule in rules:
        when, values = checked[rule.id]
        condition = exp.paren(_substitute(when, values), copy=False)
        conditions.append(condition)
        columns.append(exp.alias_(exp.Coalesce(this=condition.copy(), expressions=[exp.false()]), f"{rule.id}.fired", quoted=True))
        for name, tree in values.items():
            columns.append(exp.alias_(_safe_division(tree.copy()), f"{rule.id}.{name}", quoted=True))
        evidence[rule.id] = sorted(_names(when) | set(values) | _names_in_texts(rule))
    query = exp.select(*columns).from_(exp.alias_(exp.paren(metrics_query), "metrics"))
    query = query.where(exp.or_(*conditions) if conditions else exp.false()).order_by("account_id")
    return CompiledRules(query.sql(DIALECT, pretty=True), rules, evidence)


def _parse(text: str, place: Where, names: set[str], what: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(text, read=DIALECT)
    except sqlglot.errors.ParseError as err:
        first = err.errors[0] if err.errors else {}
        raise RuleError(f"{_inside(place, text, first.get('col', 1) - 1)}: {what} cannot be parsed: {first.get('description', err)}") from None
    for node in tree.walk():
        if isinstance(node, exp.Column):
            if node.table or node.name not in names:
                raise RuleError(
                    f"{_inside(place, text, _find(text, node.name))}: unknown name '{node.sql()}' in {what} "
                    f"(known: {', '.join(sorted(names))})"
                )
        elif not isinstance(node, ALLOWED_NODES):
            shown = node.sql(DIALECT) if not isinstance(node, exp.Block) else ";"
            first_word = re.split(r"[\s(]+", shown.lstrip("("))[0]
            raise RuleError(f"{_inside(place, text, _find(text, first_word))}: not allowed in {what}: {shown}")
    return tree


NUMBER, CONDITION, UNKNOWN = "a number", "a condition", "null"
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
NUMERIC_FUNCTIONS = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Abs, exp.Round, exp.Coalesce, exp.Least, exp.Greatest)
LARGEST_NUMBER = 1e15  # far beyond any count or amount; larger literals overflow DuckDB's decimals


class _Types:
    """Every metric and value is a number; and/or/not join conditions, comparisons compare
    numbers. Checking this here turns what would fail mid-night in DuckDB into a file:line error."""

    def __init__(self, place: Where, text: str, what: str):
        self.place, self.text, self.what = place, text, what

    def expect(self, node: exp.Expression, wanted: str) -> None:
        found = self.kind(node)
        if found not in (wanted, UNKNOWN):
            shown = node.sql(DIALECT)
            raise RuleError(f"{_inside(self.place, self.text, _find(self.text, shown))}: {self.what}: '{shown}' is {found} where {wanted} belongs")

    def kind(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return self.kind(node.this)
        if isinstance(node, exp.Null):
            return UNKNOWN
        if isinstance(node, (exp.Boolean, exp.Is)):
            return CONDITION
        if isinstance(node, exp.Column):
            return NUMBER
        if isinstance(node, exp.Literal):
            if node.is_string:
                raise RuleError(f"{_inside(self.place, self.text, _find(self.text, node.sql()))}: {self.what}: text {node.sql()} where a number belongs")
            if abs(float(node.this)) > LARGEST_NUMBER:
                raise RuleError(f"{_inside(self.place, self.text, _find(self.text, node.this))}: {self.what}: number {node.this} is too large")
            return NUMBER
        if isinstance(node, (exp.And, exp.Or, exp.Not)):
            for operand in (node.this, node.args.get("expression")):
                if operand is not None:
                    self.expect(operand, CONDITION)
            return CONDITION
        if isinstance(node, (*COMPARISONS, exp.Between, exp.In)):
            for operand in (node.this, node.args.get("expression"), node.args.get("low"), node.args.get("high"), *node.expressions):
                if operand is not None:
                    self.expect(operand, NUMBER)
            return CONDITION
        if isinstance(node, NUMERIC_FUNCTIONS):
            for operand in (node.this, node.args.get("expression"), node.args.get("decimals"), *node.expressions):
                if operand is not None:
                    self.expect(operand, NUMBER)
            return NUMBER
        raise RuleError(f"{self.place}: {self.what}: cannot tell what '{node.sql(DIALECT)}' is")


def _inside(place: Where, text: str, offset: int) -> Where:
    """The file position of a character of an expression (single-line expressions are exact)."""
    return Where(place.file, place.line, place.column + max(offset, 0)) if "\n" not in text else place


def _find(text: str, word: str) -> int:
    match = re.search(re.escape(word), text, flags=re.IGNORECASE)
    return match.start() if match else 0


def _unwrap(tree: exp.Expression) -> exp.Expression:
    while isinstance(tree, exp.Paren):
        tree = tree.this
    return tree


def _substitute(tree: exp.Expression, values: dict[str, exp.Expression]) -> exp.Expression:
    """Replace value names in a condition by their expressions; make division null-safe."""

    def replace(node):
        if isinstance(node, exp.Column) and node.name in values:
            return exp.paren(values[node.name].copy())
        return node

    return _safe_division(tree.copy().transform(replace))


def _safe_division(tree: exp.Expression) -> exp.Expression:
    # DuckDB gives inf for x / 0, which would compare as a real number: make it NULL (unknown).
    return tree.transform(
        lambda n: exp.Div(this=n.this, expression=exp.Nullif(this=n.expression, expression=exp.Literal.number(0)))
        if isinstance(n, exp.Div) and not isinstance(n.expression, exp.Nullif) and not _nonzero_number(n.expression)
        else n
    )


def _nonzero_number(node: exp.Expression) -> bool:
    return isinstance(node, exp.Literal) and node.is_number and float(node.this) != 0


def _names(tree: exp.Expression) -> set[str]:
    return {c.name for c in tree.find_all(exp.Column)}


def _names_in_texts(rule: Rule) -> set[str]:
    return {name for texts in (rule.title, rule.message, rule.action) for text in texts.values() for name in placeholders(text)}


def _metrics_used(ruleset: RuleSet, rules: list[Rule], checked) -> list[str]:
    used = set()
    for rule in rules:
        when, values = checked[rule.id]
        used |= _names(when) | {n for tree in values.values() for n in _names(tree)} | _names_in_texts(rule)
    return sorted(n for n in used if n in ruleset.metrics)


def _metrics_query(metrics: list[Metric], night: date) -> exp.Select:
    """Every account (but closed ones) with its metrics: one scan per table, one per latest/previous group."""
    query = exp.select(exp.column("account_id", "a")).from_(exp.alias_(exp.to_table("accounts"), "a"))
    # Closed accounts are gone already; warning about them is noise (inhibition proper comes later).
    query = query.where(exp.func("coalesce", exp.column("status", "a"), exp.Literal.string("active")).neq("closed"))
    parts = _metric_parts(metrics, night)
    for index, (subquery, names) in enumerate(parts):
        alias = f"m{index}"
        query = query.join(
            exp.alias_(exp.paren(subquery), alias),
            on=exp.column("account_id", alias).eq(exp.column("account_id", "a")),
            join_type="left",
        )
        for name, default in names:
            column = exp.column(name, alias)
            value = exp.Coalesce(this=column, expressions=[default]) if default is not None else column
            query = query.select(exp.alias_(value, name))
    return query


def _metric_parts(metrics: list[Metric], night: date):
    """Group metrics into as few table scans as possible; yield (subquery, [(name, default)])."""
    parts = []
    counts: dict[str, list[Metric]] = {}
    ranked: dict[tuple, list[Metric]] = {}
    for metric in metrics:
        if metric.aggregate in ("count", "days_since_latest"):
            counts.setdefault(metric.table, []).append(metric)
        else:
            start, end = window_bounds(metric, night)
            ranked.setdefault((metric.table, start, end), []).append(metric)
    for table, group in counts.items():
        event = TABLES[table].event_date
        select = exp.select(exp.column("account_id")).from_(table).where(exp.column(event) <= _day(night))
        names = []
        for metric in group:
            start, end = window_bounds(metric, night)
            inside = exp.column(event) <= _day(end) if start is None else exp.column(event).between(_day(start), _day(end))
            if metric.aggregate == "count":
                # No rows is a real zero for a count; for the other aggregates it stays unknown (NULL).
                value = exp.Filter(this=exp.Count(this=exp.Star()), expression=exp.Where(this=inside))
                names.append((metric.name, exp.Literal.number(0)))
            else:
                latest = exp.Filter(this=exp.Max(this=exp.column(event)), expression=exp.Where(this=inside))
                value = exp.DateDiff(this=_day(night), expression=latest, unit=exp.var("DAY"))
                names.append((metric.name, None))
            select = select.select(exp.alias_(value, metric.name))
        parts.append((select.group_by("account_id"), names))
    for (table, start, end), group in ranked.items():
        spec = TABLES[table]
        event = exp.column(spec.event_date)
        inside = event <= _day(end) if start is None else event.between(_day(start), _day(end))
        rank = exp.Window(
            this=exp.RowNumber(),
            partition_by=[exp.column("account_id")],
            order=exp.Order(expressions=[exp.Ordered(this=event, desc=True), exp.Ordered(this=exp.column(spec.key), desc=True)]),
        )
        columns = sorted({m.column for m in group})
        ordered = exp.select("account_id", *columns, exp.alias_(rank, "_rank")).from_(table).where(inside)
        select = exp.select("account_id").from_(exp.alias_(exp.paren(ordered), "ranked"))
        for metric in group:
            position = 1 if metric.aggregate == "latest" else 2
            value = exp.Filter(
                this=exp.Max(this=exp.column(metric.column)),
                expression=exp.Where(this=exp.column("_rank").eq(position)),
            )
            select = select.select(exp.alias_(value, metric.name))
        parts.append((select.group_by("account_id"), [(m.name, None) for m in group]))
    return parts


def _day(day: date) -> exp.Expression:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.build("date"))
