"""One night's rules, DuckDB against Spark, on the same generated sample (docs/spark.md).

    .venv/bin/python benchmarks/engines.py                         # 10,000 accounts, Spark local[2]
    .venv/bin/python benchmarks/engines.py --accounts 2000 --master local[1]

Per engine: the night's files read and checked (DuckDB: stage + validate; Spark: read_extracts),
a floor, and the whole shipped catalogue's query for the night. The floor is the plainest query
over the same orders on the same engine, `SELECT account_id, count(*) FROM orders GROUP BY 1`,
measured in the same run right before the rules: the machine is shared, so seconds drift between
runs and the ratio to the floor is the figure (benchmarks/README.md). Spark's session start is
timed apart. Both engines' outcomes are compared, value for value, at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date
from pathlib import Path

from common import RULES, WORK, describe_machine, git_commit

FLOOR = "SELECT account_id, count(*) AS orders FROM orders GROUP BY 1"


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--night", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()

    from loyalty_engine import store
    from loyalty_engine.config import ExtractSettings, SparkSettings
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.extracts.validate import validate_night
    from loyalty_engine.rules.compiler import compile_rules
    from loyalty_engine.rules.loader import load_rules
    from loyalty_engine.sample.generator import generate_sample
    from loyalty_engine.spark_engine import evaluate_on_spark, read_extracts, start_spark

    case = args.work / f"engines-{args.accounts}-seed{args.seed}"
    extracts = case / "extracts"
    if not (extracts / args.night.isoformat()).exists():
        seconds, _ = timed(lambda: generate_sample(extracts, accounts=args.accounts, seed=args.seed, end_date=args.night))
        print(f"sample: {args.accounts:,} accounts generated in {seconds:.1f} s (not part of the figures)")
    ruleset = load_rules(RULES)
    settings = ExtractSettings(path=extracts)
    figures = {"load": os.getloadavg()[0]}

    database = case / "loyalty.duckdb"
    database.unlink(missing_ok=True)
    con = store.connect(database)
    figures["duckdb read"], _ = timed(lambda: validate_night(con, stage_extracts(con, settings, args.night), args.night))
    figures["duckdb floor"], _ = timed(lambda: con.sql(FLOOR).to_arrow_table())
    figures["duckdb rules"], on_duckdb = timed(lambda: con.sql(compile_rules(ruleset, args.night).sql).to_arrow_table())

    # The settings docs/spark.md shows; no code generation, which fails on the catalogue's
    # largest method and falls back anyway (docs/spark.md).
    conf = {"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8", "spark.ui.enabled": "false",
            "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}  # fmt: skip
    figures["spark start"], session = timed(start_spark, SparkSettings(master=args.master, conf=conf))
    figures["spark read"], _ = timed(read_extracts, session, settings, args.night)
    figures["spark floor"], _ = timed(lambda: session.sql(FLOOR).toArrow())
    figures["spark rules"], (_, on_spark) = timed(evaluate_on_spark, session, ruleset, args.night)
    session.stop()
    figures["load after"] = os.getloadavg()[0]

    equal = on_spark.num_rows == on_duckdb.num_rows and all(
        a == b or (isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-9 * max(abs(a), 1))
        for row, other in zip(on_duckdb.to_pylist(), on_spark.to_pylist())
        for a, b in zip(row.values(), other.values())
    )
    print(f"{args.accounts:,} accounts, night {args.night}, Spark {args.master}; commit {git_commit()}")
    print(f"load average (1 min) before/after: {figures['load']:.2f} / {figures['load after']:.2f} (a shared machine)")
    print(f"spark session start: {figures['spark start']:.1f} s")
    print("| engine | read and check the night | floor | rules | rules / floor |")
    print("|---|---|---|---|---|")
    for engine in ("duckdb", "spark"):
        read, floor, rules = (figures[f"{engine} {step}"] for step in ("read", "floor", "rules"))
        print(f"| {engine} | {read:.1f} s | {floor:.2f} s | {rules:.1f} s | {rules / floor:,.0f}x |")
    print(f"spark rules / duckdb rules: {figures['spark rules'] / figures['duckdb rules']:.1f}x; outcomes equal: {equal}")
    record = {"accounts": args.accounts, "seed": args.seed, "night": str(args.night), "master": args.master, "equal": equal,
              "figures": figures, "machine": describe_machine()}  # fmt: skip
    with (args.work / "engines.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, default=str) + "\n")


if __name__ == "__main__":
    main()
