"""Where an engine's SQL differs from DuckDB's: one pass per dialect over the compiled tree.

The compiler builds one tree from the portable forms both engines agree on (window frames keyed
on a timestamp with whole DAY or MONTH intervals, FILTER, NULLs filtered before arg_max, NULLIF
before every division). What is left differs by function, not by shape, and is rewritten here,
node by node, just before the SQL is generated: DuckDB needs nothing, Spark these
(`SPARK_TRANSFORMS`, as a sqlglot generator's TRANSFORMS table):

- `median(x)` over a frame is rejected: `percentile(x, 0.5)`, exact, the same value;
- `count(DISTINCT x)` over a frame is rejected: `size(collect_set(x))`;
- `a / b` divides decimals as decimals with 6 to 12 places; DuckDB divides as doubles: the
  dividend is cast to DOUBLE, so both divide the same doubles;
- a value named earlier in a table's rows SELECT and read by name inside a window function
  (a lateral alias) is rejected: the name is replaced by its expression;
- `unusual`'s sum over k: DuckDB's `list_sum(list_transform(range(…), lambda k: …))` becomes
  `aggregate(sequence(…), 0D, (acc, k) -> acc + …)`, and `lgamma`, which Spark lacks, Stirling's
  series shifted by ten (below);
- an interval mixing months and days (a window in months with a baseline in days before it)
  has no Spark form: a RuleError names the metric kind's limit.

    >>> from sqlglot import exp
    >>> for_dialect(exp.Median(this=exp.column("gap")), "spark").sql("spark")
    'PERCENTILE(gap, 0.5)'
"""

from __future__ import annotations

import math

from sqlglot import exp

from loyalty_engine.errors import RuleError

DIALECTS = ("duckdb", "spark")


def for_dialect(tree: exp.Expression, dialect: str) -> exp.Expression:
    """The compiled tree with `dialect`'s differences applied (a copy; DuckDB's is the tree itself)."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect '{dialect}' (known: {', '.join(DIALECTS)})")
    if dialect == "duckdb":
        return tree
    return _spark(tree.copy())


def _spark(tree: exp.Expression) -> exp.Expression:
    # One walk per entry, in order, so a rewritten node's insides are still seen by the next.
    for kinds, rewrite in SPARK_TRANSFORMS:
        tree = tree.transform(lambda node: rewrite(node) if isinstance(node, kinds) else node, copy=False)
    return tree


def _percentile(node: exp.Median) -> exp.Expression:
    return exp.Anonymous(this="PERCENTILE", expressions=[node.this, exp.Literal.number(0.5)])


def _distinct_as_set(node: exp.Expression) -> exp.Expression:
    """`count(DISTINCT x)` (inside its FILTER and OVER) as the size of the set of x."""
    counted = node.find(exp.Count)
    if counted is None or not isinstance(counted.this, exp.Distinct):
        return node
    [value] = counted.this.expressions
    as_set = exp.ArrayUniqueAgg(this=value.copy())
    if counted is node:
        return exp.ArraySize(this=as_set)
    node = node.copy()
    node.find(exp.Count).replace(as_set)
    return exp.ArraySize(this=node)


def _aggregate_with_distinct(node: exp.Expression) -> exp.Expression:
    # The outermost of count / FILTER / OVER is rewritten, so the set is taken over the frame.
    if isinstance(node.parent, (exp.Filter, exp.Window)):
        return node
    return _distinct_as_set(node)


def _double_division(node: exp.Div) -> exp.Expression:
    if isinstance(node.this, exp.Cast) and node.this.to.is_type("double"):
        return node
    return exp.Div(this=exp.cast(node.this, exp.DataType.build("double")), expression=node.expression)


def _anonymous(node: exp.Anonymous) -> exp.Expression:
    name = node.name.upper()
    if name == "LGAMMA":
        return log_gamma(node.expressions[0])
    if name == "LIST_SUM" and isinstance(node.expressions[0], exp.Transform):
        return _summed(node.expressions[0])
    return node


def _summed(transform: exp.Transform) -> exp.Expression:
    """`list_sum(list_transform(range(low, high + 1), lambda k: term))` as Spark's aggregate; NULL
    over no terms, as list_sum of an empty list (Spark's sequence would count down instead)."""
    series, function = transform.this, transform.expression
    low = series.args["start"]
    high = series.args["end"]
    if series.args.get("is_end_exclusive"):
        high = exp.Sub(this=high, expression=exp.Literal.number(1))
    # The new node's insides are not walked again: its log-gammas are replaced here.
    term = function.this.copy().transform(lambda n: log_gamma(n.expressions[0]) if isinstance(n, exp.Anonymous) and n.name.upper() == "LGAMMA" else n)
    total = exp.Anonymous(
        this="AGGREGATE",
        expressions=[
            exp.Anonymous(this="SEQUENCE", expressions=[low.copy(), high.copy()]),
            exp.cast(exp.Literal.number(0), exp.DataType.build("double")),
            exp.Lambda(this=exp.Add(this=exp.column("acc"), expression=term), expressions=[exp.to_identifier("acc"), *function.expressions]),
        ],
    )
    return exp.Case(ifs=[exp.If(this=exp.GTE(this=high.copy(), expression=low.copy()), true=total)])


# ln Γ(z) = ln Γ(z + 10) - ln(z (z + 1) … (z + 9)), and for w = z + 10 >= 10 Stirling's series
#   ln Γ(w) = (w - 1/2) ln w - w + ln(2π)/2 + 1/(12 w) - 1/(360 w^3) + 1/(1260 w^5) - 1/(1680 w^7) + 1/(1188 w^9),
# whose first term left out is below 2e-14 there. The product of ten factors stays far from a
# double's range for any count or size a rule meets (below 1e300 up to z = 1e29).
SHIFT = 10
_STIRLING = ((1, 12, 1), (-1, 360, 3), (1, 1260, 5), (-1, 1680, 7), (1, 1188, 9))


def log_gamma(z: exp.Expression) -> exp.Expression:
    """ln Γ(z) for z > 0 in plain arithmetic and LN (for engines without lgamma)."""
    z = exp.cast(z.copy(), exp.DataType.build("double"))  # k is a whole number: its product of ten would overflow
    w = exp.paren(exp.Add(this=z.copy(), expression=exp.Literal.number(SHIFT)))
    value: exp.Expression = exp.Sub(
        this=exp.Mul(this=exp.paren(exp.Sub(this=w.copy(), expression=exp.Literal.number(0.5))), expression=exp.Ln(this=w.copy())),
        expression=w.copy(),
    )
    value = exp.Add(this=value, expression=exp.Literal.number(repr(math.log(2 * math.pi) / 2)))
    for sign, divisor, power in _STIRLING:
        piece = exp.Div(
            this=exp.Literal.number(1),
            expression=exp.paren(exp.Mul(this=exp.Literal.number(divisor), expression=exp.Pow(this=w.copy(), expression=exp.Literal.number(power)))),
        )
        value = exp.Add(this=value, expression=piece) if sign > 0 else exp.Sub(this=value, expression=piece)
    product: exp.Expression = z.copy()
    for step in range(1, SHIFT):
        product = exp.Mul(this=product, expression=exp.paren(exp.Add(this=z.copy(), expression=exp.Literal.number(step))))
    return exp.paren(exp.Sub(this=value, expression=exp.Ln(this=product)))


def _interval(node: exp.Interval) -> exp.Expression:
    if node.unit is None and "month" in node.name.lower() and "day" in node.name.lower():
        raise RuleError(
            f"a window in months with a span in days before it (INTERVAL '{node.name}') cannot be evaluated on Spark, "
            "which does not mix months and days in a frame; write the window in days"
        )
    return node


def _no_lateral_aliases(node: exp.Select) -> exp.Expression:
    """A table's rows CTE (`FROM <table> AS t`) names values once and reads them by name further
    on in the same SELECT; Spark allows that, but not inside a window function: there the
    names are replaced by what they stand for. Columns of the table are always written t.x."""
    source = node.args.get("from_") or node.args.get("from")
    if source is None or source.this.alias != "t" or not isinstance(source.this, exp.Table):
        return node
    named: dict[str, exp.Expression] = {}
    for projection in node.expressions:
        if isinstance(projection, exp.Alias):
            projection.this.replace(_inlined(projection.this, named))
            named[projection.alias] = projection.this
    return node


def _inlined(tree: exp.Expression, named: dict[str, exp.Expression]) -> exp.Expression:
    return tree.transform(lambda n: exp.paren(named[n.name].copy()) if isinstance(n, exp.Column) and not n.table and n.name in named else n)


SPARK_TRANSFORMS = (
    (exp.Select, _no_lateral_aliases),
    (exp.Interval, _interval),
    (exp.Median, _percentile),
    ((exp.Window, exp.Filter, exp.Count), _aggregate_with_distinct),
    (exp.Anonymous, _anonymous),  # before the divisions: the log-gamma's own are divisions too
    (exp.Div, _double_division),
)
