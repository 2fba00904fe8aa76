"""Extract files -> DuckDB staging tables, with DuckDB's own CSV and Parquet readers."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from loyalty_engine.config import CsvSettings, ExtractSettings
from loyalty_engine.contract import TABLES, Table
from loyalty_engine.errors import ExtractError

_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class StagedTable:
    table: str
    source: Path
    rows: int
    mode: str = "snapshot"  # snapshot | append (extracts.tables.<name>.mode)
    types: dict[str, str] = field(default_factory=dict)  # contract column -> type in the file (Parquet)


@dataclass(frozen=True)
class ExtractProblem:
    """Why a table of the night cannot be used: the gate reports every one of them to ops."""

    table: str
    check: str  # presence | readable | schema
    detail: str  # one line, naming the file (and column)


class ExtractProblems(ExtractError):
    """The night's files cannot be staged; every problem found, not just the first."""

    def __init__(self, problems: list[ExtractProblem]) -> None:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(problems[0].detail + more)
        self.problems = problems


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


def find_table_file(folder: Path, table: str) -> Path | None:
    for suffix in (".csv", ".parquet"):
        candidate = folder / f"{table}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def is_required(extracts: ExtractSettings, name: str) -> bool:
    """The contract's word, unless config says otherwise (extracts.tables.<name>.required)."""
    required = extracts.table(name).required
    return not TABLES[name].optional if required is None else required


def stage_extracts(con: duckdb.DuckDBPyConnection, extracts: ExtractSettings | Path, night: date) -> dict[str, StagedTable]:
    """Read every contract table of the night into a TEMP table `stage_<name>` of text columns.

    TEMP: the staged text never reaches the database file; validate_night, on the same
    connection, turns it into the clean tables.

    Values stay text here so that one bad value costs one row, not the whole column's type:
    validation (validate.py) parses them and quarantines the rows that do not parse.
    Raises ExtractProblems naming every missing table, missing column and unreadable file.
    """
    if isinstance(extracts, Path):
        extracts = ExtractSettings(path=extracts)
    root = extracts.path
    if not root.exists():
        raise ExtractProblems([ExtractProblem("*", "presence", f"{root}: extracts folder does not exist")])
    folder = extract_folder(root, night)
    newest = newest_extract_date(root)
    if folder == root and newest is not None:
        # Dated folders exist but not tonight's: the export did not run (or not yet).
        detail = f"{root / night.isoformat()}: no extract for the night (the newest folder is {newest})"
        raise ExtractProblems([ExtractProblem("*", "presence", detail)])
    problems: list[ExtractProblem] = []
    staged: dict[str, StagedTable] = {}
    try:
        for name, table in TABLES.items():
            path = find_table_file(folder, name)
            if path is None:
                # An optional table may be absent; rules that need it are skipped.
                if is_required(extracts, name):
                    detail = f"{folder}: missing required table {name} ({name}.csv or {name}.parquet)"
                    problems.append(ExtractProblem(name, "presence", detail))
                continue
            try:
                staged[name] = _stage(con, table, path, extracts.csv_for(name), extracts.table(name).mode)
            except ExtractProblems as found:
                problems += found.problems
        if problems:
            raise ExtractProblems(problems)
    except BaseException:
        drop_staged(con)  # leave no half-staged night behind
        raise
    return staged


def drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    for name in TABLES:
        con.execute(f"DROP TABLE IF EXISTS stage_{name}")


def _stage(con: duckdb.DuckDBPyConnection, table: Table, path: Path, csv: CsvSettings, mode: str) -> StagedTable:
    def unusable(check: str, detail: str) -> ExtractProblems:
        return ExtractProblems([ExtractProblem(table.name, check, detail)])

    if path.stat().st_size == 0:
        raise unusable("readable", f"{path}: the file is empty (a table without rows still needs its header line)")
    reader = _reader_sql(path, csv)
    # DuckDB keeps CSV rejects in TEMP tables that accumulate; start each file with empty ones.
    con.execute("DROP TABLE IF EXISTS csv_rejects; DROP TABLE IF EXISTS csv_reject_scans")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE read_{table.name} AS SELECT * FROM {reader}", [str(path)])
    except duckdb.Error as err:
        reason = _first_line(err)
        if "sniffing" in reason:  # DuckDB's own text names neither the cause nor a line
            reason = "cannot tell its CSV layout (delimiter, quoting, line ends differ between lines)"
        raise unusable("readable", f"{path}: cannot read: {reason}") from None
    if path.suffix == ".csv":
        try:
            _refuse_broken_lines(con, path)
        except ExtractError as err:
            raise unusable("readable", str(err)) from None
    header = con.sql(f"SELECT * FROM read_{table.name} LIMIT 0")
    found = {c.lower().strip(): c for c in header.columns}
    types = {c.lower().strip(): str(t) for c, t in zip(header.columns, header.types)}
    drift = [_missing_column(path, name, found, table) for name in table.required if name not in found]
    drift += [
        f"{path}: column {c.name}: expected {_EXPECTED[c.kind]}, found {types[c.name]}"
        for c in table.columns
        if c.name in found and not _compatible(types[c.name], c.kind)
    ]
    if drift:
        raise ExtractProblems([ExtractProblem(table.name, "schema", detail) for detail in drift])
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
    return StagedTable(table.name, path, rows, mode, {c: types[c] for c in found if table.column(c)})


# What each kind of contract column may be stored as in a typed file (Parquet). Text is always
# accepted: its values are parsed row by row, and a bad one quarantines its row only.
_EXPECTED = {"date": "a date", "number": "a number", "flag": "yes/no", "text": "text"}
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")


def _compatible(sql_type: str, kind: str) -> bool:
    if sql_type == "VARCHAR" or kind == "text":
        return True
    if kind == "number":
        return sql_type.startswith(_NUMERIC)
    if kind == "date":
        return sql_type == "DATE" or sql_type.startswith("TIMESTAMP")
    return sql_type == "BOOLEAN" or sql_type.startswith(_NUMERIC)  # flag: true/false or 1/0


def _missing_column(path: Path, name: str, found: dict[str, str], table: Table) -> str:
    """Name the missing column, and the file's column it was probably renamed to."""
    unknown = [column for key, column in found.items() if not table.column(key)]
    guess = difflib.get_close_matches(name, unknown, n=1, cutoff=0.6)
    hint = f"; renamed to '{guess[0]}'?" if guess else ""
    shown = ", ".join(found.values()) or "none"
    return f"{path}: missing required column '{name}' (found: {shown}){hint}"


def _reader_sql(path: Path, csv: CsvSettings) -> str:
    if path.suffix == ".parquet":
        return "read_parquet(?)"
    # all_varchar: typing happens in validation, where a bad value quarantines its row only.
    dialect = f", delim={_sql_string(csv.delimiter)}" if csv.delimiter else ""
    return (
        f"read_csv(?, header=true, all_varchar=true, quote={_sql_string(csv.quote)}{dialect}, store_rejects=true, "
        "rejects_table='csv_rejects', rejects_scan='csv_reject_scans')"
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
