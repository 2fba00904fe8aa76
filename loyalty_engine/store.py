"""The one DuckDB file: opening it and the tables every stage shares."""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RunLocked, UserError

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
CREATE TABLE IF NOT EXISTS nights (
    night DATE PRIMARY KEY,         -- a night whose rules were evaluated and warnings advanced
    evaluated_at TIMESTAMP NOT NULL -- UTC
);
CREATE TABLE IF NOT EXISTS lost_nights (
    night DATE NOT NULL,
    account_id VARCHAR NOT NULL,    -- lost that night: silent beyond backtest.lost (lifecycle/lost.py)
    last_order DATE NOT NULL,       -- its last order: the day it was lost
    announced DATE,                 -- the night its owner's digest told of it (the first night: the starting state); NULL: not yet
    PRIMARY KEY (night, account_id)
);
CREATE TABLE IF NOT EXISTS signals (
    night DATE NOT NULL,
    account_id VARCHAR NOT NULL,
    rule_id VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    evidence VARCHAR NOT NULL,      -- JSON: the numbers behind it
    PRIMARY KEY (night, account_id, rule_id)
);                                  -- a rule's condition held for the account that night
CREATE TABLE IF NOT EXISTS warning_nights (
    night DATE NOT NULL,
    account_id VARCHAR NOT NULL,
    rule_id VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    evidence VARCHAR NOT NULL,      -- JSON: the numbers of the last night the condition held
    state VARCHAR NOT NULL,         -- pending | firing | resolved (see lifecycle.State)
    held_nights INTEGER NOT NULL,   -- evaluated nights in a row the condition held
    since DATE NOT NULL,            -- the night the state began
    last_mailed DATE,               -- last night the owner was told, while firing; NULL: not told
    notice VARCHAR NOT NULL,        -- what the night does with it (see lifecycle.Notice)
    mailed BOOLEAN NOT NULL,        -- it goes into tonight's digest
    reason VARCHAR,                 -- why it is kept, snoozed or inhibited
    recipient VARCHAR,              -- the owner's address; NULL: routed to ops (route_reason)
    route_reason VARCHAR,           -- a code (lifecycle.routing.RouteReason); the words are in i18n
    cc VARCHAR,                     -- the supervisor, for critical warnings
    route_value VARCHAR,            -- the bad owner address or name the route reason quotes
    PRIMARY KEY (night, account_id, rule_id)
);
-- A database from before route_value: the column is added last, where a new table has it.
ALTER TABLE warning_nights ADD COLUMN IF NOT EXISTS route_value VARCHAR;
CREATE TABLE IF NOT EXISTS gate_checks (
    night DATE NOT NULL,
    check_name VARCHAR NOT NULL,    -- presence | readable | schema | volume | recent_orders | freshness | quarantine | flood
    table_name VARCHAR NOT NULL,    -- '*': the whole night
    outcome VARCHAR NOT NULL,       -- pass | warn | fail | hold | skip (see gate.Outcome)
    figure VARCHAR NOT NULL,
    limit_text VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    checked_at TIMESTAMP NOT NULL   -- UTC; the last run's checks replace earlier ones
);
CREATE TABLE IF NOT EXISTS releases (
    night DATE PRIMARY KEY,         -- a night whose held digests ops let go (`loyalty release`)
    released_by VARCHAR NOT NULL,
    released_at TIMESTAMP NOT NULL  -- UTC
);
CREATE TABLE IF NOT EXISTS deliveries (
    night DATE NOT NULL,
    recipient VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    mode VARCHAR NOT NULL,          -- outbox | smtp: how it went (or was meant to go) out
    status VARCHAR NOT NULL,        -- prepared | sent | failed
    attempts INTEGER NOT NULL,      -- attempts started, including one cut short by a crash
    last_error VARCHAR,             -- one line, never a secret
    message BLOB NOT NULL,          -- the exact bytes of the last attempt
    updated_at TIMESTAMP NOT NULL,  -- UTC
    PRIMARY KEY (night, recipient)
);
CREATE TABLE IF NOT EXISTS backtest_figures (
    ran_at TIMESTAMP NOT NULL,      -- UTC; the rows of one `loyalty backtest` share it
    first_night DATE NOT NULL,
    last_night DATE NOT NULL,
    rules VARCHAR NOT NULL,         -- the rules folder or file it replayed
    rule_id VARCHAR,                -- NULL: the total over the live rules
    mode VARCHAR,                   -- live | shadow
    nights_fired INTEGER NOT NULL,  -- nights with at least one new warning
    accounts_flagged INTEGER NOT NULL,
    emails_per_owner_week DOUBLE,
    precision DOUBLE,               -- shares 0..1; NULL: no account whose outcome is known
    recall DOUBLE,
    median_lead_days DOUBLE
);
CREATE SEQUENCE IF NOT EXISTS verdict_ids;
CREATE TABLE IF NOT EXISTS verdicts (
    id BIGINT PRIMARY KEY DEFAULT nextval('verdict_ids'),  -- the later of two verdicts on one warning has the higher id
    night DATE NOT NULL,            -- the night whose digest carried the link
    account_id VARCHAR NOT NULL,
    rule_id VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,         -- the address the warning was mailed to (lower case)
    verdict VARCHAR NOT NULL,       -- useful | false_alarm | already_known (feedback.Verdict)
    recorded_at TIMESTAMP NOT NULL, -- UTC
    snooze_until DATE               -- already_known: the warning is not mailed up to and including this night
);                                  -- every answer is kept; the latest per (owner, account, rule, night) counts"""


# How long opening the file waits out another process's lock before giving up. The verdict
# pages (`loyalty feedback serve`) hold the file for milliseconds per answer; a night or a
# command that meets one of those moments waits instead of failing.
LOCK_WAIT_SECONDS = 3.0


def connect(path: Path, read_only: bool = False, wait: float = LOCK_WAIT_SECONDS) -> duckdb.DuckDBPyConnection:
    """Open the database file, creating it and the shared tables when writing. Another process
    holding the file is waited out for up to `wait` seconds, then a UserError names it."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    pause = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if "lock" in str(error).lower() and time.monotonic() + pause < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            # One writer per file: another run, `loyalty serve` or a DuckDB shell has it open.
            raise UserError(f"{path}: cannot open the database: {str(error).splitlines()[0]}") from None
    if read_only:
        _show_later_columns(con)
    else:
        con.execute(SCHEMA)
    return con


# Columns added after databases were in use. A writer adds them (SCHEMA's ALTER TABLE); a reader
# cannot, so an older file's table is shown through a TEMP view of the same name with them NULL.
LATER_COLUMNS = {"warning_nights": {"route_value": "VARCHAR"}}


def _show_later_columns(con: duckdb.DuckDBPyConnection) -> None:
    catalog = con.execute("SELECT current_database()").fetchone()[0]
    for table, added in LATER_COLUMNS.items():
        present = {row[0] for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' AND NOT internal", [table]
        ).fetchall()}
        missing = [f"NULL::{kind} AS {name}" for name, kind in added.items() if present and name not in present]
        if missing:
            con.execute(f'CREATE TEMP VIEW {table} AS SELECT *, {", ".join(missing)} FROM "{catalog}".main.{table}')


# Lock files this process holds, by path: the nightly flow, run inside `loyalty run`, joins the
# lock the command took in its first second instead of trying it again (flock would refuse it).
_HELD: set[Path] = set()


def lock_path(database: Path) -> Path:
    """`<database>.lock`: who holds the database for a run, in its one line."""
    return database.with_name(database.name + ".lock")


@contextmanager
def night_lock(database: Path, *, join: bool = False, said: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold `<database>.lock` for a whole run: a second run stops at once instead of interleaving.

    DuckDB's own file lock only covers the moments a connection is open; a run opens and closes
    its connection per stage. The lock is flock(2) on the file, which the kernel releases when
    the process dies, so a killed run never blocks the next; the file's one line says who holds
    it (PID, command, start) and is emptied when the lock is given back. A line still there when
    the lock is free was left by a run that died: the lock is taken over and `said` is told.
    `join`: when this process already holds the lock (the flow inside `loyalty run`), carry on
    under it. Raises RunLocked (exit 7) naming the holder.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(database).resolve()
    if join and path in _HELD:
        yield
        return
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunLocked(f"{database}: another run is using the database: {holder}; not starting") from None
    try:
        handle.seek(0)
        left = handle.read().strip()
        if left and said is not None:
            said(f"{database}: taking over the lock left by {left}, {_gone(left)}")
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} ({_command()}), started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC\n")
        handle.flush()
        _HELD.add(path)
        yield
    finally:
        _HELD.discard(path)
        handle.seek(0)
        handle.truncate()  # given back: an empty file is a free lock, not a stale one
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _command() -> str:
    """What holds the lock, as the holder was started: `loyalty run --date 2026-11-23`, or the script."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] not in ("", "-c", "-m") else "python"
    words = [program, *sys.argv[1:]]
    text = " ".join(words)
    return text if len(text) <= 80 else text[:79] + "…"


def _gone(holder: str) -> str:
    """Whether the PID a stale lock names still runs (then it is another program: PIDs are reused)."""
    found = re.match(r"PID (\d+)", holder)
    if not found:
        return "which ended without giving it back"
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return "which is no longer running"
    except PermissionError:
        pass
    return "which no longer holds it"


def absent_tables(con: duckdb.DuckDBPyConnection, night: date) -> set[str]:
    """The tables the night was loaded without (optional ones, by contract or by config)."""
    loaded = {row[0] for row in con.execute("SELECT table_name FROM loads WHERE night = ?", [night]).fetchall()}
    return {name for name in TABLES if name not in loaded}
