"""Signal quality: the shipped rules' warnings against the BG/NBD model's P(alive), at the same
number of warned accounts.

    make signal-quality                                      # installs the `benchmark` extra, then runs this
    .venv/bin/python benchmarks/signal_quality.py            # sample: 10,000 accounts, seed 7, data to 2026-11-20
    .venv/bin/python benchmarks/signal_quality.py --accounts 2000
    .venv/bin/python benchmarks/signal_quality.py --orders history.csv [--data-end 2026-06-30] [--first D --last D]

The field's statistical baseline for non-contractual churn is the BG/NBD model (Fader, Hardie and
Lee 2005): each account buys at its own Poisson rate while alive and may drop out after any
purchase; from an account's purchase history (frequency x: repeat purchase days, recency t_x: days
from the first to the last purchase day, T: days from the first purchase day to the night) it
gives P(alive), the probability that the account still buys. It needs nothing but the order book.
The model and P(alive) come from the `lifetimes` package (the `benchmark` extra, see
benchmarks/README.md for why lifetimes and not PyMC-Marketing).

What the script does:

1. **Data.** Either the sample (`generate_sample`, one night, loaded into a DuckDB file by
   `stage_extracts` + `validate_night` in one transaction, as the nightly job does), or the
   purchase history in `--orders` (a CSV file with a header and at least the columns
   account_id, order_date, amount; other columns are ignored; see --help), loaded into a DuckDB
   file as the clean tables `accounts` and `orders`, the other tables absent.
2. **Range.** By default the 365 nights that end `max(no_order_days, horizon_days) +
   min_lead_days` days before the data's end (210 with the default settings), so that every
   warning's outcome and every loss that a warning in time could have caught are known.
3. **Rules.** `loyalty_engine.backtest.run_backtest` replays the rules on every night of the
   range (live and shadow; with `--orders`, only the rules that need no other table can run).
4. **Baseline.** BG/NBD fitted (maximum likelihood, lifetimes' BetaGeoFitter) on every account's
   RFM summary as of the night before the range: no order after it is seen ("fitted once"); and,
   as a second variant, refitted on the history up to the night before each month of the range
   ("refitted each month"), which never sees the future either but learns from the losses the
   range itself brings. Then, for every night of the range (the same nights the rules replay:
   every calendar day) and every account with an order by then, the RFM summary as of that night
   (set-based SQL in DuckDB: the order days numbered per account and an ASOF join from each night
   to the account's latest order day, a month of nights at a time) and P(alive) from the fitted
   model (lifetimes, vectorised over the month's rows). An account is warned the first night its
   P(alive) falls below a threshold, chosen so that the baseline warns exactly as many accounts
   as the rules did: all live rules together, the live rules that read only the order book
   together, and (refitted model) each of those rules alone. For reference, the common cut-off
   P(alive) < 0.5 is shown too, unmatched.
5. **Scoring.** Both are judged by `loyalty_engine.backtest.judge` against `account_fates`, the
   same function the rules' backtest uses: precision, recall and median lead days. On the
   sample, ground_truth.csv also says which accounts really drifted away and when they stopped
   ordering (`lost_on`): per method, how many of them it warned, how many at least min_lead_days
   before lost_on, and the median lead before lost_on.

Python never loops over order rows: summaries are SQL, P(alive) is numpy over arrays. The table
is printed on stdout, progress on stderr, and the whole record goes to
<work>/signal-quality-results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
from common import RULES, WORK, describe_machine, package_version, peak_rss  # first: it puts this tree's project on the path

from loyalty_engine import store
from loyalty_engine.backtest import account_fates, judge, replay_nights, run_backtest
from loyalty_engine.config import BacktestSettings
from loyalty_engine.contract import TABLES
from loyalty_engine.rules.compiler import check_rule
from loyalty_engine.rules.loader import load_rules

END_DATE = date(2026, 11, 20)  # the sample's last night (a Friday), fixed so every machine gets the same files
ORDER_TABLES = {"accounts", "orders"}  # a rule that reads only these sees what BG/NBD sees
ALL_RULES = "all live rules"
ORDER_RULES = "live order-book rules"
CUT_OFF = 0.5  # a common P(alive) cut-off in practice, shown beside the matched thresholds
VARIANTS = {"once": "fitted once before the range", "monthly": "refitted each month"}
# lifetimes' L2 penalty on the parameters, tried in turn until the fit converges: an order book
# with hardly a dropout before the range pushes the dropout parameters to the boundary (a -> 0).
PENALIZERS = (0.0, 0.001, 0.01, 0.1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lifetimes = import_lifetimes()
    settings = BacktestSettings()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    if args.orders:
        case = args.work / f"orders-{args.orders.stem}"
        database, truth = case / "loyalty.duckdb", None
        rules_path = args.rules or RULES / "orders.yaml"
    else:
        case = args.work / f"sample-{args.accounts}-seed{args.seed}"
        database, truth = case / "loyalty.duckdb", case / "extracts" / "ground_truth.csv"
        rules_path = args.rules or RULES
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    con = store.connect(database)
    if args.orders:
        loaded = load_orders_csv(con, args.orders, args.data_end)
    else:
        loaded = load_sample(con, case / "extracts", args.accounts, args.seed, args.end_date)
    timings["load"] = time.perf_counter() - tick
    data_end = loaded["data_end"]
    first, last = backtest_range(con, settings, data_end, args.first, args.last)
    nights = replay_nights(first, last)
    say(f"range {first} .. {last} ({len(nights)} nights), data to {data_end}")

    ruleset = load_rules(rules_path)
    tick = time.perf_counter()
    backtest = run_backtest(con, ruleset, settings, first, last, progress=say)
    timings["rules backtest"] = time.perf_counter() - tick
    live = [r for r in ruleset.rules if r.enabled and r.mode == "live"]
    replayed = {r["rule_id"] for r in backtest.rules}
    order_rules = [r.id for r in live if r.id in replayed and check_rule(ruleset, r).tables <= ORDER_TABLES]
    only_order_rules = set(order_rules) == {r.id for r in live if r.id in replayed}  # e.g. with --orders
    rules_warned(con, backtest.flagged, order_rules)
    counts = dict(con.execute("SELECT group_id, count(*) FROM rule_warned GROUP BY ALL").fetchall())

    scored = []
    for variant in VARIANTS:
        tick = time.perf_counter()
        scored.append(score_baseline(con, lifetimes, variant, nights))
        timings[f"BG/NBD {VARIANTS[variant]}"] = time.perf_counter() - tick
    baselines = []
    for variant in VARIANTS:
        for group, matched in ((ALL_RULES, counts.get("*", 0)), (ORDER_RULES, counts.get(ORDER_RULES, 0))):
            if group == ORDER_RULES and not order_rules or group == ORDER_RULES and only_order_rules:
                continue
            baselines.append(baseline_warned(con, variant, matched, group))
        baselines.append(baseline_warned(con, variant, None, None, threshold=CUT_OFF))
    # Each order-book rule on its own against the refitted model (the one fitted once cannot
    # rank most accounts at all, see baseline_warned).
    for rule_id in order_rules:
        baselines.append(baseline_warned(con, "monthly", counts.get(rule_id, 0), rule_id))

    # One judge() call for every group, so the rules and the baseline are scored identically.
    con.execute(
        "CREATE OR REPLACE TEMP VIEW compared_warned AS SELECT * FROM rule_warned UNION ALL SELECT * FROM baseline_warned"
    )
    account_fates(con, settings.lost, data_end)
    judged = judge(con, "compared_warned", settings, first, last, data_end)
    check_same_scoring(judged.get("*"), backtest.total)
    timing = warning_timing(con, settings)
    truths = judge_truth(con, truth, settings, first, last) if truth else {}
    for group, figures in timing.items():
        judged.setdefault(group, {}).update(figures)
    timings["total"] = time.perf_counter() - started

    rows = result_rows(backtest, judged, truths, order_rules, baselines)
    record = {
        "arguments": {k: str(v) if isinstance(v, (Path, date)) else v for k, v in vars(args).items()},
        "machine": describe_machine(),
        "versions": {p: package_version(p) for p in ("lifetimes", "pandas", "scipy", "autograd", "numpy", "duckdb")},
        "data": {**loaded, "data_end": data_end.isoformat(), "first_night": first.isoformat(),
                 "last_night": last.isoformat(), "nights": len(nights), "rules": str(rules_path)},
        "settings": settings.model_dump(),
        "baseline_fits": scored,
        "baselines": baselines,
        "order_rules": order_rules,
        "rows": rows,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "peak_rss_mib": round(peak_rss() / 2**20),
    }
    (args.work / "signal-quality-results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print_report(record, bool(truth))
    con.close()
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""--orders FILE: a CSV file with a header line; the delimiter is detected (, ; tab |).
Columns (others are ignored):
  account_id   text, the customer; empty: the row is skipped
  order_date   a date, ISO (2026-03-01) or a timestamp (its date is taken); else the row is skipped
  amount       the order's value, a number with a decimal point (1234.56), >= 0; else skipped
One row per order; several orders of an account on one day count as one purchase day for BG/NBD
and as several orders for the rules. Rows dated after --data-end are ignored. The accounts are the
account ids found, all taken as active, without owners (so no emails per owner are counted).""",
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts in the sample (default 10,000)")
    parser.add_argument("--seed", type=int, default=7, help="sample seed (default 7)")
    parser.add_argument("--end-date", type=date.fromisoformat, default=END_DATE, help=f"the sample's last night (default {END_DATE})")
    parser.add_argument("--orders", type=Path, help="a purchase history to use instead of the sample (see below)")
    parser.add_argument("--data-end", type=date.fromisoformat, help="with --orders: the day the history ends (default: its latest order date)")
    parser.add_argument("--first", type=date.fromisoformat, help="first night of the range (default: 365 nights before --last)")
    parser.add_argument("--last", type=date.fromisoformat,
                        help="last night of the range (default: data end - max(no_order_days, horizon_days) - min_lead_days)")
    parser.add_argument("--rules", type=Path, help="rules folder or file (default rules/, with --orders rules/orders.yaml)")
    parser.add_argument("--work", type=Path, default=WORK / "signal-quality", help="work folder (git-ignored)")
    args = parser.parse_args(argv)
    if args.orders and not args.orders.is_file():
        parser.error(f"--orders {args.orders}: no such file")
    return args


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def import_lifetimes():
    try:
        with warnings.catch_warnings():
            # lifetimes 0.11.3 sets pandas' `mode.chained_assignment` on import, deprecated in pandas 3.
            warnings.simplefilter("ignore")
            import lifetimes
    except ImportError:
        sys.exit("lifetimes is not installed: run `make signal-quality`, or install the extra: "
                 ".venv/bin/uv pip install --python .venv/bin/python --override overrides.txt "
                 "--constraint requirements.lock -e '.[benchmark]'")
    return lifetimes


# -- data ---------------------------------------------------------------------------------------


def load_sample(con: duckdb.DuckDBPyConnection, out: Path, accounts: int, seed: int, end_date: date) -> dict:
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.sample.generator import generate_sample
    from loyalty_engine.extracts.validate import validate_night

    say(f"generating the sample: {accounts:,} accounts, seed {seed}, last night {end_date}")
    sample = generate_sample(out, accounts=accounts, seed=seed, end_date=end_date, nights=1)
    say(f"loading {sample.folder}")
    con.execute("BEGIN")
    staged = stage_extracts(con, sample.folder, sample.end_date)
    checks = validate_night(con, staged, sample.end_date)
    con.execute("COMMIT")
    quarantined = {c.table: c.rows_quarantined for c in checks if c.rows_quarantined}
    if quarantined:
        say(f"quarantined rows: {quarantined}")
    return {"source": "sample", "data_end": sample.end_date, "rows": sample.rows, "drifting": sample.drifting,
            "drifting_lost_by_end": sample.lost, "patterns": sample.patterns, "quarantined": quarantined}


def load_orders_csv(con: duckdb.DuckDBPyConnection, path: Path, data_end: date | None) -> dict:
    """The CSV's orders as the clean `orders` table, its account ids as `accounts`."""
    say(f"loading {path}")
    try:
        con.execute("""CREATE TEMP TABLE raw_orders AS SELECT * FROM read_csv(?, header = true, all_varchar = true, quote = '"')""", [str(path)])
    except duckdb.Error as error:
        sys.exit(f"{path}: cannot be read as CSV: {str(error).splitlines()[0]}")
    names = {c.lower(): c for c in con.sql("SELECT * FROM raw_orders LIMIT 0").columns}
    missing = [c for c in ("account_id", "order_date", "amount") if c not in names]
    if missing:
        sys.exit(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(names.values())})")
    con.execute(
        f"""CREATE TEMP TABLE typed_orders AS SELECT
                nullif(trim("{names['account_id']}"), '') AS account_id,
                coalesce(try_cast(trim("{names['order_date']}") AS DATE),
                         try_cast(trim("{names['order_date']}") AS TIMESTAMP)::DATE) AS order_date,
                try_cast(trim("{names['amount']}") AS DOUBLE) AS amount
            FROM raw_orders"""
    )
    end = data_end or con.execute("SELECT max(order_date) FROM typed_orders").fetchone()[0]
    if end is None:
        sys.exit(f"{path}: no row with a readable order_date")
    bad, late = con.execute(
        """SELECT count(*) FILTER (WHERE account_id IS NULL OR order_date IS NULL OR amount IS NULL OR amount < 0),
                  count(*) FILTER (WHERE order_date > ?) FROM typed_orders""",
        [end],
    ).fetchone()
    for table in TABLES.values():
        con.execute(table.create_sql())
    con.execute(
        """INSERT INTO orders BY NAME
           SELECT (row_number() OVER ())::VARCHAR AS order_id, account_id, order_date, amount, 'EUR' AS currency
           FROM typed_orders
           WHERE account_id IS NOT NULL AND order_date IS NOT NULL AND amount >= 0 AND order_date <= ?""",
        [end],
    )
    con.execute(
        """INSERT INTO accounts BY NAME
           SELECT account_id, account_id AS name, 'active' AS status, min(order_date) AS customer_since
           FROM orders GROUP BY account_id"""
    )
    rows = dict(con.execute("SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'accounts', count(*) FROM accounts").fetchall())
    # Only accounts and orders count as loaded: the rules that need another table are skipped.
    for name in ("accounts", "orders"):
        con.execute("INSERT INTO loads VALUES (?, ?, ?, ?, 0, now()::TIMESTAMP)", [end, name, str(path), rows[name]])
    con.execute("DROP TABLE raw_orders; DROP TABLE typed_orders")
    if bad or late:
        say(f"skipped {bad:,} rows without an account, a readable date or an amount >= 0, and {late:,} dated after {end}")
    return {"source": str(path), "data_end": end, "rows": rows, "skipped_bad": bad, "skipped_after_end": late}


def backtest_range(con, settings: BacktestSettings, data_end: date, first: date | None, last: date | None) -> tuple[date, date]:
    """Outcomes must be known: a loss shows after no_order_days of silence, a warning's outcome
    after horizon_days, and recall counts losses up to last + min_lead_days."""
    wait = max(settings.lost.no_order_days, settings.horizon_days) + settings.min_lead_days
    last = last or data_end - timedelta(days=wait)
    first = first or last - timedelta(days=364)
    if first > last:
        sys.exit(f"the range is empty: first night {first} after last night {last}")
    if last > data_end - timedelta(days=wait):
        say(f"warning: the range ends less than {wait} days before the data ({data_end}): some outcomes are not known yet")
    earliest = con.execute("SELECT min(order_date) FROM orders").fetchone()[0]
    if earliest is None or earliest >= first:
        sys.exit(f"no order before the first night {first}: nothing to fit the baseline on")
    if (first - earliest).days < 365:
        say(f"warning: only {(first - earliest).days} days of history before the range ({earliest} ..): "
            "the rules' baselines (up to 2 years) and the model see little")
    return first, last


# -- the rules' warnings ------------------------------------------------------------------------


def rules_warned(con: duckdb.DuckDBPyConnection, flagged: list[dict], order_rules: list[str]) -> None:
    """TEMP TABLE rule_warned (group_id, account_id, first_warned): the first night each rule,
    all live rules ('*') and the live order-book rules together warned each account."""
    table = pa.table({
        "group_id": pa.array([f["group_id"] for f in flagged], pa.string()),
        "account_id": pa.array([f["account_id"] for f in flagged], pa.string()),
        "first_warned": pa.array([f["first_warned"] for f in flagged], pa.date32()),
    })
    con.register("flagged_arrow", table)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE rule_warned AS
           SELECT group_id, account_id, first_warned FROM flagged_arrow
           UNION ALL
           SELECT $group, account_id, min(first_warned) FROM flagged_arrow
           WHERE list_contains($order_rules, group_id) GROUP BY account_id""",
        {"group": ORDER_RULES, "order_rules": order_rules},
    )
    con.unregister("flagged_arrow")


# -- the BG/NBD baseline ------------------------------------------------------------------------

ORDER_DAYS = """
CREATE OR REPLACE TEMP TABLE order_days AS
SELECT account_id, day, row_number() OVER (PARTITION BY account_id ORDER BY day) AS purchases,
       min(day) OVER (PARTITION BY account_id) AS first_day
FROM (SELECT DISTINCT account_id, order_date AS day FROM orders WHERE order_date <= $until)
"""


def fit_bgnbd(con: duckdb.DuckDBPyConnection, lifetimes, as_of: date) -> dict:
    """Fit BG/NBD by maximum likelihood on every account's RFM summary as of `as_of` (in days),
    from TEMP TABLE order_days. Accounts with the same (x, t_x, T) are one row with a weight:
    the same likelihood, fewer rows."""
    summary = con.execute(
        """SELECT x, t_x, big_t, count(*) AS weight FROM (
               SELECT account_id, max(purchases) - 1 AS x, max(day) - min(day) AS t_x, $as_of::DATE - min(day) AS big_t
               FROM order_days WHERE day <= $as_of GROUP BY account_id)
           GROUP BY ALL ORDER BY ALL""",  # a fixed order: the optimizer's path, even whether it converges, depends on it
        {"as_of": as_of},
    ).fetchnumpy()
    accounts = int(summary["weight"].sum())
    failed = []
    for penalizer in PENALIZERS:
        model = lifetimes.BetaGeoFitter(penalizer_coef=penalizer)
        try:
            # lifetimes prints scipy's whole result to stdout when the fit does not converge.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as printed:
                warnings.simplefilter("ignore", RuntimeWarning)
                model.fit(summary["x"], summary["t_x"], summary["big_t"], weights=summary["weight"])
            break
        except lifetimes.utils.ConvergenceError:
            reason = next((line.split(":", 1)[1].strip() for line in printed.getvalue().splitlines() if "message:" in line), "")
            failed.append({"penalizer_coef": penalizer, "message": reason})
    else:
        sys.exit(f"BG/NBD as of {as_of} did not converge with any penalizer_coef in {PENALIZERS}")
    params = {k: float(f"{float(v):.6g}") for k, v in model.params_.items()}
    say(f"BG/NBD as of {as_of}: {accounts:,} accounts ({len(summary['x']):,} distinct summaries), "
        f"penalizer_coef {penalizer}{' (0 did not converge)' if failed else ''}: {params}")
    return {"model": model, "as_of": as_of.isoformat(), "accounts": accounts, "rows": len(summary["x"]), "params": params,
            "penalizer_coef": penalizer, "not_converged": failed,
            "mean_repeat_purchase_days": round(float((summary["x"] * summary["weight"]).sum() / accounts), 2)}


def score_baseline(con: duckdb.DuckDBPyConnection, lifetimes, variant: str, nights: list[date]) -> dict:
    """Fit, then add to TEMP TABLE bgnbd_nights (variant, night, account_id, p_alive) every
    night's P(alive) for every account with an order by then.

    - once: one fit on the history up to the night before the range;
    - monthly: a fit on the history up to the night before each month's first night.

    The RFM summary per (account, night) is one ASOF join of the nights onto the account's
    numbered order days, a month of nights at a time; P(alive) is lifetimes' formula evaluated
    on the month's arrays."""
    con.execute(ORDER_DAYS, {"until": nights[-1]})
    con.execute("CREATE TEMP TABLE IF NOT EXISTS bgnbd_nights (variant VARCHAR, night DATE, account_id VARCHAR, p_alive DOUBLE)")
    months: dict[tuple[int, int], list[date]] = {}
    for night in nights:
        months.setdefault((night.year, night.month), []).append(night)
    fits, rows, fit_seconds, score_seconds = [], 0, 0.0, 0.0
    for month in months.values():
        if not fits or variant == "monthly":
            tick = time.perf_counter()
            fits.append(fit_bgnbd(con, lifetimes, month[0] - timedelta(days=1)))
            fit_seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        con.register("month_nights", pa.table({"night": pa.array(month, pa.date32())}))
        part = con.sql(
            """SELECT n.night, d.account_id, d.purchases - 1 AS x, d.day - d.first_day AS t_x, n.night - d.first_day AS big_t
               FROM (SELECT m.night, a.account_id FROM month_nights m, (SELECT DISTINCT account_id FROM order_days) a) n
               ASOF JOIN order_days d ON d.account_id = n.account_id AND n.night >= d.day"""
        ).to_arrow_table()
        con.unregister("month_nights")
        x, t_x, big_t = (part.column(c).to_numpy() for c in ("x", "t_x", "big_t"))
        p_alive = fits[-1]["model"].conditional_probability_alive(x, t_x, big_t)
        scored = pa.table({"night": part.column("night"), "account_id": part.column("account_id"), "p_alive": pa.array(p_alive)})
        con.register("scored_month", scored)
        con.execute("INSERT INTO bgnbd_nights SELECT ?, * FROM scored_month", [variant])
        con.unregister("scored_month")
        rows += part.num_rows
        score_seconds += time.perf_counter() - tick
    say(f"BG/NBD fitted {variant}: P(alive) for {rows:,} account-nights")
    return {"variant": variant, "account_nights": rows, "fit_s": round(fit_seconds, 2), "score_s": round(score_seconds, 2),
            "fits": [{k: v for k, v in f.items() if k != "model"} for f in fits]}


def baseline_warned(con: duckdb.DuckDBPyConnection, variant: str, matched: int | None, group: str | None,
                    threshold: float | None = None) -> dict:
    """Warn the `matched` accounts whose P(alive) fell lowest over the range, each on the first
    night it fell below the threshold: the midpoint between the matched-th lowest minimum and
    the next one. Where P(alive) ties (at 1.0 in double precision, for a model that sees hardly
    any dropout) the count cannot be met exactly: the accounts warned are reported.
    With `threshold` instead, warn below that one (a conventional cut-off, not matched)."""
    con.execute("CREATE TEMP TABLE IF NOT EXISTS baseline_warned (group_id VARCHAR, account_id VARCHAR, first_warned DATE)")
    below, above, under_one = con.execute(
        """SELECT max(lowest) FILTER (WHERE rank <= $k), min(lowest) FILTER (WHERE rank > $k), count(*) FILTER (WHERE lowest < 1)
           FROM (SELECT lowest, row_number() OVER (ORDER BY lowest) AS rank
                 FROM (SELECT min(p_alive) AS lowest FROM bgnbd_nights WHERE variant = $variant GROUP BY account_id))""",
        {"k": matched or 0, "variant": variant},
    ).fetchone()
    if threshold is not None:
        pass
    elif below is None:  # nothing to match
        threshold = 0.0
    elif above is None:
        threshold = below + 1e-12
    else:
        threshold = (below + above) / 2
    shown = f"1 - {1 - threshold:.2g}" if 0.999 < threshold < 1 else f"{threshold:.4g}"
    name = f"BG/NBD {VARIANTS[variant]}, P(alive) < {shown}" + ("" if group else " (not matched)")
    label = f"bgnbd {variant} " + (f"matched to {group}" if group else f"below {threshold}")
    con.execute(
        """INSERT INTO baseline_warned
           SELECT $label, account_id, min(night) FROM bgnbd_nights WHERE variant = $variant AND p_alive < $threshold GROUP BY account_id""",
        {"label": label, "variant": variant, "threshold": threshold},
    )
    warned = con.execute("SELECT count(*) FROM baseline_warned WHERE group_id = ?", [label]).fetchone()[0]
    target = f"matched to {group} ({matched:,} accounts)" if group else "fixed"
    say(f"baseline ({VARIANTS[variant]}) {target}: threshold {threshold:.6g}, {warned:,} warned")
    return {"group_id": label, "name": name, "variant": variant, "matched": group, "threshold": threshold, "target": matched,
            "accounts_warned": warned, "accounts_ever_below_1": under_one}


# -- scoring ------------------------------------------------------------------------------------


def check_same_scoring(mine: dict | None, total: dict) -> None:
    """judge() on the replay's first warnings must give the backtest's own total figures."""
    if mine is None:
        return
    for name in ("accounts_flagged", "precision", "recall", "median_lead_days"):
        a, b = mine.get(name), total.get(name)
        if a is None or b is None:
            same = a is b
        else:
            same = abs(float(a) - float(b)) < 1e-3
        if not same:
            say(f"warning: judge() gives {name} {a} for all live rules, run_backtest {b}")


def warning_timing(con: duckdb.DuckDBPyConnection, settings: BacktestSettings) -> dict:
    """Beside judge(): of the warned accounts that were lost within horizon_days after the first
    warning (judge's hits), how many were lost before it (the warning came too late: judge
    counts it as right, with a negative lead) and how many at least min_lead_days after it."""
    rows = con.execute(
        """SELECT w.group_id,
               count(*) FILTER (WHERE f.lost_on < w.first_warned) AS lost_before_warning,
               count(*) FILTER (WHERE f.lost_on >= w.first_warned + $lead AND f.lost_on <= w.first_warned + $horizon) AS lost_in_time
           FROM compared_warned w JOIN account_fates f USING (account_id)
           WHERE f.lost_on IS NOT NULL GROUP BY w.group_id""",
        {"lead": settings.min_lead_days, "horizon": settings.horizon_days},
    ).fetchall()
    return {group: {"lost_before_warning": before, "lost_in_time": in_time} for group, before, in_time in rows}


def judge_truth(con: duckdb.DuckDBPyConnection, truth: Path, settings: BacktestSettings, first: date, last: date) -> dict:
    """Against the sample's ground truth: accounts built to drift away and the day from which they
    order nothing (`lost_on`). Drifting accounts lost in the same window as judge()'s recall count."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE truth AS
           SELECT account_id, pattern, drift_started_on::DATE AS drift_started_on, lost_on::DATE AS lost_on
           FROM read_csv(?, header = true, all_varchar = true)""",
        [str(truth)],
    )
    rows = con.execute(
        """
        WITH window_lost AS (
            SELECT * FROM truth WHERE pattern = 'drifting'
              AND lost_on >= $first::DATE + $lead AND lost_on <= $last::DATE + $lead
        ),
        groups AS (SELECT DISTINCT group_id FROM compared_warned)
        SELECT g.group_id,
            (SELECT count(*) FROM compared_warned w JOIN truth t USING (account_id)
             WHERE w.group_id = g.group_id AND t.pattern = 'drifting') AS warned_drifting,
            (SELECT count(*) FROM compared_warned w JOIN truth t USING (account_id)
             WHERE w.group_id = g.group_id AND t.pattern = 'stable') AS warned_stable,
            (SELECT count(*) FROM truth WHERE pattern = 'stable') AS stable,
            (SELECT count(*) FROM window_lost) AS drifting_lost_in_window,
            (SELECT count(*) FROM compared_warned w JOIN window_lost t USING (account_id) WHERE w.group_id = g.group_id) AS warned_in_window,
            (SELECT count(*) FROM compared_warned w JOIN window_lost t USING (account_id)
             WHERE w.group_id = g.group_id AND w.first_warned <= t.lost_on - $lead) AS caught_in_time,
            (SELECT median(t.lost_on - w.first_warned) FROM compared_warned w JOIN window_lost t USING (account_id)
             WHERE w.group_id = g.group_id) AS median_lead_before_lost_on,
            (SELECT median(w.first_warned - t.drift_started_on) FROM compared_warned w JOIN window_lost t USING (account_id)
             WHERE w.group_id = g.group_id) AS median_days_after_drift_start
        FROM groups g
        """,
        {"first": first, "last": last, "lead": settings.min_lead_days},
    ).fetchall()
    return {
        group: {
            "warned_drifting": warned_drifting,
            "warned_stable": warned_stable,
            "stable": stable,
            "drifting_lost_in_window": lost,
            "warned_in_window": warned,
            "caught_in_time": caught,
            "truth_recall": round(caught / lost, 4) if lost else None,
            "median_lead_before_lost_on": float(lead) if lead is not None else None,
            "median_days_after_drift_start": float(after) if after is not None else None,
        }
        for group, warned_drifting, warned_stable, stable, lost, warned, caught, lead, after in rows
    }


def result_rows(backtest, judged: dict, truths: dict, order_rules: list[str], baselines: list[dict]) -> list[dict]:
    def row(name: str, group: str, kind: str) -> dict:
        figures = judged.get(group, {})
        precision, recall = figures.get("precision"), figures.get("recall")
        return {
            "name": name,
            "group_id": group,
            "kind": kind,
            "accounts_warned": figures.get("accounts_flagged", 0),
            "outcome_known": figures.get("outcome_known", 0),
            "lost_after_warning": figures.get("lost_after_warning", 0),
            "precision": round(precision, 4) if precision is not None else None,
            "lost_in_range": figures.get("lost_in_range"),
            "caught": figures.get("caught", 0),
            "recall": round(recall, 4) if recall is not None else None,
            "median_lead_days": figures.get("median_lead_days"),
            "lost_before_warning": figures.get("lost_before_warning", 0),
            "lost_in_time": figures.get("lost_in_time", 0),
            **truths.get(group, {}),
        }

    rows = []
    for group, name in (("*", ALL_RULES), (ORDER_RULES, f"{ORDER_RULES} ({len(order_rules)})")):
        if group == ORDER_RULES and not any(b["matched"] == ORDER_RULES for b in baselines):
            continue
        rows.append(row(name, group, "rules"))
        matched = ALL_RULES if group == "*" else ORDER_RULES
        rows += [row("  " + b["name"], b["group_id"], "baseline") for b in baselines if b["matched"] == matched]
    rows += [row(b["name"], b["group_id"], "baseline") for b in baselines if b["matched"] is None]
    for r in backtest.rules:
        rows.append(row(f"  {r['rule_id']}" + ("" if r["mode"] == "live" else f" ({r['mode']})"), r["rule_id"], "rule"))
        rows += [row("    " + b["name"], b["group_id"], "baseline") for b in baselines if b["matched"] == r["rule_id"]]
    return rows


def print_report(record: dict, with_truth: bool) -> None:
    data = record["data"]
    print(f"\nRange {data['first_night']} .. {data['last_night']} ({data['nights']} nights), data to {data['data_end']}")
    for scored in record["baseline_fits"]:
        fits = scored["fits"]
        print(f"BG/NBD {VARIANTS[scored['variant']]}: {len(fits)} fit(s), first as of {fits[0]['as_of']} on {fits[0]['accounts']:,} accounts "
              f"{fits[0]['params']} (penalizer_coef {fits[0]['penalizer_coef']}), last as of {fits[-1]['as_of']} {fits[-1]['params']}")
    for b in (b for b in record["baselines"] if b["matched"]):
        print(f"  {VARIANTS[b['variant']]}, matched to {b['matched']}: {b['target']:,} accounts -> threshold {b['threshold']:.6g}, {b['accounts_warned']:,} warned "
              f"({b['accounts_ever_below_1']:,} accounts ever had P(alive) < 1)")
    print()

    def show(value, digits: int = 1, share: bool = False) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.{digits}f} %" if share else (f"{value:,.0f}" if isinstance(value, (int, float)) else str(value))

    header = ["", "warned", "precision", "of which in time / too late", "recall", "median lead"]
    if with_truth:
        header += ["stable warned", "drifting warned", "caught in time", "median lead before lost_on", "after drift start"]
    lines = [header]
    for r in record["rows"]:
        line = [r["name"], show(r["accounts_warned"]),
                f"{show(r['precision'], share=True)} ({r['lost_after_warning']}/{r['outcome_known']})",
                f"{r['lost_in_time']} / {r['lost_before_warning']}",
                f"{show(r['recall'], share=True)} ({r['caught']}/{r['lost_in_range']})",
                show(r["median_lead_days"])]
        if with_truth:
            line += [f"{show(r.get('warned_stable'))}/{show(r.get('stable'))}", show(r.get("warned_drifting")), f"{show(r.get('caught_in_time'))}/{show(r.get('drifting_lost_in_window'))}",
                     show(r.get("median_lead_before_lost_on")), show(r.get("median_days_after_drift_start"))]
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
    print("\n" + ", ".join(f"{k} {v} s" for k, v in record["timings_s"].items()) + f"; peak RSS {record['peak_rss_mib']} MiB")


if __name__ == "__main__":
    sys.exit(main())
