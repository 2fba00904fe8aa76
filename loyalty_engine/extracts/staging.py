"""Extract files -> DuckDB staging tables, with DuckDB's own CSV and Parquet readers."""

from __future__ import annotations

import codecs
import csv as csv_module
import difflib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
    rows: int  # records in the file: staged, plus those the CSV reader could not parse
    mode: str = "snapshot"  # snapshot | append (extracts.tables.<name>.mode)
    types: dict[str, str] = field(default_factory=dict)  # contract column -> type in the file (Parquet)
    # How the values are written (CSV; resolved from extracts.csv and the file, docs/extracts.md):
    decimal: str = "."  # "," : 1.234,56
    date_format: str | None = None  # strptime codes, read besides ISO, 20260301 and 31.10.2026
    encoding: str | None = None  # utf-8 | cp1252 | latin-1, as read
    delimiter: str | None = None
    unreadable: int = 0  # records the CSV reader rejected, in TEMP stage_<name>_rejects


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
        for staged in (f"stage_{name}", f"stage_{name}_rejects", f"read_{name}"):
            con.execute(f"DROP TABLE IF EXISTS {staged}")


def _stage(con: duckdb.DuckDBPyConnection, table: Table, path: Path, csv: CsvSettings, mode: str) -> StagedTable:
    def unusable(check: str, detail: str) -> ExtractProblems:
        return ExtractProblems([ExtractProblem(table.name, check, detail)])

    if path.stat().st_size == 0:
        raise unusable("readable", f"{path}: the file is empty (a table without rows still needs its header line)")
    if path.suffix == ".csv":
        try:
            _check_date_format(con, csv.date_format)
            with _utf8_source(path, csv.encoding) as source:
                dialect = _dialect(path, source, csv, table)
                cut_at = _cut_off_line(source.path, dialect)
                if cut_at is not None:
                    # Not one bad row to quarantine: the rows after it never arrived, so the
                    # night's figures would be wrong without any check noticing.
                    line, why = cut_at
                    raise unusable("readable", f"{path}:{line}: {path.name} looks cut off at line {line} ({why}: did the transfer break off?)")
                _read_csv(con, table.name, path, source, dialect)
        except ExtractError as err:
            raise unusable("readable", str(err)) from None
        header = con.sql(f"SELECT * FROM read_{table.name} LIMIT 0")
        names = header.columns
    else:
        dialect = None
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE read_{table.name} AS SELECT * FROM read_parquet(?)", [str(path)])
        except duckdb.Error as err:
            raise unusable("readable", f"{path}: cannot read: {_first_line(err)}") from None
        header = con.sql(f"SELECT * FROM read_{table.name} LIMIT 0")
        names = header.columns
    found: dict[str, str] = {}
    for name in names:
        found.setdefault(name.lower().strip(), name)
    types = {key: str(header.types[header.columns.index(name)]) for key, name in found.items()}
    drift = [_missing_column(path, name, names, table) for name in table.required if name not in found]
    drift += [
        f"{path}: column {c.name}: expected {_EXPECTED[c.kind]}, found {types[c.name]}"
        for c in table.columns
        if c.name in found and not _compatible(types[c.name], c.kind)
    ]
    if drift:
        raise ExtractProblems([ExtractProblem(table.name, "schema", detail) for detail in drift])
    selected = [
        f"{_as_text(_quoted(found[c.name]), types[c.name], c.kind)} AS {c.name}"
        if c.name in found
        else f"CAST(NULL AS VARCHAR) AS {c.name}"
        for c in table.columns
    ]
    if dialect is None:
        # Parquet rows count from 1. rowid is insertion order, which DuckDB keeps equal to file
        # order (preserve_insertion_order).
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE stage_{table.name} AS "
            f"SELECT {_position(con, table.name)} + 1 AS _line, {', '.join(selected)} FROM read_{table.name}"
        )
        unreadable = 0
    else:
        try:
            unreadable = _number_lines(con, table.name, path, dialect, selected)
        except ExtractError as err:
            raise unusable("readable", str(err)) from None
    con.execute(f"DROP TABLE read_{table.name}")
    rows = con.execute(f"SELECT count(*) FROM stage_{table.name}").fetchone()[0] + unreadable
    typed = {c: types[c] for c in found if table.column(c)}
    if dialect is None:
        return StagedTable(table.name, path, rows, mode, typed)
    return StagedTable(
        table.name, path, rows, mode, typed,
        decimal=dialect.decimal, date_format=csv.date_format, encoding=dialect.encoding,
        delimiter=dialect.delimiter, unreadable=unreadable,
    )


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


def _missing_column(path: Path, name: str, names: list[str], table: Table) -> str:
    """Name the missing column, and the file's column it was probably renamed to."""
    unknown = [column for column in names if not table.column(column.lower().strip())]
    guess = difflib.get_close_matches(name, unknown, n=1, cutoff=0.6)
    hint = f"; renamed to '{guess[0]}'?" if guess else ""
    shown = ", ".join(names) or "none"
    return f"{path}: missing required column '{name}' (found: {shown}){hint}"


# ---------------------------------------------------------------------------------------------
# CSV: encoding, dialect, DuckDB's reader, rejected records and line numbers (docs/extracts.md)

_CHUNK = 1 << 20  # bytes per read when checking or transcoding a file
_DELIMITERS = (";", ",", "\t", "|")  # the ones detected from the header line
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252 (cp1252)", "latin-1": "Latin-1"}
_REJECTED_VALUE_CHARS = 500  # of a rejected record kept in quarantine.value


@dataclass(frozen=True)
class _Utf8Source:
    """The extract as UTF-8, for DuckDB: the file itself, or a transcoded temporary copy."""

    path: Path  # what DuckDB reads
    encoding: str  # the extract's own: utf-8 | cp1252 | latin-1
    lines: int  # physical lines of the file (a last line without a line end counts)


@dataclass(frozen=True)
class _Dialect:
    delimiter: str
    quote: str
    decimal: str
    encoding: str
    header: list[str]  # column names as DuckDB reads them (unique, never empty)
    header_lines: int  # physical lines of the header record (1 unless a quoted name spans lines)
    lines: int  # physical lines of the file


@contextmanager
def _utf8_source(path: Path, configured: str | None) -> Iterator[_Utf8Source]:
    """The file as UTF-8 for DuckDB, its encoding resolved (None: detected, see _resolve_encoding)."""
    encoding = _resolve_encoding(path, configured)
    if encoding == "utf-8":
        lines, problem = _scan_utf8(path)
        if problem:
            raise ExtractError(
                f"{path}:{lines}: {problem} is not UTF-8 "
                "(set extracts.csv.encoding to cp1252 or latin-1 if the file is written that way)"
            )
        yield _Utf8Source(path, encoding, lines)
        return
    handle, name = tempfile.mkstemp(prefix="loyalty-extract-", suffix=".csv")
    os.close(handle)
    copy = Path(name)
    try:
        yield _Utf8Source(copy, encoding, _transcode(path, encoding, copy, detected=configured is None))
    finally:
        copy.unlink(missing_ok=True)


def _resolve_encoding(path: Path, configured: str | None) -> str:
    """A UTF-8 byte-order mark means UTF-8 whatever is configured; else the setting; else
    UTF-8 when every byte decodes strictly as UTF-8, and Windows-1252 (a superset of Latin-1's
    printable characters, with € and „“) when not."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(_UTF16_BOMS):
        raise ExtractError(f"{path}:1: the file is UTF-16; export it as UTF-8 or Windows-1252 (cp1252)")
    if head.startswith(_UTF8_BOM):
        return "utf-8"
    if configured is not None:
        return configured
    return "utf-8" if _scan_utf8(path)[1] is None else "cp1252"


def _scan_utf8(path: Path) -> tuple[int, str | None]:
    """The file's physical line count, or the line and byte where it stops being UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    newlines, last = 0, b"\n"
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            carried = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                at = max(err.start - carried, 0)
                return newlines + chunk.count(b"\n", 0, at) + 1, f"byte 0x{err.object[err.start]:02X}"
            if not chunk:
                return newlines + (last != b"\n"), None
            newlines += chunk.count(b"\n")
            last = chunk[-1:]


def _transcode(path: Path, encoding: str, target: Path, detected: bool) -> int:
    """Copy a single-byte encoded file to `target` as UTF-8, chunk by chunk; its physical line
    count. Line ends stay where they were, so line numbers do too."""
    newlines, last = 0, b"\n"
    with path.open("rb") as source, target.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            try:
                text = chunk.decode(encoding)
            except UnicodeDecodeError as err:
                line = newlines + chunk.count(b"\n", 0, err.start) + 1
                name = _ENCODING_NAMES[encoding]
                what = f"neither UTF-8 nor {name} text" if detected else f"not {name} text, as extracts.csv.encoding says"
                raise ExtractError(
                    f"{path}:{line}: byte 0x{chunk[err.start]:02X} is {what} (set extracts.csv.encoding to the file's encoding)"
                ) from None
            sink.write(text.encode("utf-8"))
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return newlines + (last != b"\n")


def _dialect(path: Path, source: _Utf8Source, csv: CsvSettings, table: Table) -> _Dialect:
    """Delimiter (configured, else the one that splits the header line into the most contract
    columns), decimal mark (configured, else ',' with ';' as delimiter, the German convention)
    and the header's column names, read with Python's csv module from the first record only."""
    with source.path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            first = handle.readline()
            delimiter = csv.delimiter or _detect_delimiter(first, csv.quote, table)
            handle.seek(0)
            reader = csv_module.reader(handle, delimiter=delimiter, quotechar=csv.quote, doublequote=True, strict=False)
            names = next(reader, [])
        except csv_module.Error as err:
            raise ExtractError(f"{path}:1: cannot read the header line: {err}") from None
        header_lines = max(reader.line_num, 1)
    if not names:
        raise ExtractError(f"{path}:1: the header line is empty")
    header: list[str] = []
    for position, name in enumerate(names, start=1):
        unique = name if name.strip() and name not in header else f"column{position}"
        header.append(unique)
    decimal = csv.decimal or ("," if delimiter == ";" else ".")
    return _Dialect(delimiter, csv.quote, decimal, source.encoding, header, header_lines, source.lines)


_TAIL_BYTES = 1 << 20  # the most of a file's end read to find its last line


def _cut_off_line(path: Path, dialect: _Dialect) -> tuple[int, str] | None:
    """(line, why) when the file ends in a record without a line end and with fewer fields than
    the header: the classic sign of a transfer that broke off. A complete last record without a
    line end is fine (many exports write none)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(size - _TAIL_BYTES, 0))
        tail = handle.read()
    if not tail or tail.endswith(b"\n") or dialect.lines <= dialect.header_lines:
        return None
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace").rstrip("\r")
    fields = next(csv_module.reader([last], delimiter=dialect.delimiter, quotechar=dialect.quote, strict=False), [])
    expected = len(dialect.header)
    if len(fields) >= expected and last.count(dialect.quote) % 2 == 0:
        return None
    return dialect.lines, f"its last line has no line end and {len(fields)} of {expected} fields"


def _check_date_format(con: duckdb.DuckDBPyConnection, date_format: str | None) -> None:
    if date_format:
        try:
            con.execute("SELECT TRY_STRPTIME('', ?)", [date_format])
        except duckdb.Error as err:
            reason = _first_line(err).split(": ", 1)[-1]
            raise ExtractError(f"extracts.csv.date_format {date_format!r} is not a strptime format: {reason}") from None


def _detect_delimiter(line: str, quote: str, table: Table) -> str:
    def score(delimiter: str) -> tuple[int, int]:
        names = next(csv_module.reader([line.rstrip("\r\n")], delimiter=delimiter, quotechar=quote, strict=False), [])
        known = sum(1 for name in names if table.column(name.lower().strip()))
        return known, len(names)

    return max(_DELIMITERS, key=score)


def _read_csv(con: duckdb.DuckDBPyConnection, name: str, path: Path, source: _Utf8Source, dialect: _Dialect) -> None:
    """DuckDB's CSV reader with the dialect fixed (no sniffing: a broken line must cost its
    record, not the guess of the whole file's layout); every value as text."""
    columns = ", ".join(f"{_sql_string(column)}: 'VARCHAR'" for column in dialect.header)
    reader = (
        f"read_csv(?, header=true, auto_detect=false, columns={{{columns}}}, delim={_sql_string(dialect.delimiter)}, "
        f"quote={_sql_string(dialect.quote)}, escape={_sql_string(dialect.quote)}, store_rejects=true, "
        "rejects_table='csv_rejects', rejects_scan='csv_reject_scans')"
    )

    def read(file: Path) -> None:
        # DuckDB keeps CSV rejects in TEMP tables that accumulate; start each file with empty ones.
        con.execute("DROP TABLE IF EXISTS csv_rejects; DROP TABLE IF EXISTS csv_reject_scans")
        con.execute(f"CREATE OR REPLACE TEMP TABLE read_{name} AS SELECT * FROM {reader}", [str(file)])

    lone_cr = _lone_cr_line(source.path, dialect.quote)
    if lone_cr is not None:
        raise ExtractError(f"{path}:{lone_cr}: {_LONE_CR}")
    try:
        read(source.path)
    except duckdb.Error as err:
        reason = _first_line(err).replace(str(source.path), str(path))
        if "state machine reached an invalid state" not in reason:
            raise ExtractError(f"{path}: cannot read: {reason}") from None
        # DuckDB's strict reader takes one kind of line end per file: LF lines mixed with CRLF
        # lines stop it, without a line number. Read the same lines, all ending in LF.
        handle, temporary = tempfile.mkstemp(prefix="loyalty-extract-", suffix=".csv")
        os.close(handle)
        try:
            _crlf_to_lf(source.path, Path(temporary))
            read(Path(temporary))
        except duckdb.Error as again:
            where = _lone_cr_line(source.path, None)  # a CR alone after a quote in mid-value
            if where is not None:
                raise ExtractError(f"{path}:{where}: {_LONE_CR}") from None
            raise ExtractError(f"{path}: cannot read: {_first_line(again).replace(temporary, str(path))}") from None
        finally:
            Path(temporary).unlink(missing_ok=True)
    # Keep this file's rejected records (one row each, the first error) before the next file's
    # read drops them; `reader_line` is DuckDB's count (records and blank lines, see _number_lines).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE stage_{name}_rejects AS
        SELECT line AS reader_line,
               coalesce(nullif(lower(trim(column_name)), ''), '*') AS column_name,
               'csv_' || lower(replace(error_type, ' ', '_')) AS check_name,
               trim(coalesce(csv_line, ''), chr(13) || chr(10)) AS raw,
               error_message
        FROM csv_rejects
        QUALIFY row_number() OVER (PARTITION BY line ORDER BY error_type <> 'UNQUOTED VALUE', column_idx) = 1
        """
    )
    con.execute("DROP TABLE IF EXISTS csv_rejects; DROP TABLE IF EXISTS csv_reject_scans")


_LONE_CR = (
    "a carriage return (CR) inside a line, outside quotes: where does the line end? "
    "(old Mac line ends, or a value with a line break the export did not quote)"
)


def _lone_cr_line(path: Path, quote: str | None) -> int | None:
    """The line of the first CR not followed by LF, outside quotes if `quote` is given
    (counting quote characters: exact for files quoted as RFC 4180 says)."""
    mark = quote.encode() if quote else None
    newlines = quotes = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            data, carry = carry + chunk, b""
            if chunk and data.endswith(b"\r"):  # its LF may start the next chunk
                data, carry = data[:-1], b"\r"
            if data.count(b"\r") != data.count(b"\r\n"):
                for match in re.finditer(rb"\r(?!\n)", data):
                    if mark is None or (quotes + data.count(mark, 0, match.start())) % 2 == 0:
                        return newlines + data.count(b"\n", 0, match.start()) + 1
            if not chunk:
                return None
            newlines += data.count(b"\n")
            quotes += data.count(mark) if mark else 0


def _crlf_to_lf(path: Path, target: Path) -> None:
    carry = b""
    with path.open("rb") as source, target.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            data, carry = carry + chunk, b""
            if data.endswith(b"\r"):
                data, carry = data[:-1], b"\r"
            sink.write(data.replace(b"\r\n", b"\n"))
        sink.write(carry)


def _number_lines(con: duckdb.DuckDBPyConnection, name: str, path: Path, dialect: _Dialect, selected: list[str]) -> int:
    """Create stage_<name> with each row's physical line, and give each rejected record its line.

    DuckDB's rows carry no line number, and it leaves rejected records out. Where every record
    is one line and none was rejected (the usual file), row i is line i + 2. Otherwise the
    records are put back in file order (a rejected record goes before the good row DuckDB's line
    count says follows it) and each line is the first line plus the records before it plus
    the line breaks inside their quoted values. Blank lines are skipped by DuckDB without a
    trace: after one, lines are that much too small (documented in docs/extracts.md).
    Returns the number of rejected records.
    """
    first = dialect.header_lines + 1
    good, rejected = con.execute(
        f"SELECT (SELECT count(*) FROM read_{name}), (SELECT count(*) FROM stage_{name}_rejects)"
    ).fetchone()
    columns = ", ".join(selected)
    position = _position(con, name)
    if not rejected and good + dialect.header_lines == dialect.lines:
        con.execute(f"CREATE OR REPLACE TEMP TABLE stage_{name} AS SELECT {position} + {first} AS _line, {columns} FROM read_{name}")
        _finish_rejects(con, name, None)
        return 0
    breaks = " + ".join(_breaks(_quoted(column)) for column in dialect.header) or "0"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE order_{name} AS
        WITH rejected AS (
            SELECT reader_line, row_number() OVER (ORDER BY reader_line) - 1 AS j, {_breaks('raw')} AS breaks
            FROM stage_{name}_rejects
        ),
        records AS (
            SELECT {position} AS k, true AS good, 0 AS j, {breaks} AS breaks FROM read_{name}
            UNION ALL
            -- DuckDB's line counts the header, the records before and blank lines: the good
            -- rows before a rejected record are its line - 2 - the rejected ones before it.
            SELECT least(greatest(reader_line - 2 - j, 0), {good}), false, j, breaks FROM rejected
        )
        SELECT k, good, j, breaks,
               CAST({first} + row_number() OVER w - 1
                 + coalesce(sum(breaks) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS line
        FROM records
        WINDOW w AS (ORDER BY k, good, j)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE stage_{name} AS
        SELECT o.line AS _line, {columns}
        FROM (SELECT {position} AS _position, * FROM read_{name}) r JOIN order_{name} o ON o.good AND o.k = r._position
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE stage_{name}_rejects AS
        SELECT o.line, r.* EXCLUDE (reader_line)
        FROM (SELECT *, row_number() OVER (ORDER BY reader_line) - 1 AS j FROM stage_{name}_rejects) r
        JOIN order_{name} o ON NOT o.good AND o.j = r.j
        """
    )
    last = con.execute(f"SELECT max(line + breaks) FROM order_{name}").fetchone()[0]
    con.execute(f"DROP TABLE order_{name}")
    if last is not None and last > dialect.lines:
        # More records than lines: the reader broke a line somewhere we cannot see.
        where = _lone_cr_line(path, None)  # CR, LF and quotes are the same bytes in every encoding read
        raise ExtractError(f"{path}:{where}: {_LONE_CR}" if where else f"{path}: the reader found more records than the file has lines")
    _finish_rejects(con, name, path)
    return rejected


def _finish_rejects(con: duckdb.DuckDBPyConnection, name: str, path: Path | None) -> None:
    """Refuse a quote left open; keep the rejected records as quarantine wants them (None: there are none)."""
    if path is not None:
        # An unterminated quote runs over the lines after it: DuckDB then takes them (in parallel
        # reads: an unknown part of the rest of the file) as one value. Not a bad row but a
        # broken file: stop rather than lose rows without a trace.
        open_quote = con.execute(
            f"SELECT line FROM stage_{name}_rejects WHERE check_name = 'csv_unquoted_value' AND contains(raw, chr(10)) "
            "ORDER BY line LIMIT 1"
        ).fetchone()
        if open_quote:
            raise ExtractError(
                f"{path}:{open_quote[0]}: a quoted value is not closed where its line ends; "
                "the lines after it cannot be read reliably (a stray quote character?)"
            )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE stage_{name}_rejects AS
            SELECT line, column_name, check_name,
                   CASE WHEN length(raw) > {_REJECTED_VALUE_CHARS} THEN left(raw, {_REJECTED_VALUE_CHARS}) || '…' ELSE raw END AS value,
                   error_message
            FROM stage_{name}_rejects
            """
        )
    else:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE stage_{name}_rejects (line BIGINT, column_name VARCHAR, check_name VARCHAR, "
            "value VARCHAR, error_message VARCHAR)"
        )


def _position(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """SQL: a row's 0-based position in read_<name>, in file order.

    rowid is insertion order, but inside a transaction (the night's) DuckDB numbers new rows
    from 36028797018960000, not 0: count from the table's first rowid.
    """
    first = con.execute(f"SELECT coalesce(min(rowid), 0) FROM read_{name}").fetchall()[0][0]
    return f"(rowid - {first})"


def _breaks(column: str) -> str:
    """SQL: the line breaks inside a text value (0 for NULL)."""
    return f"coalesce(length({column}) - length(replace({column}, chr(10), '')), 0)"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
