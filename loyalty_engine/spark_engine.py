"""The rules on Apache Spark: the night's extracts read by Spark, checked there, the rules
evaluated there; only the night's outcomes come back, as Arrow, into the DuckDB file.

    session = start_spark(SparkSettings(master="local[1]"))
    absent = read_extracts(session, settings.extracts, night)   # temp views, one per table
    outcomes = evaluate_on_spark(session, ruleset, [night])     # pyarrow.Table, one row per account

The checks are the data contract's (extracts/schemas.py), as Spark SQL: a row whose required
value is missing or does not parse, whose key is duplicated, whose account is unknown, or whose
date lies after the night is kept out; a bad optional value is cleared. What DuckDB's staging
also does (quarantine rows with their line, encodings detected, deltas merged by id) stays in
DuckDB: the gate and the quarantine report run there as before (docs/spark.md).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa

from loyalty_engine.config import ExtractSettings, SparkSettings
from loyalty_engine.contract import INTERACTION_KINDS, TABLES, Table
from loyalty_engine.errors import ExtractError
from loyalty_engine.extracts.schemas import EMAIL
from loyalty_engine.extracts.staging import extract_folder, find_table_file, is_required
from loyalty_engine.i18n import LANGUAGES
from loyalty_engine.rules.compiler import CompiledRules, compile_rules
from loyalty_engine.rules.loader import RuleSet

# Settings a night needs whatever the cluster says: dates and the frames' timestamps without a
# time zone, no UI port per run. Others (shuffle partitions, memory) are the config's to set.
FIXED_CONF = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false"}


def start_spark(settings: SparkSettings, app_name: str = "loyalty-engine"):
    """A Spark session as config's `engine.spark` says (about 6-15 s for local[1] on a busy machine)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).master(settings.master)
    for key, value in {**settings.conf, **FIXED_CONF}.items():
        builder = builder.config(key, str(value))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")  # Spark's WARN lines would bury the night's own log
    return session


def read_extracts(session, extracts: ExtractSettings, night: date) -> set[str]:
    """Every contract table of the night as a checked temp view of its own name; the optional
    tables the night came without (empty views) are returned."""
    folder = extract_folder(Path(extracts.path), night)
    absent = set()
    for name, table in TABLES.items():
        path = find_table_file(folder, name)
        if path is None:
            if is_required(extracts, name):
                raise ExtractError(f"{folder}: the night has no {name}.csv or {name}.parquet")
            absent.add(name)
            session.sql(f"SELECT {', '.join(_empty(c) for c in table.columns + table.derived)} WHERE false").createOrReplaceTempView(name)
            continue
        if extracts.table(name).mode == "append":
            raise ExtractError(f"extracts.tables.{name}.mode: append is not read by the Spark engine yet; give it the whole table")
        _read_file(session, table, path, extracts).createOrReplaceTempView(f"raw_{name}")
        session.sql(checked_sql(table, night, _decimal(extracts, name, path))).createOrReplaceTempView(name)
    return absent


def evaluate_on_spark(session, ruleset: RuleSet, nights: date | list[date], **options) -> tuple[CompiledRules, pa.Table]:
    """compile_rules' query for Spark, run on the views `read_extracts` made: one row per
    account and night, as Arrow (small: per account, not per order)."""
    compiled = compile_rules(ruleset, nights, dialect="spark", **options)
    return compiled, session.sql(compiled.sql).toArrow()


def _decimal(extracts: ExtractSettings, name: str, path: Path) -> str:
    """The decimal mark as DuckDB's staging takes it: configured, else ',' in a ';' file."""
    csv = extracts.csv_for(name)
    if csv.decimal or path.suffix == ".parquet":
        return csv.decimal or "."
    return "," if (csv.delimiter or _sniffed_delimiter(path)) == ";" else "."


def _read_file(session, table: Table, path: Path, extracts: ExtractSettings):
    """The file's columns as text (Parquet as written), names as the contract spells them."""
    if path.suffix == ".parquet":
        frame = session.read.parquet(str(path))
    else:
        csv = extracts.csv_for(table.name)
        delimiter = csv.delimiter or _sniffed_delimiter(path)
        # Every column as text, as DuckDB's staging reads it: the contract parses it below.
        frame = session.read.csv(
            str(path), header=True, sep=delimiter, quote=csv.quote, encoding=csv.encoding or "UTF-8", inferSchema=False, multiLine=True
        )
    for column in frame.columns:
        frame = frame.withColumnRenamed(column, column.strip().lower().lstrip("\ufeff"))
    known = {c.name for c in table.columns}
    missing = [c.name for c in table.columns if c.required and c.name not in frame.columns]
    if missing:
        raise ExtractError(f"{path}: column {missing[0]} is missing")
    for column in table.columns:
        if column.name not in frame.columns:
            frame = frame.withColumn(column.name, _null_text())
    return frame.select(*[c for c in frame.columns if c in known])


def _null_text():
    from pyspark.sql import functions as F

    return F.lit(None).cast("string")


def _sniffed_delimiter(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    return max((",", ";", "\t", "|"), key=header.count)


def _empty(column) -> str:
    kind = {"text": "STRING", "date": "DATE", "number": "DOUBLE", "flag": "BOOLEAN"}[column.kind]
    return f"CAST(NULL AS {kind}) AS {column.name}"


_TRUE = "('true', 't', 'yes', 'y', '1', 'ja', 'j', 'wahr', 'x')"
_FALSE = "('false', 'f', 'no', 'n', '0', 'nein', 'falsch')"


def _typed(column, decimal: str) -> str:
    """The column parsed from its text, as validate.py's `_typed_sql` does in DuckDB."""
    text = f"NULLIF(TRIM(CAST({column.name} AS STRING)), '')"
    if column.kind == "date":
        return (
            f"COALESCE(TRY_TO_DATE({text}, 'yyyy-MM-dd'), CAST(TRY_TO_TIMESTAMP({text}) AS DATE), TRY_TO_DATE({text}, 'yyyyMMdd'), "
            rf"CASE WHEN {text} RLIKE '^\\d{{1,2}}\\.\\d{{1,2}}\\.\\d{{4}}$' THEN TRY_TO_DATE({text}, 'd.M.yyyy') END)"
        )
    if column.kind == "number":
        if decimal == ",":
            grouped = r"^[+-]?(\\d{1,3}(\\.\\d{3})+|\\d*)(,\\d+)?$"
            return f"CASE WHEN {text} RLIKE '{grouped}' THEN TRY_CAST(REPLACE(REPLACE({text}, '.', ''), ',', '.') AS DOUBLE) END"
        return f"TRY_CAST({text} AS DOUBLE)"
    if column.kind == "flag":
        return f"CASE WHEN LOWER({text}) IN {_TRUE} THEN true WHEN LOWER({text}) IN {_FALSE} THEN false END"
    return f"LOWER({text})" if column.lowercase else text


def _sql_list(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _checks(table: Table, night: date) -> dict[str, str]:
    """Per column, the condition a good value meets (NULL counts as meeting it; required values
    are checked for presence apart): the contract's pandera checks, in Spark SQL."""
    day = f"DATE '{night.isoformat()}'"
    email = EMAIL.replace("\\", "\\\\").replace("'", "\\'")
    # Dates may not lie after the night; a contract's may (a renewal signed ahead, a running term).
    checks = {c.name: f"{c.name} <= {day}" for c in table.columns if c.kind == "date" and table.name != "contracts"}
    checks |= {
        "accounts": {
            "owner_email": f"owner_email RLIKE '{email}'",
            "supervisor_email": f"supervisor_email RLIKE '{email}'",
            "owner_name": r"NOT owner_name RLIKE '[\\x00-\\x1f\\x7f]'",
            "status": "status IN ('active', 'closed')",
            "language": f"language IN {_sql_list(LANGUAGES)}",
        },
        "orders": {"amount": "amount >= 0", "currency": "currency RLIKE '^[A-Z]{3}$'"},
        "complaints": {"closed_at": f"closed_at >= opened_at AND closed_at <= {day}"},
        "contracts": {"end_date": "end_date > start_date", "annual_value": "annual_value >= 0"},
        "interactions": {"kind": f"kind IN {_sql_list(INTERACTION_KINDS)}"},
        "surveys": {"nps": "nps IN (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)"},
    }[table.name]
    return checks


def checked_sql(table: Table, night: date, decimal: str = ".") -> str:
    """The clean table from `raw_<name>`: rows with a bad required value, a duplicated key or an
    unknown account left out, bad optional values cleared, derived columns added."""
    typed = ", ".join(f"{_typed(c, decimal)} AS {c.name}" for c in table.columns)
    # A value that was written but did not parse is bad too (an empty one is merely missing).
    written = ", ".join(f"NULLIF(TRIM(CAST({c.name} AS STRING)), '') IS NOT NULL AS _written_{c.name}" for c in table.columns if c.kind != "text")
    checks = _checks(table, night)

    def good(column) -> str:
        parsed = f"({column.name} IS NOT NULL OR NOT _written_{column.name})" if column.kind != "text" else "true"
        check = f"COALESCE({checks[column.name]}, true)" if column.name in checks else "true"
        return f"({parsed} AND {check})"

    keep = [f"{c.name} IS NOT NULL AND {good(c)}" for c in table.columns if c.required and not c.value_optional]
    keep.append(f"{table.key} NOT IN (SELECT {table.key} FROM typed WHERE {table.key} IS NOT NULL GROUP BY 1 HAVING count(*) > 1)")
    if table.name != "accounts":
        # Tonight's account ids as written, quarantined accounts too (as validate.py's `known`).
        keep.append("account_id IN (SELECT NULLIF(TRIM(account_id), '') FROM raw_accounts WHERE NULLIF(TRIM(account_id), '') IS NOT NULL)")
    columns = [
        c.name if c.required and not c.value_optional else f"CASE WHEN {good(c)} THEN {c.name} END AS {c.name}"
        for c in table.columns
    ]
    derived = [f"{_spark_derived(c.name)} AS {c.name}" for c in table.derived]
    return (
        f"WITH typed AS (SELECT {typed}{', ' + written if written else ''} FROM raw_{table.name}) "
        f"SELECT {', '.join(columns + derived)} FROM typed WHERE {' AND '.join(f'({k})' for k in keep)}"
    )


def _spark_derived(name: str) -> str:
    # contract.py's derived columns are DuckDB SQL; their Spark form, one line each.
    return {"term_months": "ROUND(CAST(DATEDIFF(end_date, start_date) AS DOUBLE) / 30.4375)"}[name]
