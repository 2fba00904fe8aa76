"""The one DuckDB file: opening it and the tables every stage shares."""

from __future__ import annotations

from pathlib import Path

import duckdb

SCHEMA = """
CREATE TABLE IF NOT EXISTS loads (
    night DATE NOT NULL,            -- business date of the extract
    table_name VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    rows_loaded BIGINT NOT NULL,    -- rows in the file
    rows_quarantined BIGINT NOT NULL,
    loaded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (night, table_name)
);
CREATE TABLE IF NOT EXISTS quarantine (
    night DATE NOT NULL,
    table_name VARCHAR NOT NULL,
    line BIGINT NOT NULL,           -- CSV line (header is line 1) or Parquet row
    row_key VARCHAR,                -- the row's id as written in the extract
    column_name VARCHAR NOT NULL,
    check_name VARCHAR NOT NULL,
    value VARCHAR,                  -- the offending value as written in the extract
    source_file VARCHAR NOT NULL,
    row_kept_out BOOLEAN NOT NULL   -- true: a required value, the row is out; false: an optional value, cleared
);
CREATE TABLE IF NOT EXISTS warnings (
    night DATE NOT NULL,
    account_id VARCHAR NOT NULL,
    rule_id VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    evidence VARCHAR NOT NULL,      -- JSON: the numbers behind the warning
    PRIMARY KEY (night, account_id, rule_id)
);
"""


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the database file, creating it and the shared tables when writing."""
    if read_only:
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    return con
