"""Checked rules -> one SQL query over a set of nights, built as sqlglot expression trees.

A rule's `when`, its `values` and every metric's `where` filter are parsed by sqlglot, every
node is checked against an allow-list (arithmetic, comparisons, and/or/not, between, in, like,
a few null-safe functions) and every name against the known metrics or the table's columns,
and only then is SQL generated. Nothing a rule file says can read a file, touch a table or run
a statement.

The query's shape, for the nights N (one night, or a year of them for a backtest):

    nights         one row per night, with the window edges of every metric as dates
    <table>_rows   per extract table ONE scan, with what the aggregates read (a row's place in
                   the account's history, the day of the row before it)
    <table>_metrics  every metric of the table per (account, night): for a few nights the rows
                   are joined to the nights they can count for and grouped; for more, rows and
                   a probe per (account, night) are sorted into one stream and every metric is
                   a window frame ending at the probe (a year costs one sort, not rows x nights)
    metrics        every account (but closed ones) x night, with its metrics
    outcomes       per rule: `holds` (true, false, or null = no data), `resolves` (its
                   resolve_when, if any) and its values; a rule's params are numbers in them
    steady_1 … 4   only for rules with hysteresis (resolve_when, keep_firing_for): the
                   lifecycle's state machine as window functions over the nights of the set
    (final)        per rule `fired`: held on each of the last `for` nights of the set, or, with
                   hysteresis, started so and not resolved since (rule tests and explain)

Only portable constructs are used (FILTER, window functions, NULLIF, CASE, frames keyed on a
timestamp with whole DAY or MONTH intervals, NULLs filtered before arg_max), so the same tree is
generated for DuckDB and for Spark (`dialect=`); where a function differs, rules/dialects.py
rewrites it for Spark just before generating (docs/spark.md).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date, timedelta

import sqlglot
from dateutil.relativedelta import relativedelta
from sqlglot import exp

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules import groups, kinds
from loyalty_engine.rules.dialects import for_dialect
from loyalty_engine.rules.kinds import BUILTINS, KINDS
from loyalty_engine.rules.loader import Metric, Rule, RuleProblems, RuleSet, Span, Where, did_you_mean, placeholders

DIALECT = "duckdb"
ALLOWED_NODES = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Neg,
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.In, exp.Between, exp.Is, exp.Like, exp.ILike, exp.Add, exp.Sub, exp.Mul, exp.Div,
    exp.Coalesce, exp.Abs, exp.Least, exp.Greatest, exp.Round, exp.Lower, exp.Upper,
)  # fmt: skip
CONDITIONS = (exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In, exp.Between, exp.Is, exp.Like, exp.ILike, exp.Boolean)
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
# The parts of a condition `loyalty explain` shows one by one.
PARTS = (*COMPARISONS, exp.Between, exp.In, exp.Is, exp.Like, exp.ILike)


@dataclass(frozen=True)
class CheckedRule:
    rule: Rule
    when: exp.Expression  # as written, value and param names kept (for explaining)
    values: dict[str, exp.Expression]
    names: set[str]  # the metrics it reads, through its condition, values and texts
    tables: set[str]  # the extract tables those metrics come from
    resolve_when: exp.Expression | None = None  # as written; None: it resolves when `when` no longer holds

    def uses(self, names: frozenset[str]) -> bool:
        """Whether its condition or values name any of these."""
        trees = [self.when, *self.values.values(), *([self.resolve_when] if self.resolve_when is not None else [])]
        return any(n in names for tree in trees for n in _names(tree))


@dataclass(frozen=True)
class CompiledRules:
    sql: str
    rules: list[Rule]
    # Per rule: the metric and value names its evidence shows (everything it reads or prints).
    evidence: dict[str, list[str]]
    metrics: list[str]
    # Per rule (explain only): the parts of its condition, as (text as written, number of operands).
    parts: dict[str, list[tuple[str, int]]]


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


# --- checking --------------------------------------------------------------------------------


def check_rules(ruleset: RuleSet) -> dict[str, CheckedRule]:
    """Parse and check every rule and metric filter; the first problem raises RuleError."""
    for metric in ruleset.metrics.values():
        check_filter(metric)
    return {rule.id: check_rule(ruleset, rule) for rule in ruleset.rules}


def check_filter(metric: Metric) -> exp.Expression | None:
    """A metric's `where`, checked against its table's columns."""
    if metric.filter is None:
        return None
    table = TABLES[metric.table]
    types = {c.name: {"text": TEXT, "number": NUMBER, "flag": CONDITION}.get(c.kind, DATE) for c in table.columns + table.derived}
    what = f"metric '{metric.name}' where"
    tree = _parse(metric.filter, metric.filter_place, types, what, noun=f"column of {metric.table}")
    _Types(metric.filter_place, metric.filter, what, types).expect(tree, CONDITION)
    return tree


def check_rule(ruleset: RuleSet, rule: Rule) -> CheckedRule:
    """The rule's params, values, conditions and texts checked against the metrics; every problem
    is found (RuleProblems lists them all, its message is the first)."""
    found: list[RuleError] = []
    types = {name: VALUE_TYPES[m.value_type] for name, m in ruleset.metrics.items()}
    types |= {name: VALUE_TYPES[builtin.value] for name, builtin in BUILTINS.items()}
    types |= {name: UNKNOWN for name in ruleset.broken}  # reported with its own definition
    for name in rule.params:
        if name in types:
            what = "built-in metric" if name in BUILTINS else "metric"
            found.append(RuleError(f"{rule.places[f'params.{name}']}: param '{name}' has the name of a {what}"))
            types[name] = UNKNOWN  # which of the two a use means is unclear: no type errors on top
        else:
            types[name] = NUMBER
    values: dict[str, exp.Expression] = {}
    unread = False  # an expression that could not be read: which params it uses is unknown
    for name, text in rule.values.items():
        place = rule.places[f"values.{name}"]
        if name in types:
            found.append(RuleError(f"{place}: value '{name}' has the name of a {'param' if name in rule.params else 'metric'}"))
            continue
        try:
            values[name] = _parse(text, place, types, "values." + name)
            types[name] = _Types(place, text, f"values.{name}", types).type_of(values[name])
        except RuleError as problem:
            found.append(problem)
            types[name] = UNKNOWN
            unread = True
    conditions: dict[str, exp.Expression | None] = {}
    for key, text in (("when", rule.when), ("resolve_when", rule.resolve_when)):
        if text is None:
            continue
        try:
            conditions[key] = _condition(rule, key, text, types)
        except RuleError as problem:
            found.append(problem)
            if getattr(problem, "tree", None) is None:
                unread = True
            else:
                conditions[key] = problem.tree
    known = sorted(_known(types))
    for key, texts in (("title", rule.title), ("message", rule.message), ("action", rule.action)):
        written: dict[Where, list[str]] = {}  # one text written for every language is one place
        for language in texts:
            written.setdefault(rule.places.get(f"{key}.{language}", rule.where), []).append(language)
        for place, languages in written.items():
            text, label = texts[languages[0]], key if len(languages) > 1 else f"{key}.{languages[0]}"
            for name in sorted(placeholders(text) - set(types)):
                found.append(RuleError(
                    f"{_inside(place, text, _find(text, name))}: {label} uses unknown placeholder '{name}'{did_you_mean(name, known)} "
                    f"(known: {', '.join(known)})"
                ))
    trees = [*conditions.values(), *values.values()]
    names = {n for tree in trees for n in _names(tree)} | _names_in_texts(rule)
    if not unread and not rule.texts_unread:
        for name, value in rule.params.items():
            if name not in names and value is not None:
                found.append(RuleError(f"{rule.places[f'params.{name}']}: param '{name}' is not used by when, resolve_when, values or the texts"))
    if found:
        raise RuleProblems(sorted(found, key=_place_order))
    metrics = _expand(ruleset, names - set(values) - set(rule.params))
    return CheckedRule(rule, conditions["when"], values, metrics, {_metric(ruleset, n).table for n in metrics}, conditions.get("resolve_when"))


def _place_order(problem: RuleError) -> tuple[int, int]:
    """Line and column of a 'file:line:column: problem' message, so one rule's problems read in file order."""
    match = re.match(r"^.*?:(\d+):(\d+): ", str(problem))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _condition(rule: Rule, key: str, text: str, types: dict[str, str]) -> exp.Expression:
    """`when` or `resolve_when`, parsed and checked to be a condition."""
    place = rule.places[key]
    tree = _parse(text, place, types, key)
    if not isinstance(_unwrap(tree), CONDITIONS):
        raise RuleError(f"{place}: {key} must be a condition (a comparison, and/or/not …), got '{text}'")
    _Types(place, text, key, types).expect(tree, CONDITION)
    return tree


def _expand(ruleset: RuleSet, names: set[str]) -> set[str]:
    """Metric names, with the built-in group replaced by the metrics it is computed from."""
    if "loyalty_group" in names:
        names = (names - {"loyalty_group"}) | set(groups.INPUTS)
    return {n for n in names if n in ruleset.metrics or n in groups.INPUTS}


def _metric(ruleset: RuleSet, name: str) -> Metric:
    return ruleset.metrics.get(name) or groups.INPUTS[name]


NUMBER, TEXT, CONDITION, DATE, UNKNOWN = "a number", "text", "a condition", "a date", "null"
VALUE_TYPES = {kinds.NUMBER: NUMBER, kinds.TEXT: TEXT}  # a metric's value type, as type errors name it


def _parse(text: str, place: Where, types: dict[str, str], what: str, noun: str = "metric") -> exp.Expression:
    try:
        tree = sqlglot.parse_one(text, read=DIALECT)
    except sqlglot.errors.ParseError as err:
        first = err.errors[0] if err.errors else {}
        raise RuleError(f"{_inside(place, text, first.get('col', 1) - 1)}: {what} cannot be parsed: {_parse_problem(first.get('description', str(err)))}") from None
    unknown: list[RuleError] = []
    for node in tree.walk():
        if isinstance(node, exp.Column):
            if node.table or node.name not in types:
                if any(f"'{node.sql()}'" in str(u) for u in unknown):
                    continue  # each unknown name once, where it is first written
                known = sorted(_known(types))
                unknown.append(RuleError(
                    f"{_inside(place, text, _find(text, node.sql()))}: unknown {noun} '{node.sql()}' in {what}"
                    f"{did_you_mean(node.name, known)} (known: {', '.join(known)})"
                ))
        elif not isinstance(node, ALLOWED_NODES):
            shown = node.sql(DIALECT) if not isinstance(node, exp.Block) else ";"
            first_word = re.split(r"[\s(]+", shown.lstrip("("))[0]
            raise RuleError(f"{_inside(place, text, _find(text, first_word))}: not allowed in {what}: {shown}")
        node.comments = None  # a comment has nothing to say in the generated SQL
    if unknown:
        problem = RuleProblems(unknown)
        problem.tree = tree  # read, only its names unknown: which params it uses can still be told
        raise problem
    return tree


_OPERATORS = {
    "EQ": "=", "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "Add": "+", "Sub": "-", "Mul": "*", "Div": "/",
    "And": "and", "Or": "or", "Not": "not", "Between": "between", "In": "in", "Like": "like", "Is": "is",
}  # fmt: skip


def _parse_problem(description: str) -> str:
    """sqlglot's words for a parse error, in an ops' words where they name its classes.

    >>> _parse_problem("Required keyword: 'expression' missing for <class 'sqlglot.expressions.core.EQ'>")
    "'=' is missing what comes after it"
    """
    found = re.match(r"Required keyword: '(\w+)' missing for <class '[\w.]*\.(\w+)'>", description)
    if not found:
        return description
    operator = _OPERATORS.get(found.group(2), found.group(2).lower())
    side = "what comes after it" if found.group(1) == "expression" else "what comes before it"
    return f"'{operator}' is missing {side}"


def _known(names) -> list[str]:
    """The names a rule file can write (internal ones start with '_')."""
    return [n for n in names if not n.startswith("_")]


NUMERIC_FUNCTIONS = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Abs, exp.Round, exp.Least, exp.Greatest)
LARGEST_NUMBER = 1e15  # far beyond any count or amount; larger literals overflow DuckDB's decimals


class _Types:
    """Metrics are numbers or text; and/or/not join conditions; comparisons compare like with
    like. Checking this here turns what would fail mid-night in DuckDB into a file:line error."""

    def __init__(self, place: Where, text: str, what: str, types: dict[str, str]):
        self.place, self.text, self.what, self.types = place, text, what, types

    def fail(self, shown: str, problem: str) -> RuleError:
        return RuleError(f"{_inside(self.place, self.text, _find(self.text, shown))}: {self.what}: {problem}")

    def expect(self, node: exp.Expression, wanted: str) -> None:
        found = self.type_of(node)
        if found not in (wanted, UNKNOWN):
            shown = node.sql(DIALECT)
            if isinstance(node, exp.Literal):  # 'six' is quoted already
                raise self.fail(shown, f"{found} {shown} where {wanted} belongs")
            raise self.fail(shown, f"'{shown}' is {found} where {wanted} belongs")

    def same(self, operands) -> str:
        """All operands of one kind (numbers with numbers, text with text); that kind."""
        found = UNKNOWN
        for operand in operands:
            kind = self.type_of(operand)
            if kind == CONDITION or kind == DATE:
                raise self.fail(operand.sql(DIALECT), f"'{operand.sql(DIALECT)}' is {kind}; it cannot be compared or computed with")
            if found == UNKNOWN:
                found = kind
            elif kind not in (found, UNKNOWN):
                self.expect(operand, found)
        return found

    def type_of(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return self.type_of(node.this)
        if isinstance(node, exp.Null):
            return UNKNOWN
        if isinstance(node, exp.Boolean):
            return CONDITION
        if isinstance(node, exp.Column):
            return self.types[node.name]
        if isinstance(node, exp.Literal):
            if node.is_string:
                return TEXT
            if abs(float(node.this)) > LARGEST_NUMBER:
                raise self.fail(node.this, f"number {node.this} is too large")
            return NUMBER
        if isinstance(node, exp.Is):
            self.type_of(node.this)
            return CONDITION
        if isinstance(node, (exp.And, exp.Or, exp.Not)):
            for operand in (node.this, node.args.get("expression")):
                if operand is not None:
                    self.expect(operand, CONDITION)
            return CONDITION
        if isinstance(node, exp.Between):
            for operand in (node.this, node.args.get("low"), node.args.get("high")):
                self.expect(operand, NUMBER)
            return CONDITION
        if isinstance(node, (*COMPARISONS, exp.In)):
            self.same([node.this, node.args.get("expression"), *node.expressions] if not isinstance(node, exp.In) else [node.this, *node.expressions])
            return CONDITION
        if isinstance(node, (exp.Like, exp.ILike)):
            for operand in (node.this, node.expression):
                self.expect(operand, TEXT)
            return CONDITION
        if isinstance(node, (exp.Lower, exp.Upper)):
            self.expect(node.this, TEXT)
            return TEXT
        if isinstance(node, exp.Coalesce):
            return self.same([node.this, *node.expressions])
        if isinstance(node, NUMERIC_FUNCTIONS):
            for operand in (node.this, node.args.get("expression"), node.args.get("decimals"), *node.expressions):
                if operand is not None:
                    self.expect(operand, NUMBER)
            return NUMBER
        raise self.fail(node.sql(DIALECT), f"cannot tell what '{node.sql(DIALECT)}' is")


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


def _names(tree: exp.Expression) -> set[str]:
    return {c.name for c in tree.find_all(exp.Column)}


def _names_in_texts(rule: Rule) -> set[str]:
    return {name for texts in (rule.title, rule.message, rule.action) for text in texts.values() for name in placeholders(text)}


# --- compiling -------------------------------------------------------------------------------


def compile_rules(
    ruleset: RuleSet,
    nights: date | list[date],
    account: str | None = None,
    explain: bool = False,
    accounts: exp.Expression | None = None,
    replay: bool = False,
    fired: bool = True,
    dialect: str = DIALECT,
    streamed: bool | None = None,
) -> CompiledRules:
    """One query: a row per account (but closed ones) and night, with its metrics and, per rule,
    `<rule>.holds`, `<rule>.fired` and `<rule>.<value>`. Rows are for every night of the set (the
    earlier ones are there for `for:`); `explain` adds each condition part's operands and result.
    `account` (one id) or `accounts` (a condition on the column account_id) limits the accounts.
    `replay` (the backtest) keeps closed accounts, which were open on past nights as far as
    anyone can tell, and leaves out accounts on nights before their customer_since. Without
    `fired` (the backtest, whose lifecycle decides that), no `fired` columns, and for rules with
    hysteresis none of the window functions they need. `dialect` is the engine's ("duckdb" or
    "spark"): the one tree, with the engine's differences applied (dialects.py). `streamed`
    chooses the compile form (None: streamed from JOINED_NIGHTS nights on, on DuckDB only)."""
    nights = sorted({nights} if isinstance(nights, date) else set(nights))
    rules = [r for r in ruleset.rules if r.enabled]
    checked = {rule.id: check_rule(ruleset, rule) for rule in rules}
    used = set().union(*(c.names for c in checked.values())) if checked else set()
    used = sorted(used | set(groups.INPUTS) if explain else used)  # explain always shows the group
    metrics = [_metric(ruleset, n) for n in used]
    for metric in metrics:
        check_filter(metric)
    if account is not None:
        accounts = exp.column("account_id").eq(exp.Literal.string(account))
    if streamed is None:
        streamed = len(nights) > JOINED_NIGHTS and dialect not in JOINED_ONLY
    bounds = _Bounds()
    ctes: list[tuple[str, exp.Expression]] = []
    tables = sorted({m.table for m in metrics if KINDS[m.kind].reads_rows})
    for table in tables:
        table_metrics = [m for m in metrics if m.table == table and KINDS[m.kind].reads_rows]
        ctes += _table_metrics(table, table_metrics, bounds, accounts, streamed=streamed)
    ctes.insert(0, ("nights", bounds.nights_query(nights)))
    ctes.append(("metrics", _account_metrics(metrics, tables, accounts, replay)))

    outcome_columns: list[exp.Expression] = [exp.column("account_id"), exp.column("night")]
    outcome_columns += [exp.column(m.name) for m in metrics if m.name in ruleset.metrics]
    evidence, parts = {}, {}
    group = groups.group_expression(exp.column) if any(n in groups.INPUTS for n in used) else None
    for rule in rules:
        check = checked[rule.id]
        params = rule.params
        holds = _sql_tree(check.when, check.values, group, params)
        outcome_columns.append(exp.alias_(holds, f"{rule.id}.holds", quoted=True))
        if check.resolve_when is not None:
            resolves = _sql_tree(check.resolve_when, check.values, group, params)
            outcome_columns.append(exp.alias_(resolves, f"{rule.id}.resolves", quoted=True))
        for name, tree in check.values.items():
            outcome_columns.append(exp.alias_(_sql_tree(tree, check.values, group, params), f"{rule.id}.{name}", quoted=True))
        trees = [check.when, *check.values.values(), *([check.resolve_when] if check.resolve_when is not None else [])]
        shown = ({n for t in trees for n in _names(t)} | _names_in_texts(rule)) - set(check.values)
        evidence[rule.id] = sorted(shown | set(check.values))
        for name in sorted(shown & set(params)):
            # As a double (a literal 0.5 is a DECIMAL in DuckDB, which the evidence's JSON cannot hold).
            shown_as = _number(params[name]) if isinstance(params[name], int) else exp.cast(_number(params[name]), exp.DataType.build("double"))
            outcome_columns.append(exp.alias_(shown_as, f"{rule.id}.{name}", quoted=True))
        if "loyalty_group" in evidence[rule.id]:
            outcome_columns.append(exp.alias_(group.copy(), f"{rule.id}.loyalty_group", quoted=True))
        if explain:
            parts[rule.id] = []
            for index, part in enumerate(p for p in check.when.walk(bfs=False) if isinstance(p, PARTS)):
                operands = [o for o in (part.this, part.args.get("expression"), part.args.get("low"), part.args.get("high"), *part.expressions) if o is not None and not isinstance(o, exp.Null)]
                parts[rule.id].append((part.sql(DIALECT), len(operands)))
                outcome_columns.append(exp.alias_(_sql_tree(part, check.values, group, params), f"{rule.id}.part{index}", quoted=True))
                for position, operand in enumerate(operands):
                    outcome_columns.append(exp.alias_(_sql_tree(operand, check.values, group, params), f"{rule.id}.part{index}.{position}", quoted=True))
    if explain:
        outcome_columns.append(exp.alias_(group.copy(), "loyalty_group"))
    ctes.append(("outcomes", exp.select(*outcome_columns).from_("metrics")))
    source = "outcomes"
    steady = [r for r in rules if r.hysteresis] if fired else []
    if steady:
        for name, cte in _hysteresis_stages(steady):
            ctes.append((name, cte))
        source = ctes[-1][0]
    kept = [exp.column(c.alias_or_name, quoted=True) for c in outcome_columns]
    fired_columns = [*kept, *[exp.alias_(_fired(rule), f"{rule.id}.fired", quoted=True) for rule in rules if fired]]
    query = exp.select(*fired_columns).from_(source)
    for name, cte in ctes:
        query = query.with_(name, as_=cte)
    query = query.order_by("account_id", "night")
    return CompiledRules(for_dialect(query, dialect).sql(dialect, pretty=True), rules, evidence, [m.name for m in metrics], parts)


def with_variants(ruleset: RuleSet, rule_id: str, combinations: list[dict[str, float]]) -> RuleSet:
    """The rule once per combination of its params, as rules `<rule_id>@<n>` (n from 0, in the
    order given), and nothing else: for `loyalty tune`, which hands the result to the backtest
    so that the metrics are computed once and every combination is one more column of the same
    query (and one more rule id in the replayed lifecycle). A combination names some of the
    rule's params; the others keep their values from the file.

    >>> variants = with_variants(ruleset, "falling_order_frequency", [{"share": 0.4}, {"share": 0.5}])
    >>> [r.id for r in variants.rules]
    ['falling_order_frequency@0', 'falling_order_frequency@1']
    """
    rule = next((r for r in ruleset.rules if r.id == rule_id), None)
    if rule is None:
        raise RuleError(f"unknown rule '{rule_id}'{did_you_mean(rule_id, [r.id for r in ruleset.rules])}")
    variants = []
    for index, combination in enumerate(combinations):
        for name, value in combination.items():
            if name not in rule.params:
                known = ", ".join(rule.params) or "none"
                raise RuleError(f"{rule.where}: rule '{rule_id}' has no param '{name}'{did_you_mean(name, rule.params)} (its params: {known})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > LARGEST_NUMBER:
                raise RuleError(f"{rule.where}: param '{name}' of rule '{rule_id}' must be a number, got {value!r}")
        # A variant warns on its own: it hides nothing, so each combination's figures are its own.
        variants.append(dataclasses.replace(rule, id=f"{rule_id}@{index}", params={**rule.params, **combination}, inhibits=(), enabled=True))
    return RuleSet(ruleset.metrics, variants)


def _held_for(rule: Rule) -> exp.Expression:
    """True when the condition held on each of the rule's last `for` nights of the set."""
    held = exp.Case(ifs=[exp.If(this=exp.column(f"{rule.id}.holds", quoted=True), true=exp.Literal.number(1))], default=exp.Literal.number(0))
    if rule.for_nights == 1:
        return exp.EQ(this=held, expression=exp.Literal.number(1))
    window = exp.Window(
        this=exp.Sum(this=held),
        partition_by=[exp.column("account_id")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("night"))]),
        spec=exp.WindowSpec(
            kind="ROWS",
            start=exp.Literal.number(rule.for_nights - 1),
            start_side="PRECEDING",
            end="CURRENT ROW",
        ),
    )
    return exp.EQ(this=window, expression=exp.Literal.number(rule.for_nights))


def _fired(rule: Rule) -> exp.Expression:
    """`<rule>.fired`: whether the warning fires on the night, as the lifecycle would decide over
    the nights of the set (for rule tests and `explain`, which see no stored warnings)."""
    if not rule.hysteresis:
        return _held_for(rule)
    return exp.column(f"{rule.id}._fired", quoted=True)


def _hysteresis_stages(rules: list[Rule]) -> list[tuple[str, exp.Select]]:
    """For rules that resolve on something else than `when` no longer holding, `<rule>._fired`
    as window functions over the nights of the set, the same state machine as the lifecycle's:

    - a night *keeps* a firing warning when `when` holds, or (with resolve_when) resolve_when
      does not; it is *calm* when it is known not to keep it; unknown nights are neither;
    - the warning starts on a night `when` held on the `for` nights up to it (`_held_for`);
    - it resolves on the night its calm nights since the last night that kept it exceed
      keep_firing_for (0 without it): the first calm night, or the N+1-th;
    - it fires on a night when it started on or before it and has not resolved since.

    Four stages, since a window function cannot read another's result."""
    def col(rule: Rule, name: str) -> exp.Column:
        return exp.column(f"{rule.id}.{name}", quoted=True)

    def history(this: exp.Expression) -> exp.Window:
        return exp.Window(
            this=this,
            partition_by=[exp.column("account_id")],
            order=exp.Order(expressions=[exp.Ordered(this=exp.column("night"))]),
            spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"),
        )

    night = exp.column("night")
    first = exp.select(exp.Star()).from_("outcomes")
    second = exp.select(exp.Star()).from_("steady_1")
    third = exp.select(exp.Star()).from_("steady_2")
    fourth = exp.select(exp.Star()).from_("steady_3")
    for rule in rules:
        holds = col(rule, "holds")
        keeps = holds if rule.resolve_when is None else exp.Case(ifs=[exp.If(this=holds, true=exp.true())], default=exp.not_(col(rule, "resolves")))
        first = first.select(exp.alias_(_held_for(rule), f"{rule.id}._started", quoted=True), exp.alias_(keeps, f"{rule.id}._keeps", quoted=True))
        calm = exp.Case(ifs=[exp.If(this=exp.Is(this=col(rule, "_keeps"), expression=exp.false()), true=exp.Literal.number(1))], default=exp.Literal.number(0))
        started_on = exp.Case(ifs=[exp.If(this=col(rule, "_started"), true=night.copy())])
        second = second.select(
            exp.alias_(history(exp.Sum(this=calm)), f"{rule.id}._calm_total", quoted=True),
            exp.alias_(history(exp.Max(this=started_on)), f"{rule.id}._started_on", quoted=True),
        )
        # The calm total at the last night that kept the warning (it only grows, so its max).
        at_keep = exp.Case(ifs=[exp.If(this=col(rule, "_keeps"), true=col(rule, "_calm_total"))])
        calm_run = exp.Sub(this=col(rule, "_calm_total"), expression=exp.Coalesce(this=history(exp.Max(this=at_keep)), expressions=[exp.Literal.number(0)]))
        resolved_on = exp.Case(ifs=[exp.If(this=exp.GT(this=calm_run, expression=exp.Literal.number(rule.keep_firing_for)), true=night.copy())])
        third = third.select(exp.alias_(resolved_on, f"{rule.id}._resolved_on", quoted=True))
        last_resolved = history(exp.Max(this=col(rule, "_resolved_on")))
        fires = exp.and_(
            exp.Is(this=col(rule, "_started_on"), expression=exp.null()).not_(),
            exp.or_(exp.Is(this=last_resolved, expression=exp.null()), exp.LT(this=last_resolved.copy(), expression=col(rule, "_started_on"))),
        )
        fourth = fourth.select(exp.alias_(fires, f"{rule.id}._fired", quoted=True))
    return [("steady_1", first), ("steady_2", second), ("steady_3", third), ("steady_4", fourth)]


def _number(value: float) -> exp.Expression:
    """A param's value as a literal (a negative one as -x, which sqlglot writes back the same)."""
    literal = exp.Literal.number(abs(value))
    return exp.Neg(this=literal) if value < 0 else literal


def _sql_tree(
    tree: exp.Expression, values: dict[str, exp.Expression], group: exp.Expression | None, params: dict[str, float] | None = None
) -> exp.Expression:
    """A condition or value as SQL: value names replaced by their expressions, params by their
    numbers, the built-in group by its CASE, and every division made null-safe."""
    params = params or {}

    def replace(node):
        if isinstance(node, exp.Column) and node.name in values:
            return exp.paren(_sql_tree(values[node.name], values, group, params))
        if isinstance(node, exp.Column) and node.name in params:
            return exp.paren(_number(params[node.name]))
        if isinstance(node, exp.Column) and node.name == "loyalty_group":
            return exp.paren(group.copy())
        if isinstance(node, exp.Column):
            return exp.column(node.name)
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


class _Bounds:
    """The window edges metrics need, as date columns of the nights CTE (computed once per
    night, not once per order row)."""

    def __init__(self):
        self.columns: dict[tuple[Span, ...], str] = {}

    def before(self, *spans: Span) -> exp.Column:
        """The column holding `night - spans…`."""
        key = tuple(s for s in spans if s.amount)
        if not key:
            return exp.column("night", "n")
        name = self.columns.setdefault(key, f"before_{len(self.columns)}")
        return exp.column(name, "n")

    def nights_query(self, nights: list[date]) -> exp.Select:
        values = exp.values([exp.tuple_(_day(night)) for night in nights], alias="given", columns=["night"])
        select = exp.select("night").from_(values)
        for spans, name in self.columns.items():
            edge: exp.Expression = exp.column("night")
            for span in spans:
                amount, unit = (span.amount * 7, "DAY") if span.unit == "w" else (span.amount, {"d": "DAY", "m": "MONTH", "y": "YEAR"}[span.unit])
                edge = exp.DateSub(this=edge, expression=exp.Literal.number(amount), unit=exp.var(unit))
            select = select.select(exp.alias_(exp.cast(edge, exp.DataType.build("date")), name))
        return select


def _timestamp(day: exp.Expression) -> exp.Expression:
    # Without a time zone: Spark's TIMESTAMP is the session's local time, whose DST days are not 24 h.
    return exp.cast(day, exp.DataType.build("timestamp_ntz"))


def _frame(metric: Metric) -> exp.WindowSpec:
    """The metric's window as a RANGE frame ending at the probe: a window of N ending at E covers
    E-N+1 … E, as `window_bounds` says (rows at midday before their day, so `N DAY` before the
    probe at midnight of E reaches exactly to E-N+1)."""
    if metric.window is None:
        return exp.WindowSpec(kind="RANGE", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW")
    return exp.WindowSpec(kind="RANGE", start=_interval([metric.window]), start_side="PRECEDING", end="CURRENT ROW")


def _earlier_frame(window: Span, earlier: Span) -> exp.WindowSpec:
    """The RANGE frame, from a probe on a window's end, of the span `earlier` before that window:
    from `window + earlier` to `window` PRECEDING (months are taken before days, as the nights'
    edges are)."""
    return exp.WindowSpec(kind="RANGE", start=_interval([window, earlier]), start_side="PRECEDING", end=_interval([window]), end_side="PRECEDING")


def _interval(spans: list[Span]) -> exp.Interval:
    """The spans summed as one whole interval: `N DAY` or `M MONTH`. Months and days together
    (a window in months with a baseline in days) only DuckDB runs; the Spark pass refuses it."""
    months = sum(s.amount * (12 if s.unit == "y" else 1) for s in spans if s.unit in ("m", "y"))
    days = sum(s.amount * (7 if s.unit == "w" else 1) for s in spans if s.unit in ("d", "w"))
    if not months:
        return exp.Interval(this=exp.Literal.string(str(days)), unit=exp.var("DAY"))
    if not days:
        return exp.Interval(this=exp.Literal.string(str(months)), unit=exp.var("MONTH"))
    return exp.Interval(this=exp.Literal.string(f"{months} months {days} days"))


@dataclass(frozen=True)
class _Span:
    """The window a reading reads: `window` long, ending `ending` (summed) before the night."""

    ending: tuple[Span, ...]
    window: Span | None


# Up to this many nights, a table's rows are joined to the nights they count for; from more on,
# rows and per-night probes are sorted into one stream and every metric is a window frame over
# it (benchmarks/README.md: one night 0.6 s joined against 3.5 s streamed at 10k accounts, a
# year 46 s streamed against 220 s for 365 single nights).
JOINED_NIGHTS = 7
# Spark's moving frames have no way to take a row out of an aggregate: percentile, collect_set and
# max_by are recomputed over the whole frame for every row, so the streamed form costs rows x
# frame there (30 nights of 65 accounts: 790 s on local[1], against 45 s joined). Spark scales
# the joined form out instead; the streamed form's Spark SQL is still generated and checked.
JOINED_ONLY = ("spark",)


class _Rows:
    """The CTE `<table>_rows` as it is built: one scan of the table, with every column the
    table's metrics read carried on its rows."""

    def __init__(self, table: str):
        spec = TABLES[table]
        self.event = exp.column(spec.event_date, "t")
        self.key = exp.column(spec.key, "t")
        self.select = exp.select(exp.column("account_id", "t"), exp.alias_(self.event, "day"))
        self.on_probes: dict[str, exp.Expression] = {}  # streamed: columns the probes carry (window starts)
        self.place = self.carry("seq", exp.Window(this=exp.RowNumber(), **self.history()))

    def history(self, *partition: exp.Expression) -> dict:
        """The account's rows in the order they happened (ties on one day broken by the key)."""
        return {
            "partition_by": [exp.column("account_id", "t"), *partition],
            "order": exp.Order(expressions=[exp.Ordered(this=self.event.copy()), exp.Ordered(this=self.key.copy())]),
        }

    def carry(self, name: str, expression: exp.Expression) -> exp.Column:
        if name not in self.select.named_selects:
            self.select.select(exp.alias_(expression, name), copy=False)
        return exp.column(name)


class _Reading:
    """What a kind's `compile` builds one metric's value from (kinds.py lists what it offers)."""

    night: exp.Expression

    def __init__(self, metric: Metric):
        self.metric = metric

    def days_since(self, day: exp.Expression) -> exp.Expression:
        return exp.DateDiff(this=self.night.copy(), expression=day, unit=exp.var("DAY"))


class _AccountReading(_Reading):
    """A metric over the account's own row (the `accounts` table, aliased a, beside the night n)."""

    night = exp.column("night", "n")

    def column(self) -> exp.Column:
        return exp.column(self.metric.column, "a")


class _RowsReading(_Reading):
    """A metric over its table's rows; the two compile forms differ in `over` and in where the
    window is applied (subclasses)."""

    night = exp.column("night")
    counts: exp.Expression  # the condition a row must meet to count for the metric

    def __init__(self, rows: _Rows, metric: Metric, index: int | str, bounds: _Bounds, span: _Span | None = None):
        super().__init__(metric)
        self.rows, self.index, self.bounds = rows, index, bounds
        # The window read: the metric's own, or (`earlier`) a span ending where another begins.
        self.span = span or _Span((metric.ending,), metric.window)
        self.matching: list[exp.Expression] = []
        self.counts = exp.true()
        filter_tree = check_filter(metric)
        if filter_tree is not None:
            self.matching = [exp.paren(filter_tree.transform(lambda n: exp.column(n.name, "t") if isinstance(n, exp.Column) else n))]
            self.counts = rows.carry(f"match_{str(index).rstrip('b')}", self.matching[0].copy())
        self.window_start = bounds.before(*self.span.ending, self.span.window) if self.span.window is not None else None
        self.window_end = bounds.before(*self.span.ending)

    def earlier(self, window: Span) -> "_RowsReading":
        """The same metric's rows over `window` ending where this reading's window begins (the
        baseline before an observed window): a reading of the same form, with its own edges."""
        return type(self)(self.rows, self.metric, f"{self.index}b", self.bounds, _Span((*self.span.ending, self.span.window), window))

    def earliest(self, value: exp.Expression) -> exp.Expression:
        # NULL values filtered here: DuckDB's arg_min skips them, Spark's min_by returns them.
        return self.over(exp.ArgMin(this=value, expression=self.rows.place.copy()), also=_not_null(value))

    def running(self, value: exp.Expression, within: exp.Expression) -> exp.Expression:
        """Per row: the sum of `value` over the account's matching rows with the same `within`
        (a period), up to and including this row, in the order they happened."""
        return exp.Window(
            this=exp.Sum(this=value), **self.rows.history(*self.matching, within),
            spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"),
        )

    def total(self, value: exp.Expression, within: exp.Expression) -> exp.Expression:
        """Per row: the sum of `value` over the account's matching rows with the same `within`."""
        return exp.Window(this=exp.Sum(this=value), partition_by=self.rows.history(*self.matching, within)["partition_by"])

    def first(self, value: exp.Expression) -> exp.Expression:
        """Per row: the smallest `value` over all the account's rows (e.g. its first day)."""
        return exp.Window(this=exp.Min(this=value), partition_by=[exp.column("account_id", "t")])

    def over(self, aggregate: exp.Expression, also: exp.Expression | None = None) -> exp.Expression:
        raise NotImplementedError

    def latest(self, value: exp.Expression) -> exp.Expression:
        return self.over(exp.ArgMax(this=value, expression=self.rows.place.copy()), also=_not_null(value))

    def column(self) -> exp.Column:
        return self.rows.carry(self.metric.column, self.table_column())

    def table_column(self) -> exp.Column:
        return exp.column(self.metric.column, "t")

    @property
    def event(self) -> exp.Expression:
        return self.rows.event.copy()

    @property
    def day(self) -> exp.Column:
        return exp.column("day")

    def before(self, value: exp.Expression) -> exp.Expression:
        return exp.Window(this=exp.Lag(this=value), **self.rows.history(*self.matching))

    def keep(self, name: str, value: exp.Expression) -> exp.Column:
        return self.rows.carry(f"{name}_{self.index}", value)

    def _counting(self, also: exp.Expression | None) -> exp.Expression:
        return self.counts.copy() if also is None else exp.and_(self.counts, also)


class _Joined(_RowsReading):
    """Joined: every row meets the nights it can count for, and rows are grouped by (account,
    night); a row counts when its day lies in the night's window."""

    def __init__(self, rows: _Rows, metric: Metric, index: int | str, bounds: _Bounds, span: _Span | None = None):
        super().__init__(rows, metric, index, bounds, span)
        inside = exp.column("day") <= self.window_end.copy()
        if self.window_start is not None:
            inside = exp.and_(exp.column("day") > self.window_start.copy(), inside)
        self.counts = inside if self.counts == exp.true() else exp.and_(self.counts, inside)

    def over(self, aggregate: exp.Expression, also: exp.Expression | None = None) -> exp.Expression:
        return _filtered(aggregate, self._counting(also))


class _Streamed(_RowsReading):
    """Streamed: each night is a probe row on the day its window ends, and the aggregates run
    over the probe's trailing RANGE frame (real rows count, probes do not)."""

    def __init__(self, rows: _Rows, metric: Metric, index: int | str, bounds: _Bounds, span: _Span | None = None):
        super().__init__(rows, metric, index, bounds, span)
        real_row = exp.column("night").is_(exp.null())
        self.counts = real_row if self.counts == exp.true() else exp.and_(real_row, self.counts)
        if self.window_start is not None:
            rows.on_probes[f"window_start_{index}"] = self.window_start
            self.window_start = exp.column(f"window_start_{index}")
        # The probes of the metric's ending sit on its window's end; an earlier span ends before.
        rows.on_probes[f"window_end_{index}"] = self.window_end
        self.window_end = exp.column(f"window_end_{index}")

    def over(self, aggregate: exp.Expression, also: exp.Expression | None = None) -> exp.Expression:
        spec = _frame(self.metric) if self.span.ending == (self.metric.ending,) else _earlier_frame(self.metric.window, self.span.window)
        return exp.Window(
            this=_filtered(aggregate, self._counting(also)),
            partition_by=[exp.column("account_id")],
            order=exp.Order(expressions=[exp.Ordered(this=exp.column("at"))]),
            spec=spec,
        )


def _table_metrics(
    table: str, metrics: list[Metric], bounds: _Bounds, accounts: exp.Expression | None, streamed: bool
) -> list[tuple[str, exp.Expression]]:
    """Every metric of one table, per account with rows and night: the CTEs `<table>_rows` (the
    table's rows with what the aggregates read) and `<table>_metrics`.

    Both ways of computing give the same values: each metric is one or two aggregates over the
    rows in its window (and where filter), built by its kind from a reading of the form."""
    rows = _Rows(table)
    form = _Streamed if streamed else _Joined
    staged = [_staged(KINDS[metric.kind].compile(form(rows, metric, index, bounds))) for index, metric in enumerate(metrics)]
    # Every part is a column of the grouped (or streamed) rows: the metric's value itself under
    # its name, or a staged metric's parts under names of its own, finished in later SELECTs.
    values = [
        (metric, name if stage.steps else metric.name, value)
        for index, (metric, stage) in enumerate(zip(metrics, staged))
        for name, value in ((_part(index, n), v) for n, v in stage.parts.items())
    ]

    # Rows after the last night never count; nor rows before every window (but a kind that
    # reaches before its window, as the rhythm's first gap does, keeps all history).
    event = rows.event
    condition: exp.Expression = event <= exp.Subquery(this=exp.select(exp.Max(this=exp.column("night"))).from_("nights"))
    if all(m.window is not None and not KINDS[m.kind].reaches_before_window for m in metrics):
        oldest = [bounds.before(m.ending, m.window) for m in metrics]
        first = exp.select(exp.Min(this=oldest[0] if len(oldest) == 1 else exp.Least(this=oldest[0], expressions=oldest[1:])))
        condition = exp.and_(condition, event > exp.Subquery(this=first.from_(exp.alias_(exp.to_table("nights"), "n"))))
    if accounts is not None:
        condition = exp.and_(condition, accounts.transform(lambda n: exp.column(n.name, "t") if isinstance(n, exp.Column) else n))
    select = rows.select.from_(exp.alias_(exp.to_table(table), "t")).where(condition)
    if streamed:
        per_night = _streamed(table, select, values, bounds, rows.on_probes)
    else:
        per_night = exp.select(exp.column("account_id", "r"), exp.column("night", "n"), *[exp.alias_(v, name) for _, name, v in values])
        per_night = per_night.from_(exp.alias_(exp.to_table(f"{table}_rows"), "r"))
        per_night = per_night.join(exp.alias_(exp.to_table("nights"), "n"), on=exp.column("day", "r") <= exp.column("night", "n"), join_type="inner")
        # The window edges are the night's, one value per group; `previous` compares with one.
        edges = [exp.column(name, "n") for name in bounds.columns.values()]
        per_night = per_night.group_by(exp.column("account_id", "r"), exp.column("night", "n"), *edges)
    return [(f"{table}_rows", select), (f"{table}_metrics", _finished(per_night, metrics, staged))]


def _staged(value: exp.Expression | kinds.Staged) -> kinds.Staged:
    return value if isinstance(value, kinds.Staged) else kinds.Staged({"value": value}, [])


def _part(index: int, name: str) -> str:
    """The column of a staged metric's part or step (metric names start with a letter)."""
    return f"_m{index}_{name}"


def _finished(per_night: exp.Select, metrics: list[Metric], staged: list[kinds.Staged]) -> exp.Select:
    """The staged metrics' steps on the per-(account, night) rows, each step a SELECT over the
    one before (so each named value is computed once, and only per account and night), then
    every metric under its name."""
    if not any(stage.steps for stage in staged):
        return per_night
    query = per_night
    for level in range(max(len(stage.steps) for stage in staged)):
        columns: list[exp.Expression] = [exp.Star()]
        for index, stage in enumerate(staged):
            if level < len(stage.steps):
                known = set(stage.parts).union(*stage.steps[:level])
                columns += [exp.alias_(_local(value, index, known), _part(index, name)) for name, value in stage.steps[level].items()]
        query = exp.select(*columns).from_(query.subquery(f"step_{level}"))
    names = [exp.alias_(exp.column(_part(i, "value")), m.name) if stage.steps else exp.column(m.name) for i, (m, stage) in enumerate(zip(metrics, staged))]
    return exp.select(exp.column("account_id"), exp.column("night"), *names).from_(query.subquery("finished"))


def _local(value: exp.Expression, index: int, known: set[str]) -> exp.Expression:
    """A step's expression with the names of its metric's parts and earlier steps as columns."""
    return value.copy().transform(lambda n: exp.column(_part(index, n.name)) if isinstance(n, exp.Column) and not n.table and n.name in known else n)


def _streamed(
    table: str, rows: exp.Select, values: list[tuple[Metric, str, exp.Expression]], bounds: _Bounds, carried: dict[str, exp.Expression]
) -> exp.Select:
    """The table's rows and a probe per (account with rows, night, window end) in one stream, each
    probe on the day its windows end; each value (named) read from the probes of its metric's
    own window end."""
    endings = list(dict.fromkeys(m.ending for m, _, _ in values))
    columns = rows.named_selects[2:]
    window_end = exp.Case(ifs=[exp.If(this=exp.column("ending", "k").eq(i), true=bounds.before(ending)) for i, ending in enumerate(endings)])
    ends = exp.values([exp.tuple_(exp.Literal.number(i)) for i in range(len(endings))], alias="k", columns=["ending"])
    probes = exp.select(
        exp.column("account_id", "a"),
        exp.alias_(window_end, "day"),
        exp.alias_(_timestamp(window_end.copy()), "at"),
        exp.column("night", "n"),
        exp.column("ending", "k"),
        *[exp.alias_(exp.null(), c) for c in columns],
        *[exp.alias_(bound.copy(), name) for name, bound in carried.items()],
    )
    with_rows = exp.select("account_id").distinct().from_(f"{table}_rows")
    probes = probes.from_(exp.alias_(exp.paren(with_rows), "a")).join(exp.alias_(exp.to_table("nights"), "n"), join_type="cross").join(ends, join_type="cross")
    # Rows sit at midday of the day before (the frames' key is a timestamp), probes at midnight: a
    # frame of a whole `INTERVAL 'N' DAY` or `'M' MONTH` before the probe then holds exactly the
    # days of the window, with no interval mixing months and days, which Spark rejects.
    row_at = exp.Sub(this=_timestamp(exp.column("day")), expression=exp.Interval(this=exp.Literal.string("12"), unit=exp.var("HOUR")))
    real = exp.select("account_id", "day", exp.alias_(row_at, "at"), exp.alias_(exp.null(), "night"), exp.alias_(exp.null(), "ending"), *columns, *[exp.alias_(exp.null(), c) for c in carried])
    stream = exp.union(real.from_(f"{table}_rows"), probes, distinct=False)
    windowed = exp.select("account_id", "night", "ending", *[exp.alias_(v, f"value_{i}") for i, (_, _, v) in enumerate(values)])
    windowed = windowed.from_(exp.alias_(exp.paren(stream), "s"))
    picked = [
        exp.alias_(_filtered(exp.Max(this=exp.column(f"value_{i}")), exp.column("ending").eq(endings.index(m.ending))), name)
        for i, (m, name, _) in enumerate(values)
    ]
    per_night = exp.select("account_id", "night", *picked).from_(exp.alias_(exp.paren(windowed), "w"))
    return per_night.where(exp.column("night").is_(exp.null()).not_()).group_by("account_id", "night")


def _not_null(value: exp.Expression) -> exp.Expression:
    return exp.Is(this=value.copy(), expression=exp.null()).not_()


def _filtered(aggregate: exp.Expression, condition: exp.Expression) -> exp.Expression:
    return exp.Filter(this=aggregate, expression=exp.Where(this=condition))


def _account_metrics(metrics: list[Metric], tables: list[str], accounts: exp.Expression | None, replay: bool) -> exp.Select:
    """Every account (but closed ones) x night, with its metrics."""
    query = exp.select(exp.column("account_id", "a"), exp.column("night", "n"))
    query = query.from_(exp.alias_(exp.to_table("accounts"), "a")).join(exp.alias_(exp.to_table("nights"), "n"), join_type="cross")
    # Closed accounts are gone already; warning about them is noise.
    condition = exp.func("coalesce", exp.column("status", "a"), exp.Literal.string("active")).neq("closed")
    if replay:
        since = exp.column("customer_since", "a")
        condition = exp.or_(since.is_(exp.null()), since <= exp.column("night", "n"))
    if accounts is not None:
        condition = exp.and_(condition, accounts.transform(lambda n: exp.column(n.name, "a") if isinstance(n, exp.Column) else n))
    query = query.where(condition)
    for table in tables:
        alias = f"{table}_metrics"
        query = query.join(
            exp.to_table(alias),
            on=exp.and_(
                exp.column("account_id", alias).eq(exp.column("account_id", "a")),
                exp.column("night", alias).eq(exp.column("night", "n")),
            ),
            join_type="left",
        )
    for metric in metrics:
        kind = KINDS[metric.kind]
        if not kind.reads_rows:
            value = kind.compile(_AccountReading(metric))
        else:
            value = exp.column(metric.name, f"{metric.table}_metrics")
            # The extract holds every row of the account: over no rows, a count is a real zero.
            if kind.when_empty is not None:
                value = exp.Coalesce(this=value, expressions=[exp.Literal.number(kind.when_empty)])
        query = query.select(exp.alias_(value, metric.name), copy=False)
    return query


def _day(day: date) -> exp.Expression:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.build("date"))
