"""Reading stored results back for people and scripts: no Prefect, read-only database access."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb

from loyalty_engine import store
from loyalty_engine.errors import UserError


def open_database(database: Path) -> duckdb.DuckDBPyConnection:
    if not database.exists():
        raise UserError(f"{database}: no database yet; run `loyalty run` first")
    return store.connect(database, read_only=True)


def _rows(result: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def night_quarantine(database: Path, night: date | None = None, table: str | None = None) -> list[dict]:
    """The rows a night's validation kept out, with why (default: the latest loaded night)."""
    with open_database(database) as con:
        night = night or con.execute("SELECT max(night) FROM loads").fetchone()[0]
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


def night_warnings(database: Path, night: date | None = None) -> list[dict]:
    """A night's warnings with account and owner (default: the latest evaluated night)."""
    with open_database(database) as con:
        if night is None:
            night = con.execute("SELECT max(night) FROM warnings").fetchone()[0]
            if night is None:
                return []
        result = con.execute(
            """
            SELECT w.night, w.account_id, a.name AS account_name, w.rule_id, w.severity,
                   a.owner_email, a.owner_name, w.evidence
            FROM warnings w LEFT JOIN accounts a USING (account_id)
            WHERE w.night = ?
            ORDER BY CASE w.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                     WHEN 'low' THEN 3 ELSE 4 END, a.owner_email, w.account_id, w.rule_id
            """,
            [night],
        )
        rows = _rows(result)
    for row in rows:
        row["evidence"] = json.loads(row["evidence"])
    return rows
