"""Who hears of each warning: the account's owner; ops when there is no usable owner address;
the supervisor too (cc) when the warning is critical.

Why a warning went to ops is stored as a code (RouteReason) with the bad value it quotes beside
it; each reader gets the words in their own language (i18n ROUTE_REASONS).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

import duckdb

from loyalty_engine import i18n


class RouteReason(StrEnum):
    """Why a warning goes to ops instead of its owner: the code in warning_nights.route_reason."""

    NO_OWNER_ADDRESS = "no_owner_address"  # the account names no owner address
    OWNER_ADDRESS_INVALID = "owner_address_invalid"  # its owner address was quarantined; route_value quotes it
    OWNER_NAME_INVALID = "owner_name_invalid"  # its owner name was quarantined; route_value quotes it
    ACCOUNT_MISSING = "account_missing"  # the account is not in tonight's accounts at all


def route_warnings(con: duckdb.DuckDBPyConnection, night: date) -> int:
    """Fill recipient, route_reason (with route_value) and cc of the night's warnings; returns how many go to ops.

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
                WHEN a.owner_email IS NULL AND bad.value IS NOT NULL THEN $owner_address_invalid
                WHEN a.owner_email IS NULL THEN $no_owner_address
                WHEN bad_name.value IS NOT NULL THEN $owner_name_invalid
            END,
            route_value = CASE WHEN a.owner_email IS NULL THEN bad.value ELSE bad_name.value END,
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
        {
            "night": night,
            "owner_address_invalid": RouteReason.OWNER_ADDRESS_INVALID.value,
            "no_owner_address": RouteReason.NO_OWNER_ADDRESS.value,
            "owner_name_invalid": RouteReason.OWNER_NAME_INVALID.value,
        },
    )
    con.execute(
        """
        UPDATE warning_nights SET route_reason = $account_missing
        WHERE night = $night AND account_id NOT IN (SELECT account_id FROM accounts)
        """,
        {"night": night, "account_missing": RouteReason.ACCOUNT_MISSING.value},
    )
    return con.execute(
        "SELECT count(*) FROM warning_nights WHERE night = ? AND mailed AND recipient IS NULL", [night]
    ).fetchone()[0]


def route_reason_sql(language: str) -> str:
    """A SQL expression over warning_nights' route_reason and route_value: the reason in the
    language's words, for queries that print it. A reason stored before reasons were codes
    (English prose) comes out as it was written.

    >>> print(route_reason_sql("en")[:77])
    CASE route_reason WHEN 'no_owner_address' THEN 'account has no owner address'
    """
    reasons = i18n.language(language).route_reasons
    # Written out rather than built with sqlglot: `loyalty alerts` and `history` use it, and
    # importing sqlglot alone costs them about a third of a second.
    whens = []
    for reason in RouteReason:
        said = _literal(reasons[reason])
        if "{value}" in reasons[reason]:
            said = f"REPLACE({said}, '{{value}}', COALESCE(route_value, ''))"
        whens.append(f"WHEN {_literal(reason)} THEN {said}")
    return f"CASE route_reason {' '.join(whens)} ELSE route_reason END"


def _literal(text: str) -> str:
    """A SQL string literal (DuckDB reads backslashes literally; only the quote is doubled)."""
    return "'" + text.replace("'", "''") + "'"
