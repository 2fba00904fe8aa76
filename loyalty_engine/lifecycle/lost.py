"""Lost accounts: silent beyond the configured definition of lost, told once, then left in peace.

An account is lost on a night when it ordered regularly (`backtest.lost.regular_orders` orders
in the year up to its last order, both ends included) and has not ordered for
`backtest.lost.no_order_days` since: lost on its last order. LOST_SPELLS states that once, as
spells (from last_order + no_order_days until the next order, if any); the backtest judges
accounts by the same spells (`backtest.account_fates`), so the nightly digest and the backtest
call the same accounts lost on the same nights. An account that orders again is active again.

Each night (night.py, inside the night's transaction):

1. `mark_lost` before the lifecycle: TEMP TABLE night_lost (the accounts lost tonight), which
   the lifecycle reads to hold back their warnings (notice 'inhibited', reason 'account lost'),
   and tonight's rows of `lost_nights`, each carrying `announced` from the night before.
2. `announce_lost` after the digest policy (mail/budget.py): a lost account not yet announced is
   announced in its owner's digest tonight if the owner gets one (something new); otherwise it
   waits for the owner's next digest, as a resolution does. On the first evaluated night the
   accounts already lost are the starting state: announced in the introduction.

A re-run of the night recomputes both from the night before, so an account is announced once.
"""

from __future__ import annotations

from datetime import date

import duckdb

from loyalty_engine.config import LostSettings

# Spells of being lost, from the orders up to $end: (account_id, last_order, lost_from, lost_until),
# lost_until the next order (NULL: none by $end). Lost on a night N <= $end when lost_from <= N
# and (lost_until IS NULL or lost_until > N). Parameters: $end, $silence (no_order_days), $regular.
LOST_SPELLS = """
SELECT account_id, order_date AS last_order, (order_date + $silence)::DATE AS lost_from, next_order AS lost_until
FROM (
    SELECT account_id, order_date,
        lead(order_date) OVER (PARTITION BY account_id ORDER BY order_date) AS next_order,
        count(*) OVER (PARTITION BY account_id ORDER BY order_date
                       RANGE BETWEEN INTERVAL 1 YEAR PRECEDING AND CURRENT ROW) AS orders_in_year
    FROM orders WHERE order_date <= $end
)
WHERE orders_in_year >= $regular AND (next_order IS NULL OR next_order > order_date + $silence)
"""


def spell_params(lost: LostSettings, end: date) -> dict:
    return {"end": end, "silence": lost.no_order_days, "regular": lost.regular_orders}


def mark_lost(con: duckdb.DuckDBPyConnection, night: date, lost: LostSettings) -> int:
    """TEMP TABLE night_lost and tonight's lost_nights rows; returns how many accounts are lost."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE night_lost AS
            SELECT s.account_id, s.last_order FROM ({LOST_SPELLS}) s
            WHERE s.lost_from <= $end AND s.lost_until IS NULL
              AND s.account_id IN (SELECT account_id FROM accounts WHERE coalesce(status, 'active') <> 'closed')""",
        spell_params(lost, night),
    )
    previous = con.execute("SELECT max(night) FROM nights WHERE night < ?", [night]).fetchall()[0][0]
    con.execute("DELETE FROM lost_nights WHERE night = ?", [night])
    con.execute(
        """INSERT INTO lost_nights
           SELECT $night, l.account_id, l.last_order,
                  CASE WHEN $previous IS NULL THEN $night ELSE p.announced END
           FROM night_lost l
           LEFT JOIN lost_nights p ON p.night = $previous AND p.account_id = l.account_id AND p.last_order = l.last_order""",
        {"night": night, "previous": previous},
    )
    return con.execute("SELECT count(*) FROM night_lost").fetchall()[0][0]


def announce_lost(con: duckdb.DuckDBPyConnection, night: date) -> int:
    """Mark tonight's lost accounts not yet announced whose owner gets a digest tonight; returns how many."""
    return con.execute(
        """UPDATE lost_nights n SET announced = n.night
           FROM accounts a
           WHERE n.night = ? AND n.announced IS NULL AND a.account_id = n.account_id
             AND lower(a.owner_email) IN (SELECT recipient FROM warning_nights WHERE night = n.night AND mailed AND recipient IS NOT NULL)""",
        [night],
    ).fetchall()[0][0]
