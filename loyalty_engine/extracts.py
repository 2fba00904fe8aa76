"""Extract files -> DuckDB staging tables, with DuckDB's own CSV and Parquet readers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from loyalty_engine.contract import TABLES, Table
from loyalty_engine.errors import ExtractError

_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class StagedTable:
    table: str
    source: Path
    rows: int


def extract_folder(root: Path, night: date) -> Path:
    """The folder holding the night's files: <root>/<YYYY-MM-DD>/ if it exists, else <root>/ itself."""
    dated = root / night.isoformat()
    return dated if dated.is_dir() else root


def newest_extract_date(root: Path) -> date | None:
    """The latest <YYYY-MM-DD> folder under root, or None when the files lie flat (or nothing is there)."""
    if not root.is_dir():
        return None
    nights = [_as_date(p.name) for p in root.iterdir() if p.is_dir() and _DATE_FOLDER.match(p.name)]
    return max((n for n in nights if n), default=None)


def _as_date(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:  # 2026-02-30: looks like a night, is not one
        return None


def find_table_file(folder: Path, table: str, missing_ok: bool = False) -> Path | None:
    for suffix in (".csv", ".parquet"):
        candidate = folder / f"{table}{suffix}"
        if candidate.is_file():
            return candidate
    if missing_ok:
        return None
    raise ExtractError(f"{folder}: missing required table {table} ({table}.csv or {table}.parquet)")


def stage_extracts(con: duckdb.DuckDBPyConnection, root: Path, night: date) -> dict[str, StagedTable]:
    """Read every contract table of the night into a TEMP table `stage_<name>` of text columns.

    TEMP: the staged text never reaches the database file; validate_night, on the same
    connection, turns it into the clean tables.

    Values stay text here so that one bad value costs one row, not the whole column's type:
    validation (validate.py) parses them and quarantines the rows that do not parse.
    """
    if not root.exists():
        raise ExtractError(f"{root}: extracts folder does not exist")
    folder = extract_folder(root, night)
    # Find every file first, so a missing table stops the night before anything is read.
    # An optional table (interactions, surveys) may be absent; rules that need it are skipped.
    files = {
        name: find_table_file(folder, name)
        for name, table in TABLES.items()
        if not table.optional or find_table_file(folder, name, missing_ok=True)
    }
    try:
        return {name: _stage(con, TABLES[name], path) for name, path in files.items()}
    except BaseException:
        drop_staged(con)  # leave no half-staged night behind
        raise


def drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    for name in TABLES:
        con.execute(f"DROP TABLE IF EXISTS stage_{name}")


def _stage(con: duckdb.DuckDBPyConnection, table: Table, path: Path) -> StagedTable:
    if path.stat().st_size == 0:
        raise ExtractError(f"{path}: the file is empty (a table without rows still needs its header line)")
    reader = _reader_sql(path)
    # DuckDB keeps CSV rejects in TEMP tables that accumulate; start each file with empty ones.
    con.execute("DROP TABLE IF EXISTS csv_rejects; DROP TABLE IF EXISTS csv_reject_scans")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE read_{table.name} AS SELECT * FROM {reader}", [str(path)])
    except duckdb.Error as err:
        reason = _first_line(err)
        if "sniffing" in reason:  # DuckDB's own text names neither the cause nor a line
            reason = "cannot tell its CSV layout (delimiter, quoting, line ends differ between lines)"
        raise ExtractError(f"{path}: cannot read: {reason}") from None
    if path.suffix == ".csv":
        _refuse_broken_lines(con, path)
    header = con.sql(f"SELECT * FROM read_{table.name} LIMIT 0")
    found = {c.lower().strip(): c for c in header.columns}
    types = {c.lower().strip(): str(t) for c, t in zip(header.columns, header.types)}
    for column in table.required:
        if column not in found:
            shown = ", ".join(found.values()) or "none"
            raise ExtractError(f"{path}: missing required column '{column}' (found: {shown})")
    # CSV line numbers count the header; Parquet rows count from 1. rowid is insertion order,
    # which DuckDB keeps equal to file order (preserve_insertion_order).
    first = 2 if path.suffix == ".csv" else 1
    selected = [
        f"{_as_text(_quoted(found[c.name]), types[c.name], c.kind)} AS {c.name}"
        if c.name in found
        else f"CAST(NULL AS VARCHAR) AS {c.name}"
        for c in table.columns
    ]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE stage_{table.name} AS "
        f"SELECT rowid + {first} AS _line, {', '.join(selected)} FROM read_{table.name}"
    )
    con.execute(f"DROP TABLE read_{table.name}")
    rows = con.execute(f"SELECT count(*) FROM stage_{table.name}").fetchone()[0]
    return StagedTable(table.name, path, rows)


def _reader_sql(path: Path) -> str:
    if path.suffix == ".parquet":
        return "read_parquet(?)"
    # all_varchar: typing happens in validation, where a bad value quarantines its row only.
    return (
        "read_csv(?, header=true, all_varchar=true, store_rejects=true, "
        "rejects_table='csv_rejects', rejects_scan='csv_reject_scans')"
    )


def _refuse_broken_lines(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A line with the wrong number of fields means a broken export, not a bad row: stop the night."""
    broken = con.execute("SELECT line, error_message FROM csv_rejects ORDER BY line LIMIT 1").fetchone()
    if broken:
        line, problem = broken
        if "not utf-8 encoded" in problem:
            raise ExtractError(f"{path}:{line}: the file is not UTF-8 (export it as UTF-8; Latin-1 is not read yet)")
        total = con.execute("SELECT count(DISTINCT line) FROM csv_rejects").fetchone()[0]
        more = f" ({total - 1} more broken lines)" if total > 1 else ""
        raise ExtractError(f"{path}:{line}: broken CSV line: {problem}{more}")


def _as_text(column: str, sql_type: str, kind: str) -> str:
    """A column as text. Ids stored as floating point (pandas writes a column of ints with gaps
    that way) become 17, not 17.0, so they still match the same id written as an integer."""
    if kind == "text" and (sql_type in ("FLOAT", "DOUBLE") or sql_type.startswith("DECIMAL")):
        return f"CASE WHEN {column} = trunc({column}) THEN CAST(CAST({column} AS HUGEINT) AS VARCHAR) ELSE CAST({column} AS VARCHAR) END"
    return f"CAST({column} AS VARCHAR)"


def _quoted(name: str) -> str:
    """A column name from a file header as a SQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]
