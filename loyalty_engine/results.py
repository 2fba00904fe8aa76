"""Reading stored results back for people and scripts: a night's warnings and quarantine, an
account's history, the last backtest's figures, and which nights are stored. The one home of
these queries; no Prefect, read-only database access."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb

from loyalty_engine import store
from loyalty_engine.errors import UserError
from loyalty_engine.lifecycle.routing import route_reason_sql
from loyalty_engine.lifecycle.warnings import SHADOW_REASON

ROUTE_REASON = route_reason_sql("en")  # why a warning went to ops, in the CLI's English

# The counts behind precision (lost_after_warning of outcome_known) and recall (caught of
# lost_in_range), kept beside the figures so that a share is never shown without them.
COUNTS = ("outcome_known", "lost_after_warning", "lost_in_range", "caught")


def open_database(database: Path) -> duckdb.DuckDBPyConnection:
    if not database.exists():
        raise UserError(f"{database}: no database yet; run `loyalty run` first")
    return store.connect(database, read_only=True)


def latest_loaded_night(con: duckdb.DuckDBPyConnection) -> date | None:
    """The newest night whose extracts were loaded, or None before the first."""
    return con.execute("SELECT max(night) FROM loads").fetchone()[0]


def latest_evaluated_night(con: duckdb.DuckDBPyConnection) -> date | None:
    """The newest night whose rules were evaluated and warnings advanced, or None before the first."""
    return con.execute("SELECT max(night) FROM nights").fetchone()[0]


def account_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The ids in the latest accounts extract."""
    return [row[0] for row in con.execute("SELECT account_id FROM accounts").fetchall()]


def _rows(result: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def night_quarantine(database: Path, night: date | None = None, table: str | None = None) -> list[dict]:
    """The rows a night's validation kept out, with why (default: the latest loaded night)."""
    with open_database(database) as con:
        night = night or latest_loaded_night(con)
        return _rows(
            con.execute(
                """
                SELECT night, table_name, line, row_key, column_name, check_name, value, row_kept_out, source_file
                FROM quarantine WHERE night = ? AND (? IS NULL OR table_name = ?)
                ORDER BY table_name, line, column_name
                """,
                [night, table, table],
            )
        )


def night_warnings(
    database: Path,
    night: date | None = None,
    *,
    owner: str | None = None,
    rule: str | None = None,
    state: str | None = None,
    notice: str | None = None,
) -> list[dict]:
    """Every warning of a night with its state and notice (default: the latest evaluated night),
    optionally only one owner's (by address, any case), one rule's, one state's or one notice's.

    A night that was never evaluated is a UserError: an empty list would read as "no warnings".
    """
    with open_database(database) as con:
        latest = latest_evaluated_night(con)
        if latest is None:
            raise UserError(f"{database}: no night evaluated yet; run `loyalty run` first")
        night = night or latest
        if not con.execute("SELECT count(*) FROM nights WHERE night = ?", [night]).fetchone()[0]:
            raise UserError(f"night {night} was never evaluated (the latest evaluated night is {latest})")
        if rule is not None:
            _rule_that_warned(con, rule)
        rows = _rows(
            con.execute(
                f"""
                SELECT w.night, w.account_id, a.name AS account_name, w.rule_id, w.severity, w.state,
                       CASE w.notice WHEN 'repeat' THEN 'open, mailed again' ELSE w.notice END AS notice,
                       w.mailed, coalesce(w.recipient, 'ops') AS recipient, lower(a.owner_email) AS owner_email,
                       w.cc, w.since,
                       coalesce(w.reason, {ROUTE_REASON}) AS reason, w.evidence,
                       CASE WHEN starts_with(w.reason, $shadow) THEN 'shadow' ELSE 'live' END AS mode
                FROM warning_nights w LEFT JOIN accounts a USING (account_id)
                WHERE w.night = $night
                  AND ($owner IS NULL OR lower(a.owner_email) = lower($owner))
                  AND ($rule IS NULL OR w.rule_id = $rule)
                  AND ($state IS NULL OR w.state = $state)
                  AND ($notice IS NULL OR w.notice = $notice)
                ORDER BY CASE w.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                         WHEN 'low' THEN 3 ELSE 4 END, w.account_id, w.rule_id
                """,
                {"shadow": SHADOW_REASON, "night": night, "owner": owner, "rule": rule, "state": state, "notice": notice},
            )
        )
    for row in rows:
        row["evidence"] = json.loads(row["evidence"])
    return rows


def _rule_that_warned(con: duckdb.DuckDBPyConnection, rule: str) -> None:
    """A rule id that never warned on any night is most likely a typo: refuse it, naming the closest."""
    from loyalty_engine.rules.loader import did_you_mean

    known = [r for (r,) in con.execute("SELECT DISTINCT rule_id FROM warning_nights").fetchall()]
    if rule not in known:
        raise UserError(f"--rule: no warning of rule '{rule}' on any night{did_you_mean(rule, known)}")


def account_warning_states(con: duckdb.DuckDBPyConnection, account_id: str, night: date) -> dict[str, dict] | None:
    """What the lifecycle made of each of the account's warnings on the night, by rule id: state
    (pending, firing, resolved), notice, whether and to whom it was mailed. None: the night was
    never evaluated (so no warning of it is stored)."""
    if not con.execute("SELECT count(*) FROM nights WHERE night = ?", [night]).fetchone()[0]:
        return None
    rows = _rows(
        con.execute(
            """
            SELECT rule_id, state, notice, mailed, coalesce(recipient, 'ops') AS recipient, held_nights, since
            FROM warning_nights WHERE night = ? AND account_id = ?
            """,
            [night, account_id],
        )
    )
    return {row.pop("rule_id"): row for row in rows}


# One row per change in an account's warnings: the night each rule's warning went pending, fired,
# was mailed, snoozed, inhibited, kept or resolved, and the night a pending one lapsed.
HISTORY = f"""
WITH rows AS (
    SELECT w.*,
        lag(w.notice) OVER (PARTITION BY w.rule_id ORDER BY w.night) AS was_notice,
        lag(w.state) OVER (PARTITION BY w.rule_id ORDER BY w.night) AS was_state,
        lead(w.night) OVER (PARTITION BY w.rule_id ORDER BY w.night) AS next_row
    FROM warning_nights w WHERE w.account_id = $account
),
evaluated AS (SELECT night, lead(night) OVER (ORDER BY night) AS next_night FROM nights)
SELECT night, rule_id, state, notice, mailed, coalesce(recipient, 'ops') AS recipient, held_nights,
       coalesce(reason, {ROUTE_REASON}) AS reason, evidence,
       CASE WHEN starts_with(reason, $shadow) THEN 'shadow' ELSE 'live' END AS mode
FROM rows
WHERE mailed OR notice IS DISTINCT FROM was_notice OR state IS DISTINCT FROM was_state
UNION ALL
SELECT e.next_night, r.rule_id, 'lapsed', NULL, false, NULL, 0, 'the condition no longer held', r.evidence,
       CASE WHEN starts_with(r.reason, $shadow) THEN 'shadow' ELSE 'live' END
FROM rows r JOIN evaluated e USING (night)
WHERE r.state = 'pending' AND e.next_night IS NOT NULL AND r.next_row IS DISTINCT FROM e.next_night
ORDER BY night, rule_id
"""


def account_history(database: Path, account_id: str) -> list[dict]:
    """When each of the account's warnings went pending, fired, was mailed, snoozed, inhibited
    and resolved, and why, oldest first."""
    with open_database(database) as con:
        known = con.execute(
            "SELECT count(*) FROM accounts WHERE account_id = ? UNION ALL SELECT count(*) FROM warning_nights WHERE account_id = ?",
            [account_id, account_id],
        ).fetchall()
        if not any(count for (count,) in known):
            raise UserError(f"unknown account {account_id!r}: not in tonight's accounts and never warned")
        rows = _rows(con.execute(HISTORY, {"account": account_id, "shadow": SHADOW_REASON}))
    for row in rows:
        row["event"] = _event(row)
        row["evidence"] = json.loads(row["evidence"])
    return rows


def _event(row: dict) -> str:
    """What happened, in words."""
    if row["state"] == "lapsed":
        return "pending ended"
    if row["mode"] == "shadow":  # never mailed: say what it would have sent, as the backtest counts it
        would = {
            "new": f"fired, would have been mailed to {row['recipient']}",
            "repeat": f"still open, would have been mailed again to {row['recipient']}",
            "resolved": f"resolved, would have been mailed to {row['recipient']}",
        }
        if row["notice"] in would and row["reason"] == SHADOW_REASON:
            return would[row["notice"]] + " (shadow rule)"
    return {
        "pending": f"pending ({row['held_nights']} night{'s' if row['held_nights'] != 1 else ''} held)",
        "new": f"fired, mailed to {row['recipient']}",
        "repeat": f"still open, mailed again to {row['recipient']}",
        "open": "firing",
        "snoozed": "snoozed",
        "inhibited": "inhibited",
        "kept": f"{row['state']}, not judged",
        "waiting": "fired, waiting for a later digest (attention budget)",
        "intro": f"open on the first night, listed in the introduction to {row['recipient']}",
        "resolved": f"resolved, mailed to {row['recipient']}" if row["mailed"] else "resolved, not mailed",
    }[row["notice"]]


def latest_figures(con: duckdb.DuckDBPyConnection) -> dict[str | None, dict]:
    """The figures of the latest backtest by rule id (None: the total), or {} if none ran."""
    return {row["rule_id"]: row for row in stored_figures(con)}


def stored_figures(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The rows of the latest stored backtest (live rules, then shadow ones, then the total with
    rule_id None), each with ran_at, first_night, last_night, rules, rule_id, mode and backtest.FIGURES.
    Reads any database, read-only too: [] before the first backtest or the table, and too_late
    None where the table or the row predates that figure."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'backtest_figures' AND schema_name = 'main' AND NOT temporary"
    ).fetchone()[0]
    if not exists:
        return []
    result = con.execute(
        """SELECT * FROM backtest_figures WHERE ran_at = (SELECT max(ran_at) FROM backtest_figures)
           ORDER BY rule_id IS NULL, coalesce(mode, 'live') = 'shadow', rule_id"""
    )
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, values)) for values in result.fetchall()]
    for row in rows:
        for column in ("too_late", *COUNTS):
            row.setdefault(column, None)
    return rows
