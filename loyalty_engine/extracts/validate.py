"""Staged extract -> clean tables + quarantine, checked by the pandera schemas.

Every failing cell is stored in `quarantine` with the line, the row's id, the column, the check
and the value as written. A bad required value keeps its row out of the evaluation; a bad
optional value is cleared and the row goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import duckdb
import pandera.polars as pa
import polars as pl

from loyalty_engine.contract import TABLES, Table
from loyalty_engine.extracts.staging import StagedTable, drop_staged
from loyalty_engine.extracts.schemas import SCHEMAS

BATCH_ROWS = 500_000


@dataclass(frozen=True)
class QuarantineReason:
    """One kind of failure in a table: how many rows, and the first one as an example."""

    column: str
    check: str
    rows: int
    first_line: int
    first_value: str | None
    rows_kept_out: bool  # false: the values were cleared and the rows went on

    def __str__(self) -> str:
        outcome = "" if self.rows_kept_out else ", value cleared"
        return f"{self.rows:,} × {self.column} {self.check} (first: line {self.first_line}, {self.first_value!r}{outcome})"


@dataclass(frozen=True)
class TableCheck:
    table: str
    source: str
    rows_loaded: int
    rows_quarantined: int  # rows kept out of the evaluation
    reasons: list[QuarantineReason] = field(default_factory=list)  # the most frequent first
    newest: date | None = None  # latest event date among the clean rows (orders: order_date …)
    present: bool = True  # false: an optional table the night came without


def validate_night(con: duckdb.DuckDBPyConnection, staged: dict[str, StagedTable], night: date) -> list[TableCheck]:
    """Check every staged table and publish the night's clean tables.

    The caller owns the transaction (night.py makes the whole night one): nothing here commits.
    """
    # Tonight's account ids; with accounts as a delta (mode: append), the stored ones count too.
    known = "SELECT nullif(trim(account_id), '') FROM stage_accounts"
    if "accounts" in staged and staged["accounts"].mode == "append" and _exists(con, "accounts"):
        known += " UNION ALL SELECT account_id FROM accounts"
    results = [
        _validate_table(con, table, staged[name], night, known) if name in staged else _absent_table(con, table, night)
        for name, table in TABLES.items()
    ]
    drop_staged(con)
    return results


def _validate_table(con: duckdb.DuckDBPyConnection, table: Table, staged: StagedTable, night: date, known_accounts: str) -> TableCheck:
    typed = _typed_sql(table, known_accounts, staged.decimal, staged.date_format)
    con.execute(f"CREATE OR REPLACE TEMP TABLE typed_{table.name} AS {typed}")
    failures = _failures(con, table.name, SCHEMAS[table.name](night))
    con.execute("DELETE FROM quarantine WHERE night = ? AND table_name = ?", [night, table.name])
    if staged.unreadable:
        # Records the CSV reader could not split into the header's columns: the raw line, kept out.
        con.execute(
            f"""
            INSERT INTO quarantine
            SELECT ?, ?, line, NULL, column_name, check_name, value, ?, true FROM stage_{table.name}_rejects
            """,
            [night, table.name, str(staged.source)],
        )
    if failures.height:
        con.register("failed_rows", failures.to_arrow())
        raw_value = " ".join(f"WHEN '{c.name}' THEN s.{c.name}" for c in table.columns)
        required = ", ".join(f"'{name}'" for name in table.required_values)
        # One quarantine row per bad cell: an unparseable required date fails both `is_date` and
        # `not_nullable`; the first says more.
        con.execute(
            f"""
            INSERT INTO quarantine
            SELECT ?, ?, f._line, s.{table.key}, f.column_name, f.check_name,
                   CASE f.column_name {raw_value} END, ?, f.column_name IN ({required})
            FROM failed_rows f JOIN stage_{table.name} s USING (_line)
            QUALIFY row_number() OVER (
                PARTITION BY f._line, f.column_name ORDER BY f.check_name = 'not_nullable', f.check_name) = 1
            """,
            [night, table.name, str(staged.source)],
        )
        con.unregister("failed_rows")
    # A bad required value keeps the row out; a bad optional one (a typo in supervisor_email)
    # is cleared, so the account still gets its warnings.
    cleared = {
        row[0]
        for row in con.execute(
            "SELECT DISTINCT column_name FROM quarantine WHERE night = ? AND table_name = ? AND NOT row_kept_out",
            [night, table.name],
        ).fetchall()
    }
    keep = ", ".join(
        f"CASE WHEN _line IN (SELECT line FROM quarantine WHERE night = $night AND table_name = $table "
        f"AND column_name = '{c.name}') THEN NULL ELSE {c.name} END AS {c.name}"
        if c.name in cleared
        else c.name
        for c in table.columns
    )
    derived = "".join(f", {c.sql} AS {c.name}" for c in table.derived)
    clean = f"""
        SELECT {keep}{derived} FROM typed_{table.name}
        WHERE _line NOT IN (SELECT line FROM quarantine WHERE night = $night AND table_name = $table AND row_kept_out)
    """
    params = {"night": night, "table": table.name}
    if staged.mode == "append" and _exists(con, table.name):
        # A delta: its rows replace the stored rows with the same id; the others stay.
        con.execute(f"CREATE OR REPLACE TEMP TABLE delta_{table.name} AS {clean}", params)
        con.execute(f"DELETE FROM {table.name} WHERE {table.key} IN (SELECT {table.key} FROM delta_{table.name})")
        con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM delta_{table.name}")
        con.execute(f"DROP TABLE delta_{table.name}")
    else:
        con.execute(f"CREATE OR REPLACE TABLE {table.name} AS {clean}", params)
    con.execute(f"DROP TABLE typed_{table.name}")
    quarantined = con.execute(
        "SELECT count(DISTINCT line) FROM quarantine WHERE night = ? AND table_name = ? AND row_kept_out",
        [night, table.name],
    ).fetchone()[0]
    con.execute(
        "INSERT OR REPLACE INTO loads VALUES (?, ?, ?, ?, ?, ?)",
        [night, table.name, str(staged.source), staged.rows, quarantined, datetime.now(timezone.utc).replace(tzinfo=None)],
    )
    reasons = [
        QuarantineReason(*row)
        for row in con.execute(
            """
            SELECT column_name, check_name, count(*), min(line), arg_min(value, line), bool_or(row_kept_out)
            FROM quarantine WHERE night = ? AND table_name = ?
            GROUP BY column_name, check_name ORDER BY 6 DESC, 3 DESC, 4 LIMIT 3
            """,
            [night, table.name],
        ).fetchall()
    ]
    newest = None
    if table.event_date:
        newest = con.execute(f"SELECT max({table.event_date}) FROM {table.name}").fetchone()[0]
    return TableCheck(table.name, str(staged.source), staged.rows, quarantined, reasons, newest)


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [name]).fetchone()[0])


def _absent_table(con: duckdb.DuckDBPyConnection, table: Table, night: date) -> TableCheck:
    """An optional table the night came without: empty tonight, and not counted as loaded."""
    con.execute(table.create_sql())
    con.execute("DELETE FROM quarantine WHERE night = ? AND table_name = ?", [night, table.name])
    con.execute("DELETE FROM loads WHERE night = ? AND table_name = ?", [night, table.name])
    return TableCheck(table.name, "", 0, 0, present=False)


def _typed_sql(table: Table, known_accounts: str, decimal: str = ".", date_format: str | None = None) -> str:
    """Parse dates and numbers in SQL; keep the text beside them; add the whole-table facts.

    decimal and date_format: how the extract writes them (StagedTable, from extracts.csv).
    """
    columns = ["_line"]
    for column in table.columns:
        text = f"nullif(trim({column.name}), '')"
        if column.kind == "date":
            columns += [f"{_date_sql(text, date_format)} AS {column.name}", f"{text} AS _raw_{column.name}"]
        elif column.kind == "flag":
            parsed = (
                f"CASE WHEN lower({text}) IN ('true', 't', 'yes', 'y', '1', 'ja', 'j', 'wahr', 'x') THEN true "
                f"WHEN lower({text}) IN ('false', 'f', 'no', 'n', '0', 'nein', 'falsch') THEN false END"
            )
            columns += [f"{parsed} AS {column.name}", f"{text} AS _raw_{column.name}"]
        elif column.kind == "number":
            columns += [f"{_number_sql(text, decimal)} AS {column.name}", f"{text} AS _raw_{column.name}"]
        else:
            columns.append(f"{'lower(' + text + ')' if column.lowercase else text} AS {column.name}")
    key = f"nullif(trim({table.key}), '')"
    # A semi-join against the few duplicated keys is much cheaper than a window over every row.
    columns.append(f"{key} IN (SELECT {key} FROM stage_{table.name} GROUP BY 1 HAVING count(*) > 1) AS _duplicate_key")
    if table.name != "accounts":
        columns.append(
            # A blank id among the accounts must not make every lookup unknown (x IN (…, NULL) is NULL).
            f"nullif(trim(account_id), '') IN (SELECT id FROM ({known_accounts}) AS known(id) WHERE id IS NOT NULL) AS _account_known"
        )
    return f"SELECT {', '.join(columns)} FROM stage_{table.name}"


def _date_sql(text: str, date_format: str | None) -> str:
    """A date written as configured (strptime codes), else in one of the unambiguous forms: ISO
    dates, timestamps where a date is meant ('2026-03-01 14:05'), the compact 20260301 of SAP
    and many ERPs, and the German 31.10.2026 (dots mean day first; four-digit year only, so
    31.10.26 is not read as the year 26)."""
    forms = [
        f"TRY_CAST(TRY_CAST({text} AS TIMESTAMP) AS DATE)",
        f"CAST(TRY_STRPTIME({text}, '%Y%m%d') AS DATE)",
        rf"CASE WHEN regexp_full_match({text}, '\d{{1,2}}\.\d{{1,2}}\.\d{{4}}') THEN CAST(TRY_STRPTIME({text}, '%d.%m.%Y') AS DATE) END",
    ]
    if date_format:
        forms.insert(0, f"CAST(TRY_STRPTIME({text}, {_sql_string(date_format)}) AS DATE)")
    return f"coalesce({', '.join(forms)})"


def _number_sql(text: str, decimal: str) -> str:
    """A number. With a decimal comma, '.' may only group thousands (1.234.567,8): '1.5' in such
    a file is not a number rather than silently 15."""
    if decimal == ",":
        grouped = r"[+-]?(\d{1,3}(\.\d{3})+|\d*)(,\d+)?"
        return f"CASE WHEN regexp_full_match({text}, '{grouped}') THEN TRY_CAST(replace(replace({text}, '.', ''), ',', '.') AS DOUBLE) END"
    return f"TRY_CAST({text} AS DOUBLE)"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _failures(con: duckdb.DuckDBPyConnection, name: str, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """Validate the typed table batch by batch (lazily: every failure, not just the first)."""
    found = [pl.DataFrame(schema={"_line": pl.Int64, "column_name": pl.String, "check_name": pl.String})]
    reader = con.sql(f"SELECT * FROM typed_{name}").to_arrow_reader(BATCH_ROWS)
    with reader:  # closed even on an error, so the transaction can still be rolled back
        return pl.concat(found + list(_batch_failures(reader, name, schema)))


def _batch_failures(reader, name: str, schema: pa.DataFrameSchema):
    for batch in reader:
        frame = pl.from_arrow(batch)
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as err:
            cases = err.failure_cases
            whole_column = cases.filter(pl.col("index").is_null())
            if whole_column.height:
                raise RuntimeError(f"{name}: schema failure without a row: {whole_column.row(0, named=True)}")
            yield cases.select(
                frame["_line"].gather(cases["index"]).alias("_line"),
                pl.col("column").alias("column_name"),
                pl.col("check").str.replace(r"\(.*$", "").alias("check_name"),
            )
