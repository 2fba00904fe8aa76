"""The shipped rules' conditions in plain DuckDB SQL, for checking the sample's ground truth.

Written apart from the rule compiler (and from the generator's own numpy version) on purpose:
the sample tests must not trust the code they check. Windows as the rules define them: `window:
90d` covers the night and the 89 days before, `ending: 90d ago` moves the end to night - 90, `1y`
and `2y` go back to the same date (night - INTERVAL n YEAR) + 1 day; latest/previous are the
newest and second-newest row in the window by date, then id; a rhythm's first gap is counted
from the event day before the window (docs/rules.md).
"""

from __future__ import annotations

from datetime import date

import duckdb

from loyalty_engine.sample.generator import RULES

TYPES = {
    "accounts": {"customer_since": "DATE"},
    "orders": {"order_date": "DATE", "amount": "DOUBLE"},
    "complaints": {"opened_at": "DATE", "closed_at": "DATE"},
    "contracts": {"start_date": "DATE", "end_date": "DATE", "annual_value": "DOUBLE"},
    "interactions": {"occurred_at": "DATE", "by_owner": "BOOLEAN", "competitor_mentioned": "BOOLEAN"},
    "surveys": {"answered_at": "DATE", "nps": "INTEGER", "satisfaction": "DOUBLE"},
    "ground_truth": {"drift_started_on": "DATE", "lost_on": "DATE", "signals": "VARCHAR",
                     "scenario": "VARCHAR", "loyalty_group": "VARCHAR", "lost_how": "VARCHAR", "traits": "VARCHAR",
                     "orders_per_year": "DOUBLE", "complaints_per_year": "DOUBLE", "paused_from": "DATE",
                     "paused_to": "DATE"},
}


def load(con: duckdb.DuckDBPyConnection, table: str, path, name: str | None = None) -> None:
    """A sample CSV as a table, dates read strictly as YYYY-MM-DD."""
    con.execute(
        f"CREATE OR REPLACE TABLE {name or table} AS SELECT * FROM read_csv(?, header = true, delim = ',', "
        f"dateformat = '%Y-%m-%d', types = {TYPES[table]!r})",
        [str(path)],
    )


def conditions_sql(night: date) -> str:
    """One row per account: a boolean column per rule, true where its condition holds on the night."""
    n = f"DATE '{night.isoformat()}'"
    inquiry = "NOT by_owner AND kind IN ('call', 'email', 'meeting')"
    owner = "by_owner AND kind IN ('visit', 'call', 'meeting')"
    return f"""
    WITH
    o AS (
        SELECT account_id,
            count(*) FILTER (WHERE order_date BETWEEN {n} - 89 AND {n}) AS recent,
            count(*) FILTER (WHERE order_date BETWEEN {n} - 454 AND {n} - 90) AS baseline,
            coalesce(sum(amount) FILTER (WHERE order_date BETWEEN {n} - 89 AND {n}), 0) AS revenue_recent,
            coalesce(sum(amount) FILTER (WHERE order_date BETWEEN {n} - 454 AND {n} - 90), 0) AS revenue_baseline,
            count(*) FILTER (WHERE order_date > {n} - INTERVAL 2 YEAR AND order_date <= {n}) AS two_years,
            count(*) FILTER (WHERE order_date BETWEEN {n} - 364 AND {n}) AS last_year,
            {n} - max(order_date) FILTER (WHERE order_date <= {n}) AS days_since
        FROM orders GROUP BY ALL),
    order_days AS (SELECT DISTINCT account_id, order_date FROM orders WHERE order_date <= {n}),
    rhythm AS (  -- the gaps that end in the two years, the first counted from the order day before them
        SELECT account_id, median(gap) AS usual_gap FROM (
            SELECT account_id, order_date, order_date - lag(order_date) OVER (PARTITION BY account_id ORDER BY order_date) AS gap
            FROM order_days)
        WHERE gap IS NOT NULL AND order_date > {n} - INTERVAL 2 YEAR GROUP BY ALL),
    c AS (
        SELECT account_id,
            count(*) FILTER (WHERE opened_at BETWEEN {n} - 89 AND {n}) AS recent,
            count(*) FILTER (WHERE opened_at BETWEEN {n} - 454 AND {n} - 90) AS baseline,
            count(*) FILTER (WHERE opened_at BETWEEN {n} - 29 AND {n}) AS month,
            count(*) FILTER (WHERE opened_at BETWEEN {n} - 394 AND {n} - 30) AS year_before_month
        FROM complaints GROUP BY ALL),
    i AS (
        SELECT account_id,
            count(*) FILTER (WHERE {inquiry} AND occurred_at BETWEEN {n} - 454 AND {n} - 90) AS inquiries_baseline,
            count(*) FILTER (WHERE {inquiry} AND occurred_at BETWEEN {n} - 89 AND {n}) AS inquiries_recent,
            count(*) FILTER (WHERE kind = 'escalation' AND occurred_at BETWEEN {n} - 29 AND {n}) AS escalations,
            count(*) FILTER (WHERE competitor_mentioned AND occurred_at BETWEEN {n} - 59 AND {n}) AS competitor,
            count(*) FILTER (WHERE {owner} AND occurred_at BETWEEN {n} - 454 AND {n} - 90) AS owner_baseline,
            {n} - max(occurred_at) FILTER (WHERE {owner} AND occurred_at <= {n}) AS days_since_owner
        FROM interactions GROUP BY ALL),
    contact_now AS (
        SELECT account_id, contact_person FROM interactions WHERE occurred_at BETWEEN {n} - 89 AND {n}
        QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY occurred_at DESC, interaction_id DESC) = 1),
    contact_before AS (
        SELECT account_id, contact_person FROM interactions WHERE occurred_at BETWEEN {n} - 454 AND {n} - 90
        QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY occurred_at DESC, interaction_id DESC) = 1),
    k AS (
        SELECT account_id,
            max(months) FILTER (WHERE position = 1) AS months_latest,
            max(months) FILTER (WHERE position = 2) AS months_previous,
            max(annual_value) FILTER (WHERE position = 1) AS value_latest,
            max(annual_value) FILTER (WHERE position = 2) AS value_previous
        FROM (
            SELECT account_id, annual_value, round((end_date - start_date) / 30.4375) AS months,
                row_number() OVER (PARTITION BY account_id ORDER BY start_date DESC, contract_id DESC) AS position
            FROM contracts WHERE start_date <= {n})
        GROUP BY ALL),
    s AS (
        SELECT account_id,
            max(nps) FILTER (WHERE in_year AND year_position = 1) AS nps_latest,
            max(nps) FILTER (WHERE position = 2) AS nps_previous
        FROM (
            SELECT account_id, nps, answered_at > {n} - INTERVAL 1 YEAR AS in_year,
                row_number() OVER (PARTITION BY account_id, answered_at > {n} - INTERVAL 1 YEAR
                                   ORDER BY answered_at DESC, survey_id DESC) AS year_position,
                row_number() OVER (PARTITION BY account_id ORDER BY answered_at DESC, survey_id DESC) AS position
            FROM surveys WHERE answered_at > {n} - INTERVAL 2 YEAR AND answered_at <= {n})
        GROUP BY ALL)
    SELECT a.account_id,
        coalesce(o.baseline >= 6 AND o.recent < 0.5 * o.baseline * 90 / 365, false) AS falling_order_frequency,
        coalesce(o.baseline >= 6 AND o.revenue_baseline > 0 AND o.recent >= 0.5 * o.baseline * 90 / 365
                 AND o.revenue_recent < 0.6 * o.revenue_baseline * 90 / 365, false) AS falling_order_value,
        coalesce(o.two_years >= 6 AND o.days_since >= 30 AND o.days_since > 3 * r.usual_gap, false) AS order_gap_beyond_rhythm,
        coalesce(c.baseline, 0) >= 3 AND coalesce(c.recent, 0) = 0 AND coalesce(o.last_year, 0) > 0 AS sudden_zero_complaints,
        coalesce(c.month, 0) >= 3 AND coalesce(c.month, 0) >= 3 * coalesce(c.year_before_month, 0) * 30 / 365 AS complaint_spike,
        coalesce(i.inquiries_baseline, 0) >= 6
            AND coalesce(i.inquiries_recent, 0) < 0.5 * i.inquiries_baseline * 90 / 365 AS falling_inquiries,
        coalesce(i.escalations, 0) >= 1 AS escalation_to_supervisor,
        coalesce(cn.contact_person <> cb.contact_person, false) AS contact_person_changed,
        coalesce(i.competitor, 0) >= 1 AS competitor_mentioned,
        coalesce(i.owner_baseline, 0) >= 4 AND coalesce(i.days_since_owner > 90, false) AS owner_contact_thinning,
        coalesce(k.months_previous > 0 AND k.months_latest <= 0.75 * k.months_previous, false) AS shorter_contracts,
        coalesce(k.value_previous > 0 AND k.value_latest <= 0.8 * k.value_previous, false) AS smaller_contract_value,
        coalesce(s.nps_latest <= 6, false) OR coalesce(s.nps_latest <= s.nps_previous - 3, false) AS nps_detractor
    FROM (SELECT DISTINCT account_id FROM ground_truth) a
    LEFT JOIN o USING (account_id) LEFT JOIN rhythm r USING (account_id) LEFT JOIN c USING (account_id)
    LEFT JOIN i USING (account_id) LEFT JOIN contact_now cn USING (account_id)
    LEFT JOIN contact_before cb USING (account_id) LEFT JOIN k USING (account_id) LEFT JOIN s USING (account_id)
    ORDER BY a.account_id"""


def fired(con: duckdb.DuckDBPyConnection, night: date) -> dict[str, set[str]]:
    """Per account id, the rules whose condition holds on the night."""
    rows = con.sql(conditions_sql(night)).fetchall()
    return {account: {rule for rule, holds in zip(RULES, flags) if holds} for account, *flags in rows}
