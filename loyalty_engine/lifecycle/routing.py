"""Who hears of each warning: the account's owner; ops when there is no usable owner address;
the supervisor too (cc) when the warning is critical."""

from __future__ import annotations

from datetime import date

import duckdb


def route_warnings(con: duckdb.DuckDBPyConnection, night: date) -> int:
    """Fill recipient, route_reason and cc of the night's warnings; returns how many go to ops.

    Owners were checked when the accounts were validated: a bad owner address (not one plain
    address: "a@x.de, b@y.de", a line break) or owner name (a line break or another control
    character, which would land in the To header) was cleared there and kept in quarantine,
    whose value the reason quotes. Either sends the account's warnings to ops, who can fix the
    ERP, rather than to an owner we cannot address safely."""
    con.execute(
        """
        UPDATE warning_nights w SET
            recipient = CASE WHEN bad_name.value IS NULL THEN lower(a.owner_email) END,
            route_reason = CASE
                WHEN a.owner_email IS NULL AND bad.value IS NOT NULL THEN 'owner address ''' || bad.value || ''' is not valid'
                WHEN a.owner_email IS NULL THEN 'account has no owner address'
                WHEN bad_name.value IS NOT NULL THEN 'owner name ''' || bad_name.value || ''' is not valid'
            END,
            cc = CASE WHEN w.severity = 'critical' AND a.owner_email IS NOT NULL AND bad_name.value IS NULL
                      THEN lower(a.supervisor_email) END
        FROM accounts a
        LEFT JOIN (SELECT row_key, any_value(value) AS value FROM quarantine
                   WHERE night = $night AND table_name = 'accounts' AND column_name = 'owner_email'
                   GROUP BY row_key) bad ON bad.row_key = a.account_id
        LEFT JOIN (SELECT row_key, any_value(value) AS value FROM quarantine
                   WHERE night = $night AND table_name = 'accounts' AND column_name = 'owner_name'
                   GROUP BY row_key) bad_name ON bad_name.row_key = a.account_id
        WHERE w.night = $night AND w.account_id = a.account_id
        """,
        {"night": night},
    )
    con.execute(
        """
        UPDATE warning_nights SET route_reason = 'account missing from tonight''s accounts'
        WHERE night = $night AND account_id NOT IN (SELECT account_id FROM accounts)
        """,
        {"night": night},
    )
    return con.execute(
        "SELECT count(*) FROM warning_nights WHERE night = ? AND mailed AND recipient IS NULL", [night]
    ).fetchone()[0]
