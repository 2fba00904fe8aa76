"""The brief's customer retention rate, shared by the digest header (mail/mailing.py) and the
portfolio report (portfolio.py), so both count customers the same way.

Retention rate for a period = (customers at the end - customers won in the period) / customers
at the start, where a customer at a date is an account that ordered in the 365 days up to it.

Won in the period: a customer at its end who was none at its start. That is an account whose
first order ever lies in the period (new) or one that comes back after more than a year without
an order (reactivated, `reactivated`, a part of `won`). Counting reactivations as won (won back)
keeps the rate what its name says: the share of the customers at the start who are still
customers at the end, never above 100 %, and the same as the brief's simpler variant ("of the
customers who bought a year ago, the share who still buy now"). Counted as neither, a period
with more returns than losses would show more than 100 % retention. The report shows the
reactivated apart (docs/report.md).

Kept free of heavy imports: `loyalty report` reads it without loading the digest's renderer.
"""

from __future__ import annotations

CUSTOMER_DAYS = 365  # a customer at a date ordered in the 365 days up to it

# The body of a CTE over a CTE `periods` (period_start, period_end: the period is the days after
# period_start up to period_end): one row per period and account that was a customer at its start
# or at its end, with at_start, at_end, won (a customer at the end, none at the start) and
# reactivated (won, with an order before the year up to the start: back, not new). Orders after
# period_end are never read for it.
CUSTOMERS = f"""
SELECT period_start, period_end, account_id, at_start, at_end,
    at_end AND NOT at_start AS won,
    at_end AND NOT at_start AND first_order <= period_start AS reactivated
FROM (
SELECT p.period_start, p.period_end, d.account_id,
    bool_or(d.order_date <= p.period_start) AS at_start,
    bool_or(d.order_date > p.period_end - {CUSTOMER_DAYS}) AS at_end,
    f.first_order
FROM periods p
JOIN (SELECT DISTINCT account_id, order_date FROM orders) d
    ON d.order_date > p.period_start - {CUSTOMER_DAYS} AND d.order_date <= p.period_end
JOIN (SELECT account_id, min(order_date) AS first_order FROM orders GROUP BY account_id) f USING (account_id)
GROUP BY p.period_end, p.period_start, d.account_id, f.first_order
)
"""


def retention_rate(at_start: int, at_end: int, won: int) -> float | None:
    """(customers at the end - customers won in the period) / customers at the start; None
    when nobody was a customer at the start. With `won` counted as CUSTOMERS counts it (new and
    reactivated), it is at most 1.

    >>> retention_rate(200, 190, 6)
    0.92
    """
    return (at_end - won) / at_start if at_start else None
