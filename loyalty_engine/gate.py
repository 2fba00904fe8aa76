"""The data-quality gate: the night's extracts must pass it before any owner gets a digest.

The worst this product can do is tell every owner that all their customers are leaving
because last night's orders extract was cut off halfway. So each night is checked against the
nights before it, and a failed check stops the night: nothing is replaced, no owner is
mailed, ops get one email saying exactly what is wrong. The gate raises; it never logs a
failure and carries on.

Checks, each with its figure, its limit and its outcome:

- presence / readable / schema: every required table is there, readable, with its columns;
- volume: row count against the previous loaded night (drop and jump);
- recent_orders: orders in the last week against the usual week before it;
- freshness: the newest order (and, where configured, other tables' newest row) is recent;
- quarantine: the share of rows that failed validation;
- flood: the night would mail too many accounts as new warnings, so the digests are held
  until ops `loyalty release` them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING

import duckdb

from loyalty_engine.config import Settings
from loyalty_engine.contract import TABLES
from loyalty_engine.errors import UserError
from loyalty_engine.extracts.staging import ExtractProblem

if TYPE_CHECKING:  # pandera, behind validate, takes a second and a half to import: not for a missing column
    from loyalty_engine.extracts.validate import TableCheck

# The usual week is the average of up to this many weeks before the last one.
USUAL_WEEKS = 8
# Below this many orders in a usual week, one quiet week says nothing.
MIN_USUAL_ORDERS = 20


class Outcome(str, Enum):
    PASS = "pass"  # within its limit
    WARN = "warn"  # worth a look, stops nothing: some rows quarantined, an optional table absent
    FAIL = "fail"  # stops the night: nothing replaced, no owner mailed, ops told
    HOLD = "hold"  # too many new warnings: the night stands, its digests wait for `loyalty release`
    SKIP = "skip"  # not checked, because an earlier check stopped the night


@dataclass(frozen=True)
class Check:
    name: str  # presence | readable | schema | volume | recent_orders | freshness | quarantine | flood
    table: str  # the extract table, or "*" for the whole night
    outcome: Outcome
    figure: str  # what the night has
    limit: str  # what it may have
    detail: str = ""  # for ops: the file, the column, what to look at
    # The figure's and the limit's numbers, for scripts (`loyalty gate --format json`): name ->
    # {"value": number, "unit": "rows" | "orders" | "accounts" | "days" | "share" | "date"}; a
    # share is a fraction (0.2 = 20 %). Empty for checks without numbers, and for stored checks.
    figures: dict[str, dict] = field(default_factory=dict, compare=False, hash=False)
    limits: dict[str, dict] = field(default_factory=dict, compare=False, hash=False)

    def text(self) -> str:
        """What was checked, the figure, the limit and the detail, on one line."""
        where = f"{self.table} {self.name}" if self.table != "*" else self.name
        text = f"{where}: {self.figure}"
        if self.limit:
            text += f" (limit: {self.limit})"
        return text + (f"; {self.detail}" if self.detail else "")

    def line(self) -> str:
        """The text, after the outcome: `FAIL  orders volume: …`."""
        return f"{self.outcome.value.upper():4}  {self.text()}"


class GateStop(UserError):
    """The night stops at the gate; `checks` holds every check with its outcome."""

    def __init__(self, night: date, checks: list[Check]) -> None:
        self.night = night
        self.checks = checks
        stopping = [c for c in checks if c.outcome in (Outcome.FAIL, Outcome.HOLD)]
        more = f" (and {len(stopping) - 1} more)" if len(stopping) > 1 else ""
        super().__init__(f"night {night} {self.verb}: {stopping[0].text()}{more}")


class GateFailed(GateStop):
    """The extracts failed a check: the night is not evaluated, no owner is mailed."""

    exit_code = 3
    verb = "stopped by the gate"


class DigestsHeld(GateStop):
    """Alert flood: the night's digests wait until ops release them."""

    exit_code = 6
    verb = "held"


def number(value: float | int | date | None, unit: str) -> dict:
    """A figure for scripts: its value and its unit."""
    return {"value": value.isoformat() if isinstance(value, date) else value, "unit": unit}


def problem_checks(problems: list[ExtractProblem]) -> list[Check]:
    """Missing tables, unreadable files and missing columns, as failed checks."""
    return [Check(p.check, p.table, Outcome.FAIL, p.detail, "") for p in problems]


def extract_checks(con: duckdb.DuckDBPyConnection, night: date, tables: list[TableCheck], settings: Settings) -> list[Check]:
    """Every check on the night's validated tables (the night's load is in `con`'s transaction)."""
    checks: list[Check] = []
    for table in tables:
        if not table.present:
            checks.append(Check("presence", table.table, Outcome.WARN, "absent (optional)", "", "rules that need it are skipped"))
            continue
        checks.append(Check("presence", table.table, Outcome.PASS, f"{table.rows_loaded:,} rows", "", table.source))
        checks.append(_volume(con, night, table, settings))
        checks.append(_quarantine(table, settings.validation.max_bad_fraction))
        max_age = settings.gate.max_age_days_per_table.get(table.table)
        if table.table == "orders" and max_age is None:
            max_age = settings.gate.max_age_days
        if max_age is not None:
            checks.append(_freshness(night, table, max_age))
        if table.table == "orders" and settings.gate.min_recent_order_share > 0:
            checks.append(_recent_orders(con, night, settings.gate.min_recent_order_share))
    return checks


def _volume(con: duckdb.DuckDBPyConnection, night: date, table: TableCheck, settings: Settings) -> Check:
    if settings.extracts.table(table.table).mode == "append":
        # A delta's size says nothing by itself; recent_orders still catches a cut-off orders delta.
        return Check(
            "volume", table.table, Outcome.PASS, f"{table.rows_loaded:,} rows in the delta", "not compared (mode: append)",
            figures={"rows": number(table.rows_loaded, "rows")},
        )
    previous = con.execute(
        "SELECT night, rows_loaded FROM loads WHERE table_name = ? AND night < ? ORDER BY night DESC LIMIT 1",
        [table.table, night],
    ).fetchall()
    gate = settings.gate
    limit = f"-{gate.max_row_drop:.0%} … +{gate.max_row_jump:.0%}"
    limits = {"max_row_drop": number(gate.max_row_drop, "share"), "max_row_jump": number(gate.max_row_jump, "share")}
    now = table.rows_loaded
    if not previous:
        return Check("volume", table.table, Outcome.PASS, f"{now:,} rows; no earlier night to compare", limit, figures={"rows": number(now, "rows")}, limits=limits)
    before_night, before = previous[0]
    figures = {"rows": number(now, "rows"), "previous_rows": number(before, "rows"), "previous_night": number(before_night, "date")}
    if before == 0:
        # A table that is always empty is not a failure; one that was empty and fills up is news, not harm.
        return Check("volume", table.table, Outcome.PASS, f"{now:,} rows ({before_night}: 0)", limit, figures=figures, limits=limits)
    change = (now - before) / before
    figures["change"] = number(change, "share")
    figure = f"{now:,} rows ({before_night}: {before:,}, {change:+.1%})"

    def check(outcome: Outcome, detail: str = "") -> Check:
        return Check("volume", table.table, outcome, figure, limit, detail, figures=figures, limits=limits)

    if now == 0:
        return check(Outcome.FAIL, f"{table.source} is empty tonight; was the export cut off?")
    if change < -gate.max_row_drop:
        return check(Outcome.FAIL, f"{table.source} has far fewer rows; was the export cut off?")
    if change > gate.max_row_jump:
        return check(Outcome.FAIL, f"{table.source} has far more rows; rows exported twice?")
    return check(Outcome.PASS)


def _quarantine(table: TableCheck, max_bad_fraction: float) -> Check:
    limit = f"{max_bad_fraction:.1%} of rows"
    limits = {"max_bad_share": number(max_bad_fraction, "share")}
    if not table.rows_loaded:
        return Check("quarantine", table.table, Outcome.PASS, "no rows", limit, figures={"rows": number(0, "rows")}, limits=limits)
    share = table.rows_quarantined / table.rows_loaded
    figure = f"{table.rows_quarantined:,} of {table.rows_loaded:,} rows ({share:.1%})"
    figures = {"rows_quarantined": number(table.rows_quarantined, "rows"), "rows": number(table.rows_loaded, "rows"), "share": number(share, "share")}
    reasons = "; ".join(str(reason) for reason in table.reasons)
    outcome = Outcome.FAIL if share > max_bad_fraction else Outcome.WARN if table.reasons else Outcome.PASS
    return Check("quarantine", table.table, outcome, figure, limit, reasons, figures=figures, limits=limits)


def _freshness(night: date, table: TableCheck, max_age_days: int) -> Check:
    limit = f"at most {max_age_days} days old"
    limits = {"max_age": number(max_age_days, "days")}
    if table.newest is None:
        return Check("freshness", table.table, Outcome.PASS, "no rows", limit, limits=limits)
    age = (night - table.newest).days
    column = TABLES[table.table].event_date
    figure = f"newest {column} {table.newest}, {age} days before the night"
    figures = {"newest": number(table.newest, "date"), "age": number(age, "days")}
    if age > max_age_days:
        return Check("freshness", table.table, Outcome.FAIL, figure, limit, f"{table.source} looks stale; is it last night's export?", figures, limits)
    return Check("freshness", table.table, Outcome.PASS, figure, limit, figures=figures, limits=limits)


def _recent_orders(con: duckdb.DuckDBPyConnection, night: date, min_share: float) -> Check:
    """Orders dated in the last 7 days against the usual week: the weeks before, same weekdays.

    Seven days hold each weekday once, so weekends and busy Mondays compare like with like.
    """
    last_week, usual, weeks = con.execute(
        f"""
        WITH span AS (
            SELECT CAST(least({USUAL_WEEKS}, date_diff('day', min(order_date), $night::DATE - 6) // 7) AS INTEGER) AS weeks
            FROM orders
        )
        SELECT
            count(*) FILTER (WHERE order_date > $night::DATE - 7 AND order_date <= $night),
            count(*) FILTER (WHERE order_date <= $night::DATE - 7 AND order_date > $night::DATE - 7 - 7 * span.weeks)
                / nullif(span.weeks, 0),
            span.weeks
        FROM orders, span
        GROUP BY span.weeks
        """,
        {"night": night},
    ).fetchone() or (0, None, 0)
    limit = f"at least {min_share:.0%} of the usual week"
    limits = {"min_share": number(min_share, "share")}
    figures = {"last_7_days": number(last_week, "orders"), "usual_week": number(usual, "orders"), "weeks_of_history": number(weeks, "weeks")}
    if weeks < 2:
        figure = f"{last_week:,} orders in the last 7 days; under 2 weeks of history before them"
        return Check("recent_orders", "orders", Outcome.PASS, figure, limit, figures=figures, limits=limits)
    if (usual or 0) < MIN_USUAL_ORDERS:
        figure = f"{last_week:,} orders in the last 7 days, usual {usual or 0:,.0f}: too few to judge (under {MIN_USUAL_ORDERS})"
        return Check("recent_orders", "orders", Outcome.PASS, figure, limit, figures=figures, limits=limits)
    share = last_week / usual
    figures["share"] = number(share, "share")
    figure = f"{last_week:,} orders in the last 7 days, usual {usual:,.0f} ({share:.0%})"
    if share < min_share:
        return Check("recent_orders", "orders", Outcome.FAIL, figure, limit, "recent orders are missing; is the export complete?", figures, limits)
    return Check("recent_orders", "orders", Outcome.PASS, figure, limit, figures=figures, limits=limits)


def flood_check(con: duckdb.DuckDBPyConnection, night: date, settings: Settings) -> Check:
    """Would the night mail too many accounts as new warnings? (Run after the lifecycle.)"""
    gate = settings.gate
    # `mailed`: only warnings owners will read count. Snoozed and inhibited ones do not, nor a
    # shadow rule's (mailed is false for them): a rule on trial, however noisy, never holds the
    # owners' digests. The night it goes live, its warnings are mailed as new and do count.
    new, watched = con.execute(
        """
        SELECT (SELECT count(DISTINCT account_id) FROM warning_nights WHERE night = ? AND notice = 'new' AND mailed),
               (SELECT count(*) FROM accounts WHERE coalesce(status, 'active') <> 'closed')
        """,
        [night],
    ).fetchone()
    share = new / watched if watched else 0.0
    limit = f"{gate.max_new_warning_share:.0%} of accounts, from {gate.flood_min_accounts} accounts on"
    figure = f"{new:,} of {watched:,} accounts newly warned ({share:.1%})"
    numbers = {
        "figures": {"accounts_newly_warned": number(new, "accounts"), "accounts": number(watched, "accounts"), "share": number(share, "share")},
        "limits": {"max_new_warning_share": number(gate.max_new_warning_share, "share"), "min_accounts": number(gate.flood_min_accounts, "accounts")},
    }

    def check(outcome: Outcome, detail: str = "") -> Check:
        return Check("flood", "*", outcome, figure, limit, detail, **numbers)

    if new < gate.flood_min_accounts or share <= gate.max_new_warning_share:
        return check(Outcome.PASS)
    if not con.execute("SELECT count(*) FROM nights WHERE night < ?", [night]).fetchone()[0]:
        # The first night ever: every open warning is new by construction, so the share says
        # nothing about the data (which the other checks have passed).
        return check(Outcome.WARN, "the first evaluated night: every warning is new")
    release = con.execute("SELECT released_by, released_at FROM releases WHERE night = ?", [night]).fetchall()
    if release:
        by, at = release[0]
        return check(Outcome.PASS, f"released by {by} at {at:%Y-%m-%d %H:%M} UTC")
    per_rule = con.execute(
        """
        SELECT rule_id, count(DISTINCT account_id) FROM warning_nights
        WHERE night = ? AND notice = 'new' AND mailed GROUP BY rule_id ORDER BY 2 DESC, 1
        """,
        [night],
    ).fetchall()
    rules = ", ".join(f"{rule} {count:,}" for rule, count in per_rule)
    return check(Outcome.HOLD, f"new warnings by rule: {rules}; look, then `loyalty release --date {night}`")


def flood_not_checked() -> Check:
    """The flood check's line on a night stopped before its rules ran."""
    return Check("flood", "*", Outcome.SKIP, "not checked", "", "the night stopped before the rules ran")


def keep_stop(settings: Settings, stop: GateStop, warn) -> None:
    """What a night stopped at the gate leaves: its checks kept (for `loyalty gate` and the
    report) and ops told, once per night, through the ledger. `warn` gets what went wrong telling them."""
    from loyalty_engine import store
    from loyalty_engine.mail.notices import tell_ops

    with store.connect(settings.database) as con:
        record_checks(con, stop.night, stop.checks)
    tell_ops(settings, stop.night, stop, warn)


def stop_if_failed(night: date, checks: list[Check]) -> None:
    """Raise GateFailed when any check failed, DigestsHeld when the flood check holds."""
    if any(c.outcome is Outcome.FAIL for c in checks):
        raise GateFailed(night, checks)
    if any(c.outcome is Outcome.HOLD for c in checks):
        raise DigestsHeld(night, checks)


def record_checks(con: duckdb.DuckDBPyConnection, night: date, checks: list[Check]) -> None:
    """Keep the night's checks (replacing an earlier run's) for `loyalty gate` and the report."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("DELETE FROM gate_checks WHERE night = ?", [night])
    con.executemany(
        "INSERT INTO gate_checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [[night, c.name, c.table, c.outcome.value, c.figure, c.limit, c.detail, now] for c in checks],
    )


def stored_checks(con: duckdb.DuckDBPyConnection, night: date) -> list[Check]:
    rows = con.execute(
        "SELECT check_name, table_name, outcome, figure, limit_text, detail FROM gate_checks WHERE night = ? ORDER BY rowid",
        [night],
    ).fetchall()
    return [Check(name, table, Outcome(outcome), figure, limit, detail) for name, table, outcome, figure, limit, detail in rows]
