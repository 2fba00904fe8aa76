"""Loading the sample's files into plain DuckDB tables, for checking what the generator wrote
apart from the product's own staging."""

from __future__ import annotations

import duckdb


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
