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

A kind over the account's own row (`attribute`) gets `column()`, `days_since(day)` and `metric`.

    >>> KINDS["sum"].takes, KINDS["sum"].needs_window, KINDS["sum"].when_empty
    (<Takes.NUMBER_COLUMN: 'a number column'>, True, 0)
    >>> KINDS["sum"].words.format(table="orders", column="amount")
    'sum of orders.amount'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

from sqlglot import exp

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
    compile: Callable[[Any], exp.Expression]  # the value from a reading (see the module's docstring)
    # It reads the row before its window (rhythm's first gap), so no older history may be pruned.
    reaches_before_window: bool = False
    date_words: str | None = None  # the words when the column read is a date
    options: Mapping[str, Option] = field(default_factory=dict)

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


def _of_column(function: type[exp.Expression]) -> Callable[[Any], exp.Expression]:
    """An aggregate function of the metric's column: sum, avg, min, max."""
    return lambda reading: reading.over(function(this=reading.column()))


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
    "sum": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=0, words="sum of {table}.{column}", compile=_of_column(exp.Sum)),
    "avg": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=None, words="average {table}.{column}", compile=_of_column(exp.Avg)),
    "min": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=None, words="smallest {table}.{column}", compile=_of_column(exp.Min)),
    "max": Kind(takes=Takes.NUMBER_COLUMN, needs_window=True, value=NUMBER, when_empty=None, words="largest {table}.{column}", compile=_of_column(exp.Max)),
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
