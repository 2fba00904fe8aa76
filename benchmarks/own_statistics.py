"""What each metric costs over a year of nights, as a multiple of a bare scan measured in the same run.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/own_statistics.py                 # 3,000 accounts, 365 nights, rules/
    PYTHONPATH=$PWD .venv/bin/python benchmarks/own_statistics.py --keep --only orders_unusual --profile
    PYTHONPATH=$PWD .venv/bin/python benchmarks/own_statistics.py --keep --catalogues rules --whole

The backtest, `loyalty tune` and benchmarks/signal_quality.py evaluate a year of nights in one
query (the compiler's streamed form, more than JOINED_NIGHTS nights), as `backtest._signals`
does: `compile_rules(ruleset, nights, replay=True, fired=False)`. This script times that query
for ONE metric at a time (a rule `when: <metric> is not null` reading nothing else), for every
metric of the given catalogues, and with `--whole` for each whole catalogue.

The machine is shared and its load moves, so no figure is a time alone: each case is a ratio to
the **floor**, `SELECT account_id, count(*) FROM orders GROUP BY account_id` (the cheapest query
that reads the largest table once), timed in the same process right before the case (median of
FLOOR_RUNS). A `count` metric of the same table shows what the stream itself (sort and frame)
costs; a metric's cost above it is its own.

1. In a spawned process: `generate_sample(accounts, seed, end_date)` and the night loaded as the
   nightly job loads it (`stage_extracts`, `validate_night`), unless `--keep` finds it loaded.
2. The nights: the 365 up to `end_date - 210 days`, the range signal_quality.py replays.
3. Each case in a spawned process: the floor, then the query into a TEMP table, --repeat times
   (median), stopped after --limit seconds. With `--profile`, the case's `EXPLAIN ANALYZE` goes
   to <work>/profile-<metric>.txt (its slowest operators are printed).

Figures go to <work>/own-statistics-results.jsonl, one record per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from common import ROOT, WORK, connect, describe_machine, in_child, machine_line

END = date(2026, 11, 20)  # the sample's last night, as in signal_quality.py
WAIT_DAYS = 210  # signal_quality's range ends this long before the data (outcomes known)
FLOOR = "SELECT account_id, count(*) AS n FROM orders GROUP BY account_id"
FLOOR_RUNS = 7


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    case = args.work / f"own-statistics-{args.accounts}-seed{args.seed}"
    database = case / "loyalty.duckdb"
    machine = describe_machine()
    print(f"own statistics: {args.accounts:,} accounts, seed {args.seed}, {args.nights} nights; {machine_line(machine, ('duckdb', 'sqlglot'))}")
    print(f"commit {machine['commit']}; load average {os.getloadavg()}")
    if not (args.keep and database.exists()):
        loaded = in_child(prepare, case, database, args.accounts, args.seed)
        if "error" in loaded:
            raise SystemExit(f"prepare failed: {loaded['error']}")
        print(f"sample: {loaded['rows']}, generated and loaded in {loaded['seconds']:.0f} s")
    last = END - timedelta(days=WAIT_DAYS)
    nights = [last - timedelta(days=d) for d in range(args.nights)][::-1]
    cases = []
    for folder in args.catalogues:
        names = [] if args.only == ["-"] else args.only or metric_names(ROOT / folder)
        for name in names:
            cases.append(measure(folder, name, database, nights, args))
        if args.whole:
            cases.append(measure(folder, None, database, nights, args))
    record = {
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "machine": machine,
        "cases": cases,
    }
    with (args.work / "own-statistics-results.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, default=str) + "\n")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--catalogues", nargs="+", default=["rules"], help="rule folders, relative to the project")
    parser.add_argument("--only", nargs="+", help="these metrics only ('-': none, with --whole)")
    parser.add_argument("--whole", action="store_true", help="also each whole catalogue, as the backtest evaluates it")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per case (median)")
    parser.add_argument("--limit", type=float, default=1200.0, help="stop a case after this many seconds")
    parser.add_argument("--profile", action="store_true", help="EXPLAIN ANALYZE each case into <work>/profile-<metric>.txt")
    parser.add_argument("--keep", action="store_true", help="reuse a loaded sample")
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    return args


def metric_names(folder: Path) -> list[str]:
    from loyalty_engine.rules.loader import load_rules

    return sorted(load_rules(folder).metrics)


def measure(folder: str, name: str | None, database: Path, nights: list[date], args) -> dict:
    label = f"{folder}: {name or 'whole catalogue'}"
    result = {"catalogue": folder, "metric": name} | in_child(run_case, folder, name, database, nights, args.repeat, args.profile, args.work, limit=args.limit)
    if "error" in result:
        print(f"{label:<55} {result['error'].splitlines()[0]}", flush=True)
        return result
    ratio = result["seconds"] / result["floor"]
    result["ratio"] = ratio
    print(f"{label:<55} {result['seconds']:8.2f} s  {ratio:9.0f} x floor ({result['floor'] * 1000:.1f} ms)  "
          f"{result['kind'] or '':<10} load {result['load_before']:.2f}", flush=True)
    for line in result.get("hot", []):
        print(f"      {line}")
    return result


# --- in a spawned process -------------------------------------------------------------------------


def prepare(case: Path, database: Path, accounts: int, seed: int) -> dict:
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.extracts.validate import validate_night
    from loyalty_engine.sample.generator import generate_sample

    started = time.perf_counter()
    case.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    sample = generate_sample(case / "extracts", accounts=accounts, seed=seed, end_date=END, nights=1)
    con = connect(database)
    con.execute("BEGIN")
    validate_night(con, stage_extracts(con, sample.folder, sample.end_date), sample.end_date)
    con.execute("COMMIT")
    con.close()
    return {"rows": sample.rows, "seconds": time.perf_counter() - started}


def run_case(folder: str, name: str | None, database: Path, nights: list[date], repeat: int, profile: bool, work: Path) -> dict:
    from loyalty_engine.rules.compiler import compile_rules

    ruleset = one_metric(ROOT / folder, name)
    con = connect(database)
    floor = statistics.median(timed(con, f"CREATE OR REPLACE TEMP TABLE floor AS {FLOOR}") for _ in range(FLOOR_RUNS))
    started = time.perf_counter()
    compiled = compile_rules(ruleset, nights, replay=True, fired=False)
    compile_seconds = time.perf_counter() - started
    query = f"CREATE OR REPLACE TEMP TABLE result AS {compiled.sql}"
    seconds = statistics.median(timed(con, query) for _ in range(repeat))
    out = {"floor": floor, "seconds": seconds, "compile": compile_seconds, "sql_chars": len(compiled.sql),
           "kind": ruleset.metrics[name].kind if name else None, "rows": con.execute("SELECT count(*) FROM result").fetchone()[0]}
    if profile:
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"PRAGMA profiling_output = '{work / f'profile-{folder}-{name}.json'}'")
        con.execute(query)
        con.execute("PRAGMA disable_profiling")
        out["hot"] = hottest(work / f"profile-{folder}-{name}.json")
    return out


def timed(con, query: str) -> float:
    started = time.perf_counter()
    con.execute(query)
    return time.perf_counter() - started


def one_metric(folder: Path, name: str | None):
    """The catalogue's enabled rules (name None), or one rule reading the metric `name` alone."""
    from loyalty_engine.rules.loader import Rule, RuleSet, Where, load_rules

    ruleset = load_rules(folder)
    if name is None:
        return RuleSet(ruleset.metrics, [r for r in ruleset.rules if r.enabled])
    place = Where(str(folder), 1, 1)
    probe = Rule(id="probe", severity="low", when=f"{name} is not null", values={}, title={"en": "t"}, message={"en": "m"},
                 action={"en": "a"}, enabled=True, where=place, places={"when": place})
    return RuleSet({name: ruleset.metrics[name]}, [probe])


def hottest(path: Path, top: int = 6) -> list[str]:
    """The operators that took longest, from DuckDB's JSON profile."""
    found = []

    def walk(node):
        found.append((node.get("timing", 0), node.get("type", "?"), node.get("intermediate_rows"), node.get("extra_info") or {}))
        for child in node.get("children", []):
            walk(child)

    for root in json.loads(path.read_text())["operator"]:
        walk(root)
    found.sort(key=lambda f: f[0], reverse=True)
    lines = []
    for seconds, kind, rows, extra in found[:top]:
        detail = json.dumps(extra)[:200] if extra else ""
        lines.append(f"{seconds:8.2f} s  {kind}  {rows:,} rows  {detail}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
