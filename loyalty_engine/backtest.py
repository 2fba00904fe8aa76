"""Replay the rules over past nights and judge their warnings against what happened afterwards.

The database's latest extract holds every account's history, so any past night can be seen as
it was: the compiler counts only rows dated up to each night. The replay has three steps:

1. **Signals** for every account and night of the range from set-based SQL (the compiler's
   streamed form: one sort of rows and per-night probes), in chunks of accounts so that
   memory stays bounded. Only what the lifecycle needs is kept: the nights a condition held,
   and the nights it could not be judged for pairs that held at some point.
2. **Warnings** from the lifecycle and the digest policy (`for:`, hysteresis, repeats,
   resolution, inhibition, lost accounts, the budget; snoozes off), for all nights at once in
   an in-memory database of its own (lifecycle/replay.py: window arithmetic over each pair's
   nights, the same rows as advancing night after night; tests/unit/lifecycle/test_replay.py).
3. **Figures** per rule and for all live rules together: nights fired, accounts flagged, the
   emails each owner would have had per week, and against the accounts that were lost
   (`account_fates`): precision, the warnings that came too late (after the loss), recall and
   the median lead time (docs/backtest.md). Each flagged account's fate (`FATES`) is kept, so
   `flagged_accounts` / `write_flagged` can show the accounts behind every figure.

`tune` replays one rule once per combination of its params (`loyalty tune`) and marks the
combinations on the Pareto front of precision, recall and digests (`pareto_front`).
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa
from sqlglot import exp

from loyalty_engine import store
from loyalty_engine.config import BacktestSettings, DigestSettings, LostSettings
from loyalty_engine.errors import UserError
from loyalty_engine.lifecycle.lost import LOST_SPELLS
from loyalty_engine.lifecycle.replay import replay_warnings
from loyalty_engine.results import COUNTS, stored_figures  # noqa: F401  (there: `rules list` reads figures without this module)
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.evaluate import runnable
from loyalty_engine.rules.loader import RuleSet

# Account x night probes per chunk of the signal query: about 4 GB of DuckDB memory each.
PROBES_PER_CHUNK = 4_000_000
# The figures kept per rule and for all live rules (columns of backtest_figures, keys of the JSON).
FIGURES = ("nights_fired", "accounts_flagged", "emails_per_owner_week", "precision", "too_late", "recall", "median_lead_days")
# The notices of a warning's first night firing: new, or held back by the digest policy (waiting
# over the budget or for the weekly digest, or the first night's introduction). A rule warned the
# account that night, whenever the owner read it: precision and lead count from it.
FIRED = ("new", "waiting", "intro")


@dataclass
class Backtest:
    first: date
    last: date
    data_end: date  # the last night the data covers: outcomes after it are unknown
    nights: int
    owners: int
    rules: list[dict]  # per rule: rule_id, mode, and FIGURES
    total: dict  # FIGURES over the live rules together
    # Per account and rule (and '*', any live rule) that warned it: group_id, account_id,
    # first_warned, lost_on, lost_how, fate (one of FATES), owner_email. See flagged_accounts().
    flagged: list[dict] = field(default_factory=list, repr=False)
    # The replayed warning_nights: night, account_id, rule_id, notice, would_mail, owner_email.
    warnings: pa.Table | None = field(default=None, repr=False)
    # The same with all live rules mailed together, as owners get them (recipient = the owner):
    # the (recipient, night) pairs with would_mail are the digests the total counts.
    owner_mail: pa.Table | None = field(default=None, repr=False)

    def as_json(self) -> dict:
        return {"first_night": self.first.isoformat(), "last_night": self.last.isoformat(), "data_end": self.data_end.isoformat(),
                "nights": self.nights, "owners": self.owners, "rules": self.rules, "total": self.total}


def replay_nights(first: date, last: date) -> list[date]:
    """Every day from first to last: the nightly job runs every night, weekends included
    (a weekend night has the same data as Friday's and changes only the days since)."""
    return [first + timedelta(days=d) for d in range((last - first).days + 1)]


def run_backtest(
    con: duckdb.DuckDBPyConnection,
    ruleset: RuleSet,
    settings: BacktestSettings,
    first: date,
    last: date,
    repeat_after_days: int = 7,
    progress: Callable[[str], None] = lambda _: None,
    digest: DigestSettings | None = None,
    spark=None,
) -> Backtest:
    """Replay the enabled rules (live and shadow) on every night from first to last.

    With `spark` (a session holding the newest night's extracts, `spark_engine.read_extracts`),
    the rules are evaluated there; the lifecycle's replay and the figures stay in DuckDB.

    `digest` (config.yaml's digest settings) is the policy the mail volume is counted by:
    repeat_after_days, max_new, cadence, weekday and immediate_severity; without it, the
    defaults with `repeat_after_days`."""
    digest = digest or DigestSettings(repeat_after_days=repeat_after_days)
    data_end = con.execute("SELECT max(night) FROM loads").fetchall()[0][0]
    if data_end is None:
        raise ValueError("no night loaded yet")
    last = min(last, data_end)
    nights = replay_nights(first, last)
    absent = store.absent_tables(con, data_end)
    ruleset, _ = runnable(ruleset, absent)
    held = _signals(con, ruleset, nights, progress, spark)
    progress(f"replaying the lifecycle over {len(nights)} nights")
    # The real lifecycle and digest policy, two ways: each rule as if it were alone (its own
    # digests per owner: the per-rule figures, which tune compares), and the owners' real
    # digests, all live rules together (the total's digests).
    warnings, together = _lifecycle(con, held, ruleset, first, last, digest, settings.lost, data_end)
    con.register("replayed_warnings", warnings)
    con.register("replayed_digests", together)
    try:
        account_fates(con, settings.lost, data_end)
        result = _figures(con, ruleset, settings, first, last, data_end, len(nights))
        result.warnings = warnings
        result.owner_mail = together
        return result
    finally:
        con.unregister("replayed_warnings")
        con.unregister("replayed_digests")


def _signals(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, nights: list[date], progress, spark=None) -> pa.Table:
    """(night, account_id, rule_id, holds, resolves) where a condition held (true) or could not be
    judged (null), or a rule's resolve_when did not hold (resolves false or null), for an
    (account, rule) pair that held on some night: what the lifecycle needs."""
    accounts = con.execute("SELECT count(*) FROM accounts").fetchall()[0][0]
    # Spark spreads one query over its executors itself (and hashes ids otherwise than DuckDB).
    chunks = max(1, math.ceil(accounts * len(nights) / PROBES_PER_CHUNK)) if spark is None else 1
    con.execute("CREATE OR REPLACE TEMP TABLE replay_signals (night DATE, account_id VARCHAR, rule_id VARCHAR, holds BOOLEAN, resolves BOOLEAN)")
    for chunk in range(chunks):
        progress(f"evaluating {len(ruleset.rules)} rules on {len(nights)} nights, accounts part {chunk + 1} of {chunks}")
        part = exp.EQ(this=exp.Mod(this=exp.func("hash", exp.column("account_id")), expression=exp.Literal.number(chunks)), expression=exp.Literal.number(chunk))
        started = time.perf_counter()
        if spark is None:
            compiled = compile_rules(ruleset, nights, accounts=part if chunks > 1 else None, replay=True, fired=False)
            source = f"({compiled.sql})"
        else:
            from loyalty_engine.spark_engine import evaluate_on_spark

            compiled, outcomes = evaluate_on_spark(spark, ruleset, nights, replay=True, fired=False)
            con.register("spark_outcomes", outcomes)
            source = "spark_outcomes"
        holds = ", ".join(f'"{r.id}.holds"' + (f', "{r.id}.resolves"' if r.resolve_when is not None else "") for r in compiled.rules)
        con.execute(f"CREATE OR REPLACE TEMP TABLE replay_part AS SELECT account_id, night, {holds} FROM {source}")
        if spark is not None:
            con.unregister("spark_outcomes")
        progress(f"evaluated in {time.perf_counter() - started:.1f} s")
        for rule in compiled.rules:
            column = f'"{rule.id}.holds"'
            resolves = f'"{rule.id}.resolves"' if rule.resolve_when is not None else "NULL::BOOLEAN"
            unresolved = f"{resolves} IS NOT TRUE" if rule.resolve_when is not None else "false"
            con.execute(
                f"""INSERT INTO replay_signals
                SELECT night, account_id, ?, {column}, {resolves} FROM replay_part
                WHERE {column} OR (({column} IS NULL OR {unresolved}) AND account_id IN (SELECT account_id FROM replay_part WHERE {column}))""",
                [rule.id],
            )
    con.execute("DROP TABLE replay_part")
    return con.sql("SELECT * FROM replay_signals ORDER BY night").to_arrow_table()


def _lifecycle(con, held: pa.Table, ruleset: RuleSet, first: date, last: date, digest: DigestSettings, lost: LostSettings, data_end: date):
    """The warnings every night first … last, per rule alone and all rules together
    (lifecycle/replay.py: set-based, the same as advancing night after night)."""
    return replay_warnings(con, held, ruleset, first, last, digest, lost, data_end)


def account_fates(con: duckdb.DuckDBPyConnection, lost: LostSettings, data_end: date) -> None:
    """TEMP TABLE account_fates (account_id, last_order, lost_on, lost_how): which accounts were
    lost, and when, as far as the data up to data_end shows.

    - stopped: it ordered regularly (`regular_orders` in the year up to its last order) and then
      not for `no_order_days`: lost on its last order day. Known once no_order_days have passed.
    - shrank: it still orders, but a year's revenue fell by more than `revenue_drop` against the
      year before (at a month end, the months complete): lost on that month end.
    lost_on is NULL for the rest: kept, or not known yet."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE account_fates AS
        WITH last_orders AS (
            SELECT account_id, max(order_date) AS last_order FROM orders WHERE order_date <= $end GROUP BY account_id
        ),
        stopped AS (  -- lifecycle/lost.py's spells: silent since its last order, none after it
            SELECT account_id, last_order AS lost_on FROM ({LOST_SPELLS}) WHERE lost_until IS NULL AND lost_from <= $end
        ),
        months AS (
            SELECT account_id, date_trunc('month', order_date)::DATE AS month, sum(amount) AS revenue, count(*) AS orders
            FROM orders WHERE order_date <= $end GROUP BY ALL
        ),
        grid AS (  -- every account x month from its first order to the last complete month
            SELECT f.account_id, m.month::DATE AS month
            FROM (SELECT account_id, min(month) AS first_month FROM months GROUP BY account_id) f,
                 range(f.first_month, date_trunc('month', $end::DATE + 1)::DATE, INTERVAL 1 MONTH) m(month)
        ),
        years AS (
            SELECT g.account_id, (g.month + INTERVAL 1 MONTH - INTERVAL 1 DAY)::DATE AS month_end,
                sum(coalesce(m.revenue, 0)) OVER recent AS revenue_recent,
                sum(coalesce(m.revenue, 0)) OVER before AS revenue_before,
                sum(coalesce(m.orders, 0)) OVER before AS orders_before,
                count(*) OVER before AS months_before
            FROM grid g LEFT JOIN months m USING (account_id, month)
            WINDOW recent AS (PARTITION BY g.account_id ORDER BY g.month ROWS 11 PRECEDING),
                   before AS (PARTITION BY g.account_id ORDER BY g.month ROWS BETWEEN 23 PRECEDING AND 12 PRECEDING)
        ),
        shrank AS (
            SELECT account_id, min(month_end) AS lost_on FROM years
            WHERE months_before = 12 AND orders_before >= $regular AND revenue_before > 0
              AND revenue_recent < (1 - $drop) * revenue_before
            GROUP BY account_id
        )
        SELECT l.account_id, l.last_order,
            coalesce(s.lost_on, r.lost_on) AS lost_on,
            CASE WHEN s.lost_on IS NOT NULL THEN 'stopped' WHEN r.lost_on IS NOT NULL THEN 'shrank' END AS lost_how
        FROM last_orders l LEFT JOIN stopped s USING (account_id) LEFT JOIN shrank r USING (account_id)
        """,
        {"end": data_end, "silence": lost.no_order_days, "regular": lost.regular_orders, "drop": lost.revenue_drop},
    )


# What happened to a flagged account after its first warning (W) by one rule (or any live rule),
# against its loss (L, from account_fates), horizon_days (H) and min_lead_days (M). In this order:
FATES = (
    "lost in time",  # W <= L - M and L <= W + H: a hit, and early enough to act (recall counts it)
    "lost at short notice",  # L - M < W <= L: a hit (it was right), but too short before the loss for recall
    "lost before the warning",  # L < W: already lost when first warned; never a hit; counted in too_late
    "lost after the horizon",  # L > W + H: lost, but not within the horizon: a false alarm for precision
    "not lost",  # kept past W + H (it ordered later, or its silence is too short to be a loss): a false alarm
    "outcome unknown",  # the data end too soon after W to tell: left out of precision
)
HITS = ("lost in time", "lost at short notice")


def judge(con: duckdb.DuckDBPyConnection, warned: str, settings: BacktestSettings, first: date, last: date, data_end: date) -> dict[str, dict]:
    """Precision, recall, median lead and too_late per group of `warned` (a table or view with
    group_id, account_id, first_warned), against TEMP TABLE account_fates. Each flagged
    (group, account) gets one of FATES in TEMP TABLE judged_accounts (group_id, account_id,
    first_warned, last_order, lost_on, lost_how, known, fate); the figures count those rows.

    - precision: of the flagged accounts whose outcome is known, the share lost within
      horizon_days after the first warning and not before it: "lost in time" and "lost at short
      notice". An account lost before its first warning counts against precision (the warning
      came too late: it is never a hit) and is counted in too_late. Known: lost by the horizon
      (before the warning too), lost after it, or the data reach past the horizon and show it
      kept (it ordered after the horizon, or its silence is long enough).
    - too_late: flagged accounts already lost when first warned ("lost before the warning").
    - recall: of the accounts lost from first + min_lead_days to last + min_lead_days (so a
      warning in time could have come inside the range), the share first warned at least
      min_lead_days before.
    - median lead: days from the first warning to the loss (the last order for an account that
      stopped), over the flagged accounts lost up to the horizon, before the warning or after;
      positive means warned while it was still ordering."""
    params = {"horizon": settings.horizon_days, "end": data_end, "silence": settings.lost.no_order_days,
              "first": first, "last": last, "lead": settings.min_lead_days}
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE judged_accounts AS
        WITH flagged AS (
            SELECT w.group_id, w.account_id, w.first_warned, f.last_order, f.lost_on, f.lost_how,
                coalesce(f.lost_on <= w.first_warned + $horizon, false) AS lost_by_horizon
            FROM {warned} w LEFT JOIN account_fates f USING (account_id)
        ),
        judged AS (
            SELECT *, lost_by_horizon OR coalesce(lost_on > first_warned + $horizon, false)
                OR ($end >= first_warned + $horizon AND (
                    coalesce(last_order > first_warned + $horizon, false)
                    OR last_order IS NULL OR $end >= last_order + $silence)) AS known
            FROM flagged
        )
        SELECT group_id, account_id, first_warned, last_order, lost_on, lost_how, known,
            CASE
                WHEN lost_on < first_warned THEN 'lost before the warning'
                WHEN lost_by_horizon AND lost_on >= first_warned + $lead THEN 'lost in time'
                WHEN lost_by_horizon THEN 'lost at short notice'
                WHEN NOT known THEN 'outcome unknown'
                WHEN lost_on IS NOT NULL THEN 'lost after the horizon'
                ELSE 'not lost'
            END AS fate
        FROM judged
        """,
        {k: params[k] for k in ("horizon", "end", "silence", "lead")},
    )
    rows = con.execute(
        f"""
        WITH lost_in_range AS (
            SELECT account_id, lost_on FROM account_fates
            WHERE lost_on >= $first::DATE + $lead AND lost_on <= $last::DATE + $lead
        ),
        groups AS (SELECT DISTINCT group_id FROM {warned})
        SELECT g.group_id,
            (SELECT count(*) FROM judged_accounts j WHERE j.group_id = g.group_id) AS accounts_flagged,
            (SELECT count(*) FILTER (WHERE known) FROM judged_accounts j WHERE j.group_id = g.group_id) AS outcome_known,
            (SELECT count(*) FILTER (WHERE list_contains($hits, fate)) FROM judged_accounts j WHERE j.group_id = g.group_id) AS lost_after_warning,
            (SELECT count(*) FILTER (WHERE fate = 'lost before the warning') FROM judged_accounts j WHERE j.group_id = g.group_id) AS too_late,
            (SELECT median(lost_on - first_warned) FILTER (WHERE lost_on <= first_warned + $horizon) FROM judged_accounts j WHERE j.group_id = g.group_id) AS median_lead_days,
            (SELECT count(*) FROM lost_in_range) AS lost,
            (SELECT count(*) FROM lost_in_range l JOIN {warned} w ON w.account_id = l.account_id AND w.group_id = g.group_id
             WHERE w.first_warned <= l.lost_on - $lead) AS caught
        FROM groups g
        """,
        {k: params[k] for k in ("horizon", "first", "last", "lead")} | {"hits": list(HITS)},
    ).fetchall()
    fates: dict[str, dict[str, int]] = {}
    for group_id, fate, count in con.execute("SELECT group_id, fate, count(*) FROM judged_accounts GROUP BY ALL").fetchall():
        fates.setdefault(group_id, dict.fromkeys(FATES, 0))[fate] = count
    figures = {}
    for group_id, flagged, known, hits, too_late, lead, lost, caught in rows:
        figures[group_id] = {
            "accounts_flagged": flagged,
            "outcome_known": known,
            "lost_after_warning": hits,
            "too_late": too_late,
            "precision": hits / known if known else None,
            "lost_in_range": lost,
            "caught": caught,
            "recall": caught / lost if lost else None,
            "median_lead_days": float(lead) if lead is not None else None,
            "fates": fates.get(group_id, dict.fromkeys(FATES, 0)),
        }
    return figures


def _figures(con, ruleset: RuleSet, settings: BacktestSettings, first: date, last: date, data_end: date, nights: int) -> Backtest:
    live = [r.id for r in ruleset.rules if r.mode == "live"]
    owners = con.execute("SELECT count(DISTINCT owner_email) FROM accounts").fetchall()[0][0]
    weeks = nights / 7
    con.execute(
        """CREATE OR REPLACE TEMP TABLE replay_first_warnings AS
           SELECT rule_id AS group_id, account_id, min(night) AS first_warned FROM replayed_warnings WHERE list_contains($fired, notice) GROUP BY ALL
           UNION ALL
           SELECT '*', account_id, min(night) FROM replayed_warnings WHERE list_contains($fired, notice) AND list_contains($live, rule_id) GROUP BY ALL""",
        {"live": live, "fired": list(FIRED)},
    )
    judged = judge(con, "replay_first_warnings", settings, first, last, data_end)
    # Digests: the (recipient, night) pairs with mail, each rule's as if alone, and the owners' real ones.
    noise = dict(
        con.execute("SELECT rule_id, count(DISTINCT (recipient, night)) FILTER (WHERE would_mail) FROM replayed_warnings GROUP BY ALL").fetchall()
    )
    noise["*"] = con.execute("SELECT count(DISTINCT (recipient, night)) FILTER (WHERE would_mail) FROM replayed_digests").fetchall()[0][0]
    # A night fired when a warning started (a warning waiting night after night counts once).
    started = """(SELECT night, rule_id FROM (SELECT night, rule_id, notice,
                      lag(notice) OVER (PARTITION BY account_id, rule_id ORDER BY night) AS before FROM replayed_warnings)
                  WHERE list_contains($fired, notice) AND before IS DISTINCT FROM 'waiting')"""
    fired = dict(con.execute(f"SELECT rule_id, count(DISTINCT night) FROM {started} GROUP BY ALL", {"fired": list(FIRED)}).fetchall())
    fired["*"] = con.execute(
        f"SELECT count(DISTINCT night) FROM {started} WHERE list_contains($live, rule_id)", {"live": live, "fired": list(FIRED)}
    ).fetchall()[0][0]

    def row(group: str) -> dict:
        found = judged.get(group, {})
        return {
            "nights_fired": fired.get(group, 0),
            "accounts_flagged": found.get("accounts_flagged", 0),
            "emails_per_owner_week": round(noise.get(group, 0) / owners / weeks, 3) if owners and weeks else None,
            "digests": noise.get(group, 0),
            "precision": _share(found.get("precision")),
            "too_late": found.get("too_late", 0),
            "recall": _share(found.get("recall")) if found else (0.0 if judged.get("*", {}).get("lost_in_range") else None),
            "median_lead_days": found.get("median_lead_days"),
            "outcome_known": found.get("outcome_known", 0),
            "lost_after_warning": found.get("lost_after_warning", 0),
            "lost_in_range": found.get("lost_in_range", judged.get("*", {}).get("lost_in_range", 0)),
            "caught": found.get("caught", 0),
        }

    rules = [{"rule_id": r.id, "mode": r.mode, **row(r.id)} for r in ruleset.rules]
    result = con.execute(
        """SELECT j.group_id, j.account_id, j.first_warned, j.lost_on, j.lost_how, j.fate, a.owner_email
           FROM judged_accounts j LEFT JOIN accounts a USING (account_id) ORDER BY 1, 2"""
    )
    names = [d[0] for d in result.description]
    flagged = [dict(zip(names, values)) for values in result.fetchall()]
    return Backtest(first, last, data_end, nights, owners, rules, row("*"), flagged)


def _share(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def compare(before: Backtest, after: Backtest) -> dict:
    """Accounts the second rule set flags (any live rule) that the first does not, and the
    reverse, with what happened to them."""
    def accounts(backtest: Backtest) -> dict[str, dict]:
        return {f["account_id"]: f for f in backtest.flagged if f["group_id"] == "*"}

    old, new = accounts(before), accounts(after)

    def summary(ids: set[str], source: dict[str, dict]) -> dict:
        fates = [source[i] for i in sorted(ids)]
        return {
            "accounts": len(fates),
            "lost": sum(1 for f in fates if f["lost_on"] is not None),
            "accounts_list": [
                {"account_id": f["account_id"], "first_warned": f["first_warned"].isoformat(),
                 "lost_on": f["lost_on"].isoformat() if f["lost_on"] else None, "lost_how": f["lost_how"], "fate": f["fate"]}
                for f in fates
            ],
        }

    return {"added": summary(set(new) - set(old), new), "dropped": summary(set(old) - set(new), old)}


def store_figures(con: duckdb.DuckDBPyConnection, backtest: Backtest, rules: Path) -> datetime:
    """Keep the figures for `rules list` and the report; the latest backtest is the one shown.

    A database whose backtest_figures predates a figure (too_late) gets the column here; its
    older rows keep NULL there: not measured then, which is not zero."""
    ran_at = datetime.now(UTC).replace(tzinfo=None)
    for column in ("too_late", *COUNTS):
        con.execute(f"ALTER TABLE backtest_figures ADD COLUMN IF NOT EXISTS {column} INTEGER")
    rows = [(r["rule_id"], r["mode"], r) for r in backtest.rules] + [(None, None, backtest.total)]
    columns = ("ran_at", "first_night", "last_night", "rules", "rule_id", "mode", *FIGURES, *COUNTS)
    con.executemany(
        f"INSERT INTO backtest_figures ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [
            [ran_at, backtest.first, backtest.last, str(rules), rule_id, mode, *(figures[name] for name in (*FIGURES, *COUNTS))]
            for rule_id, mode, figures in rows
        ],
    )
    return ran_at


# The columns of the flagged accounts' CSV (flagged_accounts, write_flagged).
FLAGGED_COLUMNS = ("account_id", "rule_id", "first_warned", "owner_email", "fate", "lost_on")


def flagged_accounts(backtest: Backtest) -> list[dict]:
    """The accounts behind the figures: one row per account and rule that warned it in the replay
    (shadow rules too; rule_id '*' for the first warning by any live rule), with FLAGGED_COLUMNS:
    first_warned and lost_on as dates (lost_on None: not lost, as far as the data show), the
    account's owner_email (None if it has none) and its fate, one of FATES, judged as the
    figures judge it. In the order of the rules, '*' last, then by account_id."""
    order = {r["rule_id"]: index for index, r in enumerate(backtest.rules)}
    rows = [
        {"account_id": f["account_id"], "rule_id": f["group_id"], "first_warned": f["first_warned"],
         "owner_email": f["owner_email"], "fate": f["fate"], "lost_on": f["lost_on"]}
        for f in backtest.flagged
    ]
    return sorted(rows, key=lambda row: (order.get(row["rule_id"], len(order)), row["account_id"]))


def write_flagged(backtest: Backtest, path: Path) -> int:
    """Write flagged_accounts() to a CSV file: UTF-8 without a byte order mark, comma-separated,
    a header row of FLAGGED_COLUMNS, dates as YYYY-MM-DD, empty cells for None, and a cell that a
    spreadsheet would run as a formula (=, +, -, @ first) led by an apostrophe. The file appears
    whole or not at all (written beside it, then renamed). Returns the number of rows."""
    rows = flagged_accounts(backtest)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(FLAGGED_COLUMNS)
            writer.writerows([_csv_cell(row[column]) for column in FLAGGED_COLUMNS] for row in rows)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the flagged accounts: {error.strerror or error}") from None
    return len(rows)


def _csv_cell(value) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, date) else str(value)
    # A spreadsheet runs a cell that starts with = + - or @ as a formula (an account id such as
    # `=HYPERLINK(…)`); a leading apostrophe keeps it text (OWASP's advice for CSV exports).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- Tuning a rule's params on history ------------------------------------------------------------

# What makes a combination of thresholds better, and in which direction: the three figures the
# Pareto front is drawn over (docs/backtest.md, "Tuning a rule's thresholds").
OBJECTIVES = (("precision", 1), ("recall", 1), ("emails_per_owner_week", -1))


def pareto_front(rows: list[dict]) -> list[bool]:
    """For each row of figures, whether no other row beats it: none is at least as good on
    precision, recall and digests per owner and week (fewer is better) and better on one.
    An unknown figure (None) counts as the worst, so it never beats a known one. A row that
    flagged no account (accounts_flagged 0) is the rule switched off, not a threshold to choose:
    it sends no digests, so nothing could beat it and every such row would crowd the front; it
    is left out, neither on the front nor beating any row.

    >>> pareto_front([
    ...     {"precision": 0.5, "recall": 0.6, "emails_per_owner_week": 1.0},
    ...     {"precision": 0.4, "recall": 0.6, "emails_per_owner_week": 1.0},  # beaten by the first
    ...     {"precision": 0.3, "recall": 0.9, "emails_per_owner_week": 2.0},  # the best recall
    ...     {"precision": None, "recall": 0.0, "emails_per_owner_week": 0.0, "accounts_flagged": 0},
    ... ])
    [True, False, True, False]
    """
    chosen = [row.get("accounts_flagged") != 0 for row in rows]
    scores = [tuple(-math.inf if row.get(key) is None else sign * row[key] for key, sign in OBJECTIVES) for row in rows]

    def beats(a: tuple, b: tuple) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    contenders = [score for score, choice in zip(scores, chosen) if choice]
    return [choice and not any(beats(other, mine) for other in contenders) for mine, choice in zip(scores, chosen)]


# The figures `loyalty tune` shows per combination (and keeps in its JSON).
TUNE_FIGURES = ("accounts_flagged", "emails_per_owner_week", "precision", "too_late", "recall", "median_lead_days",
                "nights_fired", "outcome_known", "lost_after_warning", "lost_in_range", "caught")


@dataclass
class Tune:
    """A rule replayed once per combination of its params (`loyalty tune`)."""

    rule_id: str
    varied: list[str]  # the params varied, in the order given
    current: dict[str, float]  # the rule's params as its file has them
    # Per combination, in the order of the grid (the file's values last when the grid lacks them):
    # params (every param of the rule), current (the file's values), pareto (on the front), TUNE_FIGURES.
    combinations: list[dict]
    replay: Backtest = field(repr=False)

    def as_json(self) -> dict:
        return {
            "rule_id": self.rule_id, "varied": self.varied, "current": self.current,
            "first_night": self.replay.first.isoformat(), "last_night": self.replay.last.isoformat(),
            "data_end": self.replay.data_end.isoformat(), "nights": self.replay.nights, "owners": self.replay.owners,
            "combinations": self.combinations,
        }


def tune(
    con: duckdb.DuckDBPyConnection,
    ruleset: RuleSet,
    rule_id: str,
    grid: dict[str, list[float]],
    settings: BacktestSettings,
    first: date,
    last: date,
    repeat_after_days: int = 7,
    progress: Callable[[str], None] = lambda _: None,
    digest: DigestSettings | None = None,
) -> Tune:
    """Replay one rule on the nights first … last once per combination of the values in `grid`
    (param name: values; the cartesian product, first name slowest), and the file's values too.

    One replay: `compiler.with_variants` makes each combination a rule `<rule_id>@<n>`, and
    `run_backtest` computes the metrics once and each combination's condition as one more
    column, so the figures per combination are those of a backtest of the rule with those
    params alone (tests/system/test_tune.py checks it). Nothing is stored.

    >>> result = tune(con, ruleset, "complaint_spike", {"min_complaints": [2, 3, 4]}, BacktestSettings(), first, last)
    >>> [(c["params"]["min_complaints"], c["current"], c["pareto"]) for c in result.combinations]
    [(2, False, True), (3, True, True), (4, False, False)]
    """
    from loyalty_engine.rules.compiler import with_variants

    rule = next((r for r in ruleset.rules if r.id == rule_id), None)
    if rule is None:
        raise UserError(f"unknown rule '{rule_id}'")
    varied = list(grid)
    current = dict(rule.params)
    combinations = [dict(zip(varied, values)) for values in product(*grid.values())]
    mine = {name: current[name] for name in varied}
    if mine not in combinations:
        combinations.append(mine)  # the file's values, to compare with
    data_end = con.execute("SELECT max(night) FROM loads").fetchall()[0][0]
    variants = with_variants(ruleset, rule_id, combinations)
    if data_end is not None:
        _, skipped = runnable(RuleSet(variants.metrics, variants.rules[:1]), store.absent_tables(con, data_end))
        if skipped:
            raise UserError(f"rule '{rule_id}' cannot be replayed: it {next(iter(skipped.values())).replace(' tonight', ' in the data')}")
    progress(f"replaying {rule_id} with {len(combinations)} combinations of {', '.join(varied)}")
    replay = run_backtest(con, variants, settings, first, last, repeat_after_days, progress, digest)
    figures = {row["rule_id"]: row for row in replay.rules}
    rows = []
    for index, combination in enumerate(combinations):
        found = figures[f"{rule_id}@{index}"]
        rows.append({"params": {**current, **combination}, "current": combination == mine, "pareto": False}
                    | {name: found[name] for name in TUNE_FIGURES})
    for row, on_front in zip(rows, pareto_front(rows)):
        row["pareto"] = on_front
    return Tune(rule_id, varied, current, rows, replay)
