"""The brief's four account groups, by order frequency and satisfaction, as the built-in
metric `loyalty_group` (text): apostle, loyal, opportunist, hostage, defector, terrorist.

Thresholds (documented for ops in docs/rules.md):
- frequent: at least FREQUENT_ORDERS orders in the last 365 days (about one every two months);
- satisfied: the latest survey of the last two years scored NPS >= 7 (promoter or passive);
  without a survey, fewer than UNHAPPY_COMPLAINTS complaints in the last 365 days;
- apostle: frequent with a latest NPS of 9 or 10; terrorist: neither frequent nor satisfied,
  with a latest NPS <= 3 or at least ANGRY_COMPLAINTS complaints in the last 365 days.

The group is a description, not a warning: it orders the digest (defectors first) and lets a
rule ask for one group (`loyalty_group in ('loyal', 'apostle')`).
"""

from __future__ import annotations

from pathlib import Path

from sqlglot import exp

from loyalty_engine.rules.loader import Metric, Span, Where

FREQUENT_ORDERS = 6
UNHAPPY_COMPLAINTS = 3
ANGRY_COMPLAINTS = 6
GROUPS = ("apostle", "loyal", "opportunist", "hostage", "defector", "terrorist")

_HERE = Where(Path(__file__), 1, 1)
# Internal names start with '_', which rule files cannot write.
INPUTS = {
    "_group_orders": Metric("_group_orders", "count", "orders", None, Span(365, "d"), Span(0, "d"), _HERE),
    "_group_complaints": Metric("_group_complaints", "count", "complaints", None, Span(365, "d"), Span(0, "d"), _HERE),
    "_group_nps": Metric("_group_nps", "latest", "surveys", "nps", Span(2, "y"), Span(0, "d"), _HERE),
}


def group_expression(column) -> exp.Expression:
    """CASE … END over the input metrics (`column(name)` gives each one's SQL column)."""
    orders, complaints, nps = column("_group_orders"), column("_group_complaints"), column("_group_nps")
    frequent = orders >= FREQUENT_ORDERS
    satisfied = exp.Case(
        ifs=[exp.If(this=exp.Is(this=nps.copy(), expression=exp.Null()), true=complaints.copy() < UNHAPPY_COMPLAINTS)],
        default=nps.copy() >= 7,
    )
    angry = exp.or_(nps.copy() <= 3, complaints.copy() >= ANGRY_COMPLAINTS)

    def when(condition, group):
        return exp.If(this=condition, true=exp.Literal.string(group))

    return exp.Case(
        ifs=[
            when(exp.and_(frequent.copy(), nps.copy() >= 9), "apostle"),
            when(exp.and_(frequent.copy(), exp.paren(satisfied.copy())), "loyal"),
            when(frequent.copy(), "hostage"),
            when(exp.paren(satisfied.copy()), "opportunist"),
            when(exp.paren(angry), "terrorist"),
        ],
        default=exp.Literal.string("defector"),
    )
