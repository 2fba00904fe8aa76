"""The brief's customer retention rate, shared by the digest header (mail/mailing.py) and the
portfolio report (portfolio.py), so both count customers the same way.

Retention rate for a period = (customers at the end - customers won in the period) / customers
at the start, where a customer at a date is an account that ordered in the 365 days up to it,
and one won in the period placed its first order ever in it.

Kept free of heavy imports: `loyalty report` reads it without loading the digest's renderer.
"""

from __future__ import annotations

CUSTOMER_DAYS = 365  # a customer at a date ordered in the 365 days up to it

# The body of a CTE over a CTE `periods` (period_start, period_end: the period is the days after
# period_start up to period_end): one row per period and account that was a customer at its start
# or at its end, with at_start, at_end and won. Orders after period_end are never read for it.
CUSTOMERS = f"""
SELECT p.period_start, p.period_end, d.account_id,
    bool_or(d.order_date <= p.period_start) AS at_start,
    bool_or(d.order_date > p.period_end - {CUSTOMER_DAYS}) AS at_end,
    f.first_order > p.period_start AS won
FROM periods p
JOIN (SELECT DISTINCT account_id, order_date FROM orders) d
    ON d.order_date > p.period_start - {CUSTOMER_DAYS} AND d.order_date <= p.period_end
JOIN (SELECT account_id, min(order_date) AS first_order FROM orders GROUP BY account_id) f USING (account_id)
GROUP BY p.period_end, p.period_start, d.account_id, f.first_order
"""


def retention_rate(at_start: int, at_end: int, won: int) -> float | None:
    """(customers at the end - customers won in the period) / customers at the start; None
    when nobody was a customer at the start.

    >>> retention_rate(200, 190, 6)
    0.92
    """
    return (at_end - won) / at_start if at_start else None
