"""Metric kinds: what a metric in a rule file can compute, one entry per kind.

A metric is written `{KIND: TARGET, window: …, ending: …, where: …}`, e.g. `{count: orders,
window: 90d}`. Everything the engine knows about a kind is its entry in `KINDS`: what it takes,
whether it needs a window, the type of its value, its value when the window holds no rows, how
`loyalty explain` describes it, and how it compiles to SQL. The loader checks metrics against
the entries, the compiler builds each metric's SQL from its entry, and `explain` describes it
from its entry; none of them names a kind. So adding a kind is one entry here, with its tests
and a line in docs/rules.md, as a function is one class in sqlglot or one entry of PromQL's
`FunctionCalls` map.

How an entry compiles: `compile(reading)` returns the metric's value per account and night as a
sqlglot tree, built only from what `reading` offers. For a kind over an extract table's rows the
compiler hands it a reading that hides the two compile forms (a few nights: the rows joined to
the nights and grouped; many nights: rows and one probe per night streamed through window
frames), so one function serves both:

    reading.over(aggregate, also=None)  the aggregate over the metric's rows: inside its window,
                                        matching its `where` (and the condition `also`)
    reading.latest(value)               `value` on the newest of those rows
    reading.column()                    the metric's column, as the aggregates read it
    reading.table_column()              the metric's column on the table's row (inside `before`)
    reading.event, reading.day          the row's date, on the table's row / as the aggregates read it
    reading.before(value)               `value` on the account's matching row before this one
    reading.keep(name, value)           `value` computed once per row, under a name of the metric's own
    reading.window_start                the day before the window's first (None without a window)
    reading.days_since(day)             days from `day` to the night
    reading.metric                      the Metric, e.g. for `metric.option("per")`
    reading.window_end                  the window's last day
    reading.earliest(value)             `value` on the oldest of the metric's rows in the window
    reading.running(value, within)      per row: the running sum of `value` over the account's
                                        matching rows with the same `within` (e.g. its month)
    reading.total(value, within)        per row: the sum of `value` over those rows
    reading.first(value)                per row: the smallest `value` over all the account's rows
    reading.earlier(span)               a reading of the same form over `span` ending where the
                                        window begins (a baseline)

A kind over the account's own row (`attribute`) gets `column()`, `days_since(day)` and `metric`.

A kind whose value is a long computation on top of its aggregates (`unusual`'s chance) returns a
`Staged` instead of one tree: named `parts` built from the reading as above, then `steps`, each
a dict of named values over the parts and earlier steps (read as bare columns), the last one
holding `value`. The compiler computes the parts with the other aggregates and each step in a
SELECT of its own on the per-(account, night) rows, so nothing is computed per order row or
probe that is not an aggregate, and no sub-expression has to be written out twice.

    >>> KINDS["sum"].takes, KINDS["sum"].needs_window, KINDS["sum"].when_empty
    (<Takes.NUMBER_COLUMN: 'a number column'>, True, 0)
    >>> KINDS["sum"].words.format(table="orders", column="amount")
    'sum of orders.amount'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

from loyalty_engine.errors import RuleError


class _Expressions:
    """sqlglot's `exp`, imported on first use: the loader reads these kinds for `loyalty rules
    list`, which compiles nothing, and importing sqlglot would cost it a third of a second."""

    def __getattr__(self, name: str):
        global exp
        from sqlglot import exp  # from now on the module itself

        return getattr(exp, name)


exp = _Expressions()

# A metric's value type, for checking conditions: numbers compare with numbers, text with text.
NUMBER = "number"
TEXT = "text"
# The type of the column read: text stays text, anything else is checked as a number (an
# account's date column is read as the days since it).
COLUMN_TYPE = "the column's"


class Takes(Enum):
    """What a kind reads, written after its name; the value is how error messages name it."""

    TABLE = "a table name"  # count: orders
    NUMBER_COLUMN = "a number column"  # sum: orders.amount
    COLUMN = "a column"  # latest: interactions.contact_person
    ACCOUNT_COLUMN = "a column of the account"  # attribute: segment (no window: the account's row as it is)


@dataclass(frozen=True)
class Option:
    """A key a kind takes besides window, ending and where, such as `per: month`."""

    looks_like: str  # for the error message: "per must be month or week, got 'day'"
    parse: Callable[[str], Any]  # the value from the text, or None when the text is not one
    default: Any = None  # None: the key is required


@dataclass(frozen=True)
class Staged:
    """A value computed in stages (see the module's docstring): `parts` from the reading, then
    each of `steps` over the names before it; the last step names `value`."""

    parts: dict[str, exp.Expression]
    steps: list[dict[str, exp.Expression]]


@dataclass(frozen=True, kw_only=True)
class Kind:
    """One metric kind: everything the loader, the compiler and `explain` need to know of it."""

    takes: Takes
    needs_window: bool  # a metric of this kind must say `window:` (else it reads all history)
    value: str  # NUMBER, TEXT or COLUMN_TYPE
    # Over no rows: 0 when that is a real zero (the extract holds every row of the account),
    # None when the value is unknown and a rule reading it has "no data".
    when_empty: int | None
    words: str  # in words, from {table}, {column} and the options: 'number of {table}'
    compile: Callable[[Any], exp.Expression | Staged]  # the value from a reading (see the module's docstring)
    # It reads the row before its window (rhythm's first gap), so no older history may be pruned.
    reaches_before_window: bool = False
    date_words: str | None = None  # the words when the column read is a date
    # How `explain` shows a value beside the number, from the value and the window's days (e.g. a
    # chance as odds: 'about once in 200 quarters'); None: the number alone.
    shown: Callable[[Any, int], str | None] | None = None
    options: Mapping[str, Option] = field(default_factory=dict)
    # Its SQL has a form other engines (Trino, Spark) run; False: DuckDB's list lambdas and
    # LGAMMA only, so a rule reading it runs on DuckDB alone (docs/rules.md, `unusual`).
    portable: bool = True

    @property
    def reads_rows(self) -> bool:
        """Computed over an extract table's rows in a window (every kind but the account's own columns)."""
        return self.takes is not Takes.ACCOUNT_COLUMN

    def value_type(self, column_type: str | None) -> str:
        """NUMBER or TEXT, for a metric reading a column of `column_type` (None: no column)."""
        if self.value != COLUMN_TYPE:
            return self.value
        return TEXT if column_type == "text" else NUMBER


def _count(reading) -> exp.Expression:
    return reading.over(exp.Count(this=exp.Star()))


def _distinct(reading) -> exp.Expression:
    return reading.over(exp.Count(this=exp.Distinct(expressions=[reading.column()])))


def _of_column(function: str) -> Callable[[Any], exp.Expression]:
    """An aggregate function of the metric's column (its sqlglot class's name): Sum, Avg, Min, Max."""
    return lambda reading: reading.over(getattr(exp, function)(this=reading.column()))


# Money and other amounts are summed as exact decimals (to 1/10,000, as the per-period sums
# below), then read as a double. A sum of doubles depends on the order it is added in (DuckDB's
# threads, its window trees, Spark's partitions), and a value rounded over it, such as
# round(revenue_last_year / 12), could land on either side of a half: exact sums make every
# engine and every run give the same double.
EXACT = "decimal(38, 4)"


def _exact_sum(reading) -> exp.Expression:
    return _double(reading.over(exp.Sum(this=exp.cast(reading.column(), exp.DataType.build(EXACT)))))


def _exact_avg(reading) -> exp.Expression:
    # The exact sum over the count, one division of two doubles on every engine (their own avg
    # divides decimals with scales of their own).
    column = reading.column()
    count = exp.Nullif(this=reading.over(exp.Count(this=column.copy())), expression=_n(0))
    return exp.Div(this=_exact_sum(reading), expression=_double(count))


def _latest(reading) -> exp.Expression:
    return reading.latest(reading.column())


def _previous(reading) -> exp.Expression:
    # The matching row before the latest matching one, if it lies in the window too.
    value = reading.keep("previous", reading.before(reading.table_column()))
    day = reading.keep("previous_day", reading.before(reading.event))
    if reading.window_start is None:
        return reading.latest(value)
    return exp.Case(ifs=[exp.If(this=reading.latest(day) > reading.window_start, true=reading.latest(value))])


def _rhythm(reading) -> exp.Expression:
    # Days between event days; the window's first gap reaches back to the event day before it.
    gap = reading.keep("gap", exp.DateDiff(this=reading.event, expression=reading.before(reading.event), unit=exp.var("DAY")))
    return reading.over(exp.Median(this=gap.copy()), also=gap.copy() > 0)  # same-day events are one event day


def _days_since_latest(reading) -> exp.Expression:
    return reading.days_since(reading.over(exp.Max(this=reading.day)))


def _attribute(reading) -> exp.Expression:
    value = reading.column()
    return reading.days_since(value) if reading.metric.column_type == "date" else value


# --- the account's own statistics: per-period series, spread, trend, how unusual -------------
#
# A per-period series (`per: month` or `per: week`) has one value per calendar month (or ISO
# week, Monday to Sunday) lying wholly inside the window; a period without rows is a 0. Calendar
# periods are the same for every night, so a row's period, and its running sum within it, are
# computed once per row, and the sums of squares the spread needs come from one pass over the
# window's rows in either compile form. The partial periods at the window's two edges are left
# out by subtracting their rows, found on the window's earliest and latest rows. (30-day blocks
# counted back from each night would put a row in another block every night: no window frame
# over the rows can compute that.)


def _epoch() -> exp.Expression:
    return exp.cast(exp.Literal.string("1900-01-01"), exp.DataType.build("date"))  # a Monday


PERIOD_DAYS = {"month": 365.2425 / 12, "week": 7.0}
# The shortest windows that always hold two whole periods (for a spread or a slope).
_SHORTEST = {"month": (92, 3), "week": (21, 1)}  # (days, months)


def _n(value) -> exp.Expression:
    return exp.Literal.number(value)


def _double(value: exp.Expression) -> exp.Expression:
    return exp.cast(value, exp.DataType.build("double"))


def _period(per: str, day: exp.Expression) -> exp.Expression:
    """The number of the period `day` lies in: months (or weeks) counted on one by one."""
    if per == "week":
        return exp.IntDiv(this=exp.DateDiff(this=day, expression=_epoch(), unit=exp.var("DAY")), expression=_n(7))
    return exp.paren(exp.Add(this=exp.Mul(this=exp.Year(this=day), expression=_n(12)), expression=exp.Month(this=day)))


def _shift(day: exp.Expression, days: int) -> exp.Expression:
    return exp.cast(exp.DateAdd(this=day, expression=_n(days), unit=exp.var("DAY")), exp.DataType.build("date"))


def _periods(reading, start: exp.Expression | None = None) -> dict[str, exp.Expression]:
    """The whole periods inside the reading's window (or after `start`, the day before the first
    day counted, when no row lies between the window's start and it): their number `n`, the first
    one's number `first`, and over them the sum of the per-period values `y`, of their squares
    `yy`, and of each value times its period's number `xy`. A per-period value is the number of
    rows, or the sum of the metric's column, in the period."""
    per = reading.metric.option("per")
    # A column's values as exact decimals (to 1/10,000): the sums below multiply them by period
    # numbers near 24,300 and subtract, so in doubles their last digits would follow the order
    # DuckDB's threads add in, and a re-run night would store other evidence.
    q = _n(1) if reading.metric.column is None else exp.Coalesce(
        this=exp.cast(reading.table_column(), exp.DataType.build("decimal(38, 4)")), expressions=[_n(0)]
    )
    q = reading.keep("q", q)
    period = reading.keep("period", _period(per, reading.event))
    so_far = reading.keep("in_period", reading.running(q.copy(), period.copy()))  # its period's rows up to this one
    whole = reading.keep("period_total", reading.total(q.copy(), period.copy()))
    start = reading.window_start if start is None else start
    first = exp.paren(_period(per, start.copy()) + _n(1))  # the first period beginning after `start`
    last = exp.paren(_period(per, _shift(reading.window_end.copy(), 1)) - _n(1))  # the last one ending by the window's end
    # The partial period at the end: its rows up to the window's latest row.
    late = exp.paren(reading.latest(period.copy()).eq(last.copy() + _n(1)))
    late_sum = reading.latest(so_far.copy())
    # At the start: the rows of the earliest row's period from that row on.
    early = exp.paren(reading.earliest(period.copy()).eq(first.copy() - _n(1)))
    early_whole, early_before = reading.earliest(whole.copy()), reading.earliest(exp.paren(so_far.copy() - q.copy()))

    def trimmed(over_window: exp.Expression, at_end: exp.Expression, at_start: exp.Expression) -> exp.Expression:
        def cut(edge, amount):
            return exp.Case(ifs=[exp.If(this=edge.copy(), true=amount)], default=_n(0))

        return exp.paren(exp.Coalesce(this=over_window, expressions=[_n(0)]) - cut(late, at_end) - cut(early, at_start))

    return {
        "n": exp.paren(last.copy() - first.copy() + _n(1)),
        "first": first,
        "y": trimmed(reading.over(exp.Sum(this=q.copy())), late_sum.copy(), exp.paren(early_whole.copy() - early_before.copy())),
        "xy": trimmed(
            reading.over(exp.Sum(this=q.copy() * period.copy())),
            late_sum.copy() * exp.paren(last.copy() + _n(1)),
            exp.paren(early_whole.copy() - early_before.copy()) * exp.paren(first.copy() - _n(1)),
        ),
        # A period's value squared is the sum over its rows of q * (2 * running sum - q).
        "yy": trimmed(
            reading.over(exp.Sum(this=q.copy() * exp.paren(_n(2) * so_far.copy() - q.copy()))),
            late_sum.copy() * late_sum.copy(),
            early_whole.copy() * early_whole.copy() - early_before.copy() * early_before.copy(),
        ),
    }


def _variance(p: dict[str, exp.Expression]) -> exp.Expression:
    """The sample variance of the per-period values (NULL for fewer than two periods)."""
    n, y = _double(p["n"].copy()), _double(p["y"].copy())
    spread = exp.paren(_double(p["yy"].copy()) - y * y.copy() / n.copy()) / exp.Nullif(this=n.copy() - _n(1), expression=_n(0))
    return exp.Case(ifs=[exp.If(this=p["n"].copy() >= _n(2), true=exp.Greatest(this=spread, expressions=[_n(0)]))])


def _long_enough(reading) -> None:
    metric, per = reading.metric, reading.metric.option("per")
    days, months = _SHORTEST[per]
    span = metric.window
    enough = span.amount * (12 if span.unit == "y" else 1) >= months if span.unit in ("m", "y") else span.amount * (7 if span.unit == "w" else 1) >= days
    if not enough:
        raise RuleError(f"{metric.where}: {metric.kind} metric '{metric.name}' per {per} needs a window of at least {days}d or {months}m (two whole {per}s), got {span}")


def _spread(reading) -> exp.Expression:
    _long_enough(reading)
    return exp.Sqrt(this=_variance(_periods(reading)))


def _slope(reading) -> exp.Expression:
    """The least-squares slope of the per-period values against the period's number."""
    _long_enough(reading)
    p = _periods(reading)
    n, y = _double(p["n"].copy()), _double(p["y"].copy())
    # Periods numbered 0 … n-1 from the first: sum x = n(n-1)/2, n sum x^2 - (sum x)^2 = n^2(n^2-1)/12.
    xy = _double(p["xy"].copy()) - _double(p["first"].copy()) * y.copy()
    top = n.copy() * xy - n.copy() * (n.copy() - _n(1)) / _n(2) * y.copy()
    bottom = n.copy() * n.copy() * exp.paren(n.copy() * n.copy() - _n(1)) / _n(12)
    return exp.Case(ifs=[exp.If(this=p["n"].copy() >= _n(2), true=top / exp.Nullif(this=bottom, expression=_n(0)))])


# The chance of a count of at most `upto` under a Poisson (mean mu) or negative binomial (mean
# mu, size r) law, summed term by term from `low` (TAIL_SDS standard deviations below the mean)
# to `upto`, but not beyond `high`: TAIL_SDS standard deviations above the mean and, for the
# negative binomial's long right tail, TAIL_STEPS times the number of terms over which its terms
# fall by a factor e ((r + mu) / r). What is left out is far below 1e-12; a sum has at most
# 2 * TAIL_SDS * sd + TAIL_STEPS * (r + mu) / r + 2 terms, however large the count (on the sample
# about 10 on average, at most a few hundred: the sum is not where the time goes, see
# benchmarks/README.md "Cost of the account's own statistics").
TAIL_SDS = 12
TAIL_STEPS = 30
# Each term is EXP of the log of its probability. The parts that do not depend on k (`c0`, `c1`,
# ln mu) are computed once per account and night, not once per term.
_POISSON = "EXP(k * ln_mu - mu - LGAMMA(k + 1))"
# LGAMMA(k + r) - LGAMMA(r) loses about r * ln(r) * 2e-16 to cancellation (1e-8 at r = 1e7, and
# r grows without bound as the spread nears Poisson's), so from r = STIRLING_FROM on that
# difference comes from Stirling's series, in which every large part cancels exactly:
#   LGAMMA(k + r) - LGAMMA(r) = (r - 1/2) L(k / r) + k ln(r + k) - k + s(r + k) - s(r),
# L(t) = ln(1 + t) = 2 atanh(t / (2 + t)) (exact for small t, where LN(1 + t) is not), and
# s(z) = 1/(12 z) - 1/(360 z^3) + 1/(1260 z^5), whose first term left out is below 1e-15 there.
STIRLING_FROM = 50
_NB_SMALL = "EXP(LGAMMA(k + r) - LGAMMA(k + 1) + c0 + k * c1)"
_NB_LARGE = (
    "EXP((r - 0.5) * 2 * ATANH(k / (2 * r + k)) + k * 2 * ATANH((k - mu) / (2 * r + mu + k)) - k + k * ln_mu - LGAMMA(k + 1)"
    " + 1 / (12 * (r + k)) - 1 / (360 * POW(r + k, 3)) + 1 / (1260 * POW(r + k, 5)) + c0)"
)
# Per account and night: c0 and c1 of the small-r form, and c0 of the large-r form (which also
# carries k ln mu - k ln(r + mu) + k ln(r + k) as k * L((k - mu) / (r + mu)) above).
_C0_SMALL = "r * LN(r / (r + mu)) - LGAMMA(r)"
_C1_SMALL = "LN(mu / (r + mu))"
_C0_LARGE = "-r * 2 * ATANH(mu / (2 * r + mu)) - (1 / (12 * r) - 1 / (360 * POW(r, 3)) + 1 / (1260 * POW(r, 5)))"


def _sql(text: str) -> exp.Expression:
    import sqlglot

    return sqlglot.parse_one(text, read="duckdb")


def _summed(term: str) -> exp.Expression:
    """The sum of `term` over k from low to high (none: 0), in DuckDB's list functions."""
    return _sql(f"COALESCE(LIST_SUM(LIST_TRANSFORM(RANGE(CAST(low AS BIGINT), CAST(high AS BIGINT) + 1), LAMBDA k : {term})), 0)")


def _at_most() -> list[dict[str, exp.Expression]]:
    """Steps from `upto`, `mu` and `r` (NULL: Poisson) to `cdf`, the chance of at most `upto`."""
    sd = "SQRT(mu + COALESCE(mu * mu / r, 0))"
    bounds = {
        "low": _sql(f"GREATEST(0, FLOOR(mu - {TAIL_SDS} * {sd}))"),
        "high": _sql(f"LEAST(upto, CEIL(mu + {TAIL_SDS} * {sd} + COALESCE({TAIL_STEPS} * (r + mu) / r, 0)))"),
        "ln_mu": _sql("LN(NULLIF(mu, 0))"),
        "c0": _sql(f"CASE WHEN r < {STIRLING_FROM} THEN {_C0_SMALL} ELSE {_C0_LARGE} END"),
        "c1": _sql(f"CASE WHEN r < {STIRLING_FROM} THEN {_C1_SMALL} END"),
    }
    cdf = exp.Case(
        ifs=[
            exp.If(this=_sql("r IS NULL"), true=_summed(_POISSON)),
            exp.If(this=_sql(f"r < {STIRLING_FROM}"), true=_summed(_NB_SMALL)),
        ],
        default=_summed(_NB_LARGE),
    )
    return [bounds, {"cdf": cdf}]


def _unusual(reading) -> Staged:
    """The chance of at most (tail: low) or at least (tail: high) the window's count, by the
    account's own baseline: the rate of the `baseline` before the window scaled to the window's
    days, and its spread per period beyond Poisson."""
    metric = reading.metric
    per, tail, span = metric.option("per"), metric.option("tail"), _baseline(metric.option("baseline"))
    base = reading.earlier(span)
    # The baseline begins at the account's first row (of the table) when that is later than its start.
    first_day = base.latest(reading.keep("first_day", reading.first(reading.event)))
    start = exp.cast(exp.Greatest(this=base.window_start.copy(), expressions=[_shift(first_day, -1)]), exp.DataType.build("date"))
    p = _periods(base, start)
    parts = {
        "x": exp.Coalesce(this=reading.over(exp.Count(this=exp.Star())), expressions=[_n(0)]),
        # The rows in the baseline, as the sum the periods read (one aggregate for both; NULL for none).
        "events": base.over(exp.Sum(this=base.keep("q", _n(1)))),
        "wd": exp.DateDiff(this=reading.window_end.copy(), expression=reading.window_start.copy(), unit=exp.var("DAY")),
        "bd": exp.DateDiff(this=base.window_end.copy(), expression=start.copy(), unit=exp.var("DAY")),
        "n": p["n"], "y": p["y"], "yy": p["yy"],
    }  # fmt: skip
    # The periods vary more than Poisson when their sample variance v exceeds their mean m. With
    # whole counts, v - m = excess / (n (n - 1)) for the whole number excess below, so the test is
    # exact (in floating point, v = m could come out a hair above m and make r 1e16).
    rate = {
        "mu": _sql("CAST(events AS DOUBLE) * wd / NULLIF(CAST(bd AS DOUBLE), 0)"),
        "excess": _sql("CAST(n AS DOUBLE) * yy - CAST(y AS DOUBLE) * y - (CAST(n AS DOUBLE) - 1) * y"),
    }
    # Then the size per period, m^2 / (v - m), scaled by the number of periods the window spans;
    # otherwise none (Poisson).
    size = {
        "r": _sql(f"CASE WHEN n >= 2 AND excess > 0 AND y > 0 THEN CAST(y AS DOUBLE) * y * (n - 1) / (n * excess) * wd / {round(PERIOD_DAYS[per], 6)} END"),
        # At most x; at least x is 1 - (at most x - 1).
        "upto": _sql("x" if tail == "at most" else "x - 1"),
    }
    chance = "cdf" if tail == "at most" else "1 - cdf"
    # Clamped to 0 … 1 against rounding; no data without a baseline.
    value = _sql(f"CASE WHEN events > 0 AND bd > 0 THEN GREATEST(0, LEAST(1.0, {chance})) END")
    return Staged(parts, [rate, size, *_at_most(), {"value": value}])


_WINDOW_NAMES = ((7, 7, "week"), (28, 31, "month"), (89, 92, "quarter"), (181, 184, "half-year"), (365, 366, "year"))


def odds(chance: float | None, window_days: int) -> str | None:
    """A probability as odds a person reads: 0.005 over a 90-day window -> 'about once in 200
    quarters'. None for no value."""
    if chance is None:
        return None
    name = next((name for low, high, name in _WINDOW_NAMES if low <= window_days <= high), None)
    plural = f"{name}s" if name else f"{window_days}-day windows"
    if chance >= 0.5:
        return f"more often than not ({chance:.0%} of {plural})"
    if chance < 1e-6:
        return f"less than once in a million {plural}"
    times = 1 / chance  # above 2
    digits = max(0, len(str(int(times))) - 2)  # two significant figures
    return f"about once in {int(round(times, -digits)):,} {plural}"


def _per(text: str) -> str | None:
    return text if text in ("month", "week") else None


def _tail(text: str) -> str | None:
    return {"low": "at most", "high": "at least"}.get(text)


def _baseline(text):
    """A span in days or weeks (a Span of the loader, which imports this module)."""
    from loyalty_engine.rules.loader import Span

    span = Span.parse(str(text))
    return span if span is not None and span.unit in ("d", "w") and span.amount > 0 else None


PER = Option("month or week", _per, default="month")
_SPREAD_WORDS = "standard deviation of the {what} per {per} (whole {per}s, none counting 0)"
_SLOPE_WORDS = "trend of the {what} per {per}: change per {per} (least squares over whole {per}s, none counting 0)"


# In this order in error messages ("a metric is one of count, days_since_latest, …").
KINDS: dict[str, Kind] = {
    "count": Kind(takes=Takes.TABLE, needs_window=True, value=NUMBER, when_empty=0, words="number of {table}", compile=_count),
    "days_since_latest": Kind(
        takes=Takes.TABLE, needs_window=False, value=NUMBER, when_empty=None, words="days since the latest of {table}",
        compile=_days_since_latest,
    ),
    "rhythm": Kind(
        takes=Takes.TABLE, needs_window=True, value=NUMBER, when_empty=None, words="usual days between {table} (median gap)",
        compile=_rhythm, reaches_before_window=True,
    ),
    "sum": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=0, words="sum of {table}.{column}", compile=_exact_sum),
    "avg": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=None, words="average {table}.{column}", compile=_exact_avg),
    "min": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=None, words="smallest {table}.{column}", compile=_of_column("Min")),
    "max": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=None, words="largest {table}.{column}", compile=_of_column("Max")),
    "distinct": Kind(
        takes=Takes.COLUMN, needs_window=True, value=NUMBER, when_empty=0, words="number of different {column} in {table}", compile=_distinct,
    ),
    "latest": Kind(
        takes=Takes.COLUMN, needs_window=False, value=COLUMN_TYPE, when_empty=None, words="{column} of the latest of {table}", compile=_latest,
    ),
    "previous": Kind(
        takes=Takes.COLUMN, needs_window=False, value=COLUMN_TYPE, when_empty=None,
        words="{column} of the one before the latest of {table}", compile=_previous,
    ),
    "spread": Kind(
        takes=Takes.TABLE, needs_window=True, value=NUMBER, when_empty=0,
        words=_SPREAD_WORDS.replace("{what}", "number of {table}"), compile=_spread, options={"per": PER},
    ),
    "spread_sum": Kind(
        takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=0,
        words=_SPREAD_WORDS.replace("{what}", "sum of {table}.{column}"), compile=_spread, options={"per": PER},
    ),
    "slope": Kind(
        takes=Takes.TABLE, needs_window=True, value=NUMBER, when_empty=0,
        words=_SLOPE_WORDS.replace("{what}", "number of {table}"), compile=_slope, options={"per": PER},
    ),
    "slope_sum": Kind(
        takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=0,
        words=_SLOPE_WORDS.replace("{what}", "sum of {table}.{column}"), compile=_slope, options={"per": PER},
    ),
    "unusual": Kind(
        takes=Takes.TABLE, needs_window=True, value=NUMBER, when_empty=None,
        words="chance of {tail} this many {table} by the account's own rate and spread per {per} in the {baseline} before",
        compile=_unusual, reaches_before_window=True, shown=odds, portable=False,
        options={
            "baseline": Option("a span in days or weeks, e.g. 365d", _baseline, default="365d"),
            "per": PER,
            "tail": Option("low or high", _tail, default="at most"),
        },
    ),
    "attribute": Kind(
        takes=Takes.ACCOUNT_COLUMN, needs_window=False, value=COLUMN_TYPE, when_empty=None, words="the account's {column}",
        date_words="days since the account's {column}", compile=_attribute,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Builtin:
    """A metric every rule can use without defining it; the compiler computes it (groups.py)."""

    value: str  # NUMBER or TEXT
    words: str


BUILTINS = {
    "loyalty_group": Builtin(TEXT, "the account's group (apostle, loyal, opportunist, hostage, defector, terrorist)"),
}
