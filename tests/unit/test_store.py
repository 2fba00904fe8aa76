"""The one DuckDB file: older files still open for reading, with columns added since shown as NULL."""

from __future__ import annotations

from pathlib import Path

import duckdb

from loyalty_engine import store


def test_a_reader_of_an_older_database_sees_later_columns_as_null(tmp_path: Path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # warning_nights as it was before route_value
        con.execute("CREATE TABLE warning_nights (night DATE, account_id VARCHAR, route_reason VARCHAR)")
        con.execute("INSERT INTO warning_nights VALUES ('2026-11-23', 'K-1', 'no_owner_address')")
    with store.connect(path, read_only=True) as con:
        assert con.execute("SELECT account_id, route_reason, route_value FROM warning_nights").fetchall() == [
            ("K-1", "no_owner_address", None)
        ]
    with store.connect(path) as con:  # a writer adds the column for good
        assert con.execute("SELECT route_value FROM main.warning_nights").fetchall() == [(None,)]
