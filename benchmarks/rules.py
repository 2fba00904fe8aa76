"""Benchmark the rule query: its cost per rule and per night.

    .venv/bin/python benchmarks/rules.py                        # 10,000 accounts, 5 timed runs each
    .venv/bin/python benchmarks/rules.py --accounts 50000 --repeat 3
    .venv/bin/python benchmarks/rules.py --nights 1 7 30 --limit 300

The rules compile to one SQL query whose metrics come from one grouped scan per table, so the
cost of a night should grow with the data, not with the data times the number of rules; and a
set of nights (a backtest) should cost less in one query than one query per night. This script
measures both:

1. writes a sample with `loyalty_engine.sample.generator.generate_sample` (seed 7, last night 2026-11-23)
   and loads that night into a DuckDB file as the nightly job does (`stage_extracts`, then
   `validate_night` on the same connection);
2. rule subsets, each in a fresh process: times `evaluate_rules` (compile, query, store what
   held), and apart from it `compile_rules` alone and the compiled query alone (materialised
   into a TEMP table, as evaluate_rules does). Subsets: the first 1, 3 (the orders rules), 10
   and all 13 shipped rules, taken in the order falling_order_frequency, the other orders
   rules, then the rest in load order; and each of the 13 rules in a query of its own, summed,
   to show what sharing the scans saves. Every case evaluates the nights evaluate_rules asks
   compile_rules for (read from its call, not copied from its code): the night itself since
   the lifecycle counts `for: N nights`, the N nights up to it before;
3. sets of nights (by default 1, 7, 30 and 365 consecutive days ending on the night), each in
   a fresh process: the query of all 13 rules over the set, against the one-night query's
   time x N;
4. counts the table scans in each query's plan (`EXPLAIN`): each table once, whatever the number
   of rules or nights.

Each timing is the median of --repeat runs after one warm-up run. A case whose warm-up took
longer than --slow seconds is not repeated (its single run is reported), and one still running
after --limit seconds is stopped and reported as such, with its peak RSS so far. DuckDB may spill
at most 30 GB to disk (common.SPILL_LIMIT), so that a large night set fails rather than fill the disk.
Peak RSS is each process's own (resource.getrusage, or /proc's VmHWM for a stopped case; see
common.py for why every case runs in a spawned process). The tables are printed and the
figures go to <work>/rules-results.json (one record per --accounts value).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from common import RULES, WORK, connect, describe_machine, in_child, machine_line, mib, peak_rss

NIGHT = date(2026, 11, 23)  # fixed, so the same arguments give the same sample everywhere
FIRST_RULE = "falling_order_frequency"  # the 1-rule subset: two counts over the largest table
ORDERS_RULES = 3  # the subset "3" is the orders rules only: more rules on the same table
SUBSETS = (1, ORDERS_RULES, 10, None)  # None: every shipped rule
SCAN = re.compile(r"Table: \w+\.\w+\.(\w+)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    case = args.work / f"rules-{args.accounts}"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    database = case / "loyalty.duckdb"
    machine = describe_machine()
    print(f"loyalty-engine rules benchmark: {args.accounts:,} accounts, night {NIGHT}, median of {args.repeat} runs")
    print(f"machine: {machine_line(machine, ('duckdb', 'sqlglot'))}; commit {machine['commit']}\n")

    loaded = in_child(prepare, case / "extracts", database, args.accounts)
    if "error" in loaded:  # nothing to measure without the sample
        raise SystemExit(f"prepare failed: {loaded['error']}")
    print(f"sample: {', '.join(f'{n:,} {t}' for t, n in loaded['rows'].items())}")
    print(f"        generated in {loaded['generate_seconds']:.1f} s, loaded in {loaded['load_seconds']:.1f} s (not timed below)\n")

    # The labels are the children's; a stopped or failed case keeps this one.
    subsets = [{"case": f"{size or 'all'} rules"} | in_child(time_subset, database, size, args.repeat, args.slow, limit=args.limit)
               for size in SUBSETS]
    subsets.append({"case": "one query per rule"} | in_child(time_one_query_per_rule, database, args.repeat, args.slow, limit=args.limit))
    print_subsets(subsets)
    nights = [{"nights": count} | in_child(time_nights, database, count, args.repeat, args.slow, limit=args.limit) for count in args.nights]
    print_nights(nights)

    record = {
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arguments": {"accounts": args.accounts, "repeat": args.repeat, "nights": args.nights, "slow": args.slow, "limit": args.limit},
        "machine": machine,
        "sample": loaded,
        "subsets": subsets,
        "nights": nights,
    }
    results = save(args.work / "rules-results.json", record)
    loads = [c["load_before"] for c in subsets + nights]
    print(f"\nload average (1 min) before each case: {min(loads):.2f}-{max(loads):.2f} on {machine['cores']} cores")
    print(f"figures written to {results}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the rule query against the number of rules and the number of nights evaluated at once.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts in the sample")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (after one warm-up); the median is shown")
    parser.add_argument("--work", type=Path, default=WORK, help="folder for the sample, the database and the figures (git-ignored)")
    parser.add_argument("--nights", type=int, nargs="+", default=[1, 7, 30, 365], help="sizes of the night sets evaluated in one query")
    parser.add_argument("--slow", type=float, default=30.0, help="a case whose warm-up takes longer (seconds) is not repeated")
    parser.add_argument("--limit", type=float, default=600.0, help="stop a case still running after this many seconds")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.repeat < 1 or min(args.nights) < 1:
        parser.error("--accounts, --repeat and --nights must be at least 1")
    args.work = args.work.resolve()
    return args


# --- in fresh processes ---------------------------------------------------------------------------


def prepare(extracts: Path, database: Path, accounts: int) -> dict:
    """The sample, loaded into the database the way the nightly job loads a night."""
    from loyalty_engine import store
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.sample.generator import generate_sample
    from loyalty_engine.extracts.validate import validate_night

    started = time.perf_counter()
    summary = generate_sample(extracts, accounts=accounts, seed=7, end_date=NIGHT)
    generated = time.perf_counter()
    with store.connect(database) as con:
        checks = validate_night(con, stage_extracts(con, extracts, NIGHT), NIGHT)
    quarantined = sum(c.rows_quarantined for c in checks)
    if quarantined:  # the figures are about rules on a clean night
        raise RuntimeError(f"{quarantined} rows quarantined while loading the sample")
    return {"rows": summary.rows, "generate_seconds": generated - started, "load_seconds": time.perf_counter() - generated}


def shipped_rules(size: int | None = None):
    """The first `size` shipped rules: FIRST_RULE, the other rules that read orders only, then the
    rest in load order (a stable sort). All metrics stay defined; compile_rules compiles only the
    ones the chosen rules use, so the others cost nothing."""
    from loyalty_engine.rules.compiler import check_rule
    from loyalty_engine.rules.loader import RuleSet, load_rules

    ruleset = load_rules(RULES)
    ordered = sorted(ruleset.rules, key=lambda r: (r.id != FIRST_RULE, check_rule(ruleset, r).tables != {"orders"}))
    return RuleSet(ruleset.metrics, ordered[:size])


def evaluated_nights(con, ruleset) -> list[date]:
    """The nights evaluate_rules compiles the rules for, read from its own call to compile_rules
    rather than copied from its code (which changed: it used to add the nights a `for:` needed)."""
    from loyalty_engine.rules import evaluate

    asked = []
    original = evaluate.compile_rules

    def spy(rules, nights, *args, **kwargs):
        asked.append([nights] if isinstance(nights, date) else list(nights))
        return original(rules, nights, *args, **kwargs)

    evaluate.compile_rules = spy
    try:
        evaluate.evaluate_rules(con, ruleset, NIGHT, absent=set())
    finally:
        evaluate.compile_rules = original
    return asked[0]


def time_subset(database: Path, size: int | None, repeat: int, slow: float) -> dict:
    """evaluate_rules on a subset of the rules, and its compile and query parts apart."""
    from loyalty_engine.rules.compiler import compile_rules
    from loyalty_engine.rules.evaluate import evaluate_rules

    ruleset = shipped_rules(size)
    with connect(database) as con:
        nights = evaluated_nights(con, ruleset)
        compiled = compile_rules(ruleset, nights)
        figures = {
            "case": f"{len(ruleset.rules)} rule{'s' * (len(ruleset.rules) > 1)}" + (" (orders only)" if size == ORDERS_RULES else ""),
            "rules": [r.id for r in ruleset.rules],
            "nights_evaluated": len(nights),
            "metrics": len(compiled.metrics),
            "scans": table_scans(con, compiled.sql),
            "evaluate": timed(lambda: evaluate_rules(con, ruleset, NIGHT, absent=set()), repeat, slow)[0],
            "compile": timed(lambda: compile_rules(ruleset, nights), repeat, slow)[0],
            "query": timed(lambda: materialise(con, compiled.sql), repeat, slow)[0],
        }
    return figures | {"peak_rss": peak_rss()}


def time_one_query_per_rule(database: Path, repeat: int, slow: float) -> dict:
    """Every shipped rule in a query of its own: what each rule costs alone, and the sum, which
    is the cost if each rule scanned the data itself."""
    from loyalty_engine.rules.compiler import compile_rules
    from loyalty_engine.rules.loader import RuleSet

    ruleset = shipped_rules()
    singles = {rule.id: RuleSet(ruleset.metrics, [rule]) for rule in ruleset.rules}
    with connect(database) as con:
        # The nights of the query with every rule, so that both compare like for like.
        nights = evaluated_nights(con, ruleset)
        queries = {rule_id: compile_rules(single, nights).sql for rule_id, single in singles.items()}
        per_rule = {rule_id: timed(lambda sql=sql: materialise(con, sql), repeat, slow)[0] for rule_id, sql in queries.items()}
        figures = {
            "case": f"{len(singles)} rules, one query each",
            "rules": list(singles),
            "nights_evaluated": len(nights),
            "scans": dict(sorted(sum((Counter(table_scans(con, sql)) for sql in queries.values()), Counter()).items())),
            "compile": timed(lambda: [compile_rules(single, nights) for single in singles.values()], repeat, slow)[0],
            "query": {key: sum(t[key] for t in per_rule.values()) for key in ("seconds", "min", "max")}
            | {"runs": min(t["runs"] for t in per_rule.values())},
            "per_rule": per_rule,
        }
    return figures | {"peak_rss": peak_rss()}


def time_nights(database: Path, count: int, repeat: int, slow: float) -> dict:
    """All shipped rules over `count` consecutive nights ending on NIGHT, in one query."""
    from loyalty_engine.rules.compiler import compile_rules

    ruleset = shipped_rules()
    nights = [NIGHT - timedelta(days=back) for back in range(count)]
    with connect(database) as con:
        compiled = compile_rules(ruleset, nights)
        query, rows = timed(lambda: materialise(con, compiled.sql), repeat, slow)
        figures = {
            "scans": table_scans(con, compiled.sql),
            "compile": timed(lambda: compile_rules(ruleset, nights), repeat, slow)[0],
            "query": query,
            "rows": rows,
        }
    return figures | {"peak_rss": peak_rss()}


def materialise(con, sql: str) -> int:
    """Run the query into a TEMP table, as evaluate_rules does; the number of result rows."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE benchmark_outcomes AS {sql}")
    rows = con.execute("SELECT count(*) FROM benchmark_outcomes").fetchone()[0]
    con.execute("DROP TABLE benchmark_outcomes")
    return rows


def table_scans(con, sql: str) -> dict[str, int]:
    """How often the query's plan reads each table."""
    plan = con.execute("EXPLAIN " + sql).fetchall()[0][1]
    return dict(sorted(Counter(SCAN.findall(plan)).items()))


def timed(function, repeat: int, slow: float) -> tuple[dict, object]:
    """Median, min and max seconds of `repeat` runs after a warm-up (a slow warm-up is the only
    run), and the last run's result."""
    started = time.perf_counter()
    result = function()
    seconds = [time.perf_counter() - started]
    if seconds[0] <= slow:
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            result = function()
            seconds.append(time.perf_counter() - started)
    return {"seconds": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "runs": len(seconds)}, result


# --- helpers --------------------------------------------------------------------------------------


def save(path: Path, record: dict) -> Path:
    """Keep one record per number of accounts: a 50k run does not overwrite the 10k figures."""
    records = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    records = [r for r in records if r["arguments"]["accounts"] != record["arguments"]["accounts"]] + [record]
    path.write_text(json.dumps(sorted(records, key=lambda r: r["arguments"]["accounts"]), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def seconds(timing: dict) -> str:
    runs = f" ({timing['min']:.3f}-{timing['max']:.3f})" if timing["runs"] > 1 else " (1 run)"
    return f"{timing['seconds']:.3f}{runs}"


def scans(figures: dict) -> str:
    return " ".join(f"{table}:{n}" for table, n in figures["scans"].items())


# --- reporting ------------------------------------------------------------------------------------


def print_subsets(subsets: list[dict]) -> None:
    print("cost per rule: seconds, median (min-max); 'query' is the compiled SQL alone, 'evaluate' is all of evaluate_rules")
    print(f"{'case':<26} {'nights':>6} {'metrics':>7} {'compile':>21} {'query':>21} {'evaluate':>21} {'peak RSS':>9}  table scans")
    for s in subsets:
        if "error" in s:
            print(f"{s['case']:<26} {failure(s)}")
            continue
        print(f"{s['case']:<26} {s['nights_evaluated']:>6} {s.get('metrics', ''):>7} {seconds(s['compile']):>21} "
              f"{seconds(s['query']):>21} {seconds(s['evaluate']) if 'evaluate' in s else '':>21} {mib(s['peak_rss']):>9}  {scans(s)}")
        for rule, timing in s.get("per_rule", {}).items():
            print(f"{'  ' + rule:<26} {'':>6} {'':>7} {'':>21} {seconds(timing):>21}")


def print_nights(nights: list[dict]) -> None:
    one = next((n for n in nights if n["nights"] == 1 and "error" not in n), None)
    print("\ncost per night: every rule over N nights in one query, against the 1-night query x N")
    print(f"{'nights':>6} {'rows':>10} {'compile':>21} {'query':>21} {'per night':>9} {'1 night x N':>11} {'peak RSS':>9}  table scans")
    for n in nights:
        times_n = f"{one['query']['seconds'] * n['nights']:.2f}" if one else "?"
        if "error" in n:
            print(f"{n['nights']:>6} {failure(n)}; 1 night x N: {times_n} s")
            continue
        print(f"{n['nights']:>6} {n['rows']:>10,} {seconds(n['compile']):>21} {seconds(n['query']):>21} "
              f"{n['query']['seconds'] / n['nights']:>9.3f} {times_n:>11} {mib(n['peak_rss']):>9}  {scans(n)}")


def failure(case: dict) -> str:
    memory = f", peak RSS {mib(case['peak_rss'])}" if case.get("peak_rss") else ""
    return f"{case['error'].splitlines()[0]} (after {case['seconds']:.0f} s{memory})"


if __name__ == "__main__":
    sys.exit(main())
