"""Benchmark one night of loyalty-engine, stage by stage, without Prefect.

    .venv/bin/python benchmarks/nightly.py                      # 10,000 accounts, CSV (make benchmark)
    .venv/bin/python benchmarks/nightly.py --format parquet
    .venv/bin/python benchmarks/nightly.py --accounts 50000 --repeat 3
    .venv/bin/python benchmarks/nightly.py --breakdown          # + sub-steps and hottest SQL per stage

What it does:

1. writes a sample with `loyalty_engine.sample.generator.generate_sample` (timed apart: generation is not
   part of the night); for --format parquet the CSVs are then converted with DuckDB's COPY;
2. writes a config.yaml into the case folder (extracts, database and outbox there, the project's
   rules/) and loads it with `load_settings`, as `loyalty run` would;
3. runs the night's plain functions in the order of flows/nightly.py, each stage opening and
   closing the DuckDB file itself like the flow's tasks do: rules (load and check the rule files
   once, before any data is replaced), stage, validate, evaluate, render, deliver (outbox mode);
4. runs the same night again: the re-load replaces the night's data and sends nothing.

Each night runs in a fresh process (spawned), and so do the generation and the Parquet
conversion: a spawned child's ru_maxrss starts from its parent's high-water mark, so the parent
stays small and each night's peak RSS is its own, not the generator's or the previous night's. Figures: wall time per stage (time.perf_counter), the
process's peak RSS after each stage (resource.getrusage: a high-water mark, so it only grows),
and the DuckDB file's size. They are printed as a table and appended, with the machine's
description, to <work>/results.jsonl; each case's own figures go to <case>/result.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import time
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

from common import RULES, WORK, describe_machine, in_fresh_process, machine_line, mib, peak_rss

STAGES = ("rules", "stage", "validate", "gate", "evaluate", "commit", "render", "deliver")
RUNS = ("first", "re-run")
DEFAULT_NIGHT = date(2026, 11, 23)  # fixed, so the same arguments give the same sample everywhere


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    label = f"{args.format}-{args.accounts}-seed{args.seed}"
    case = args.work / label
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    machine = describe_machine()
    print(f"loyalty-engine nightly benchmark: {args.accounts:,} accounts, {args.format}, seed {args.seed}, night {args.night}")
    print(f"machine: {machine_line(machine, ('duckdb', 'polars', 'pandera'))}")
    print(f"project commit: {machine['commit']}; work folder: {case}\n")

    preparation = prepare(args, case)
    config = write_config(case, preparation["extracts"], args.rules)

    rounds = []
    for number in range(1, args.repeat + 1):
        for folder in (case / "data", case / "outbox"):  # every round starts from an empty database
            shutil.rmtree(folder, ignore_errors=True)
        done = {}
        for run in RUNS:
            done[run] = in_fresh_process(
                run_night, str(config), args.night.isoformat(), run, args.breakdown,
                str(case / "profiles" / f"round{number}-{run}") if args.profile else None,
            )
            check_outcome(run, done[run])
        rounds.append(done)
        if args.repeat > 1:
            print(f"round {number}/{args.repeat}: first night {done['first']['night_seconds']:.2f} s, "
                  f"re-run {done['re-run']['night_seconds']:.2f} s")

    summary = summarise(rounds)
    print_outcome(rounds[-1]["first"], rounds[-1]["re-run"])
    print_table(summary, args.repeat)
    if args.breakdown:
        print_breakdown(rounds[-1])
    if args.profile:
        print(f"\ncProfile files (one per stage): {case / 'profiles'}  (read with: python -m pstats FILE)")

    record = {
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "case": label,
        "arguments": {"accounts": args.accounts, "seed": args.seed, "format": args.format,
                      "night": args.night.isoformat(), "repeat": args.repeat, "breakdown": args.breakdown},
        "machine": machine,
        "preparation": {k: v for k, v in preparation.items() if k != "extracts"},
        "parent_peak_rss": peak_rss(),  # stays small: every heavy step ran in a child
        "summary": summary,
        "rounds": rounds,
    }
    (case / "result.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    with (args.work / "results.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, default=str) + "\n")
    print(f"\nthis (parent) process's own peak RSS: {mib(record['parent_peak_rss'])} (it runs no stage)")
    print(f"figures appended to {args.work / 'results.jsonl'} and written to {case / 'result.json'}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one night of loyalty-engine stage by stage (no Prefect), then a re-run of it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts in the sample (10,000 give about 1.1 million orders)")
    parser.add_argument("--seed", type=int, default=7, help="sample seed")
    parser.add_argument("--night", type=date.fromisoformat, default=DEFAULT_NIGHT, help="business date (the sample's last day)")
    parser.add_argument("--work", type=Path, default=WORK, help="folder for samples, databases and outboxes (git-ignored)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="extract file format")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (fresh database each); stage times are the median over rounds")
    parser.add_argument("--rules", type=Path, default=RULES, help="rules folder")
    parser.add_argument("--breakdown", action="store_true", help="also time sub-steps (per table, pandera, SQL statements)")
    parser.add_argument("--profile", action="store_true", help="write a cProfile file per stage into <case>/profiles/")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.repeat < 1:
        parser.error("--accounts and --repeat must be at least 1")
    args.work = args.work.resolve()
    args.rules = args.rules.resolve()
    return args


# --- preparation: sample and config (not part of the night) ------------------------------------


def prepare(args: argparse.Namespace, case: Path) -> dict:
    # Generation runs in its own process too, so its peak memory is reported and kept apart.
    csv_root = case / ("extracts" if args.format == "csv" else "sample")
    generated = in_fresh_process(generate, str(csv_root), args.accounts, args.seed, args.night.isoformat())
    rows = generated["rows"]
    print(f"sample: {', '.join(f'{n:,} {t}' for t, n in rows.items())}")
    print(f"        generated in {generated['seconds']:.2f} s (peak RSS {mib(generated['peak_rss'])}), "
          f"{mib(generated['bytes'])} of CSV — not part of the night")
    result = {"rows": rows, "generate_seconds": generated["seconds"], "generate_peak_rss": generated["peak_rss"],
              "csv_bytes": generated["bytes"], "extracts": csv_root}
    if args.format == "parquet":
        # In a child as well: a spawned child's ru_maxrss starts from its parent's high-water mark
        # (Linux carries it over exec), so the parent must stay small for the nights' figures to be theirs.
        started = time.perf_counter()
        parquet_bytes = in_fresh_process(
            to_parquet, csv_root / args.night.isoformat(), case / "extracts" / args.night.isoformat()
        )
        seconds = time.perf_counter() - started
        print(f"        converted to Parquet in {seconds:.2f} s, {mib(parquet_bytes)} — not part of the night")
        result.update(convert_seconds=seconds, parquet_bytes=parquet_bytes, extracts=case / "extracts")
    print()
    return result


def generate(out: str, accounts: int, seed: int, night: str) -> dict:
    from loyalty_engine.sample.generator import generate_sample

    started = time.perf_counter()
    summary = generate_sample(Path(out), accounts=accounts, seed=seed, end_date=date.fromisoformat(night))
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in summary.folder.iterdir() if p.is_file())
    return {"rows": summary.rows, "seconds": seconds, "bytes": size, "peak_rss": peak_rss()}


def to_parquet(csv_folder: Path, parquet_folder: Path) -> int:
    """Each CSV as a typed Parquet file (types detected over the whole file), as an ERP might export it."""
    import duckdb

    parquet_folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        for source in sorted(csv_folder.glob("*.csv")):
            target = parquet_folder / f"{source.stem}.parquet"
            con.execute(
                f"COPY (SELECT * FROM read_csv({quoted(source)}, header=true, sample_size=-1)) "
                f"TO {quoted(target)} (FORMAT parquet)"
            )
    finally:
        con.close()
    return sum(p.stat().st_size for p in parquet_folder.glob("*.parquet"))


def quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def write_config(case: Path, extracts: Path, rules: Path) -> Path:
    """config.yaml for the case: extracts, database and outbox inside it, the given rules."""
    config = case / "config.yaml"
    config.write_text(
        "# Written by benchmarks/nightly.py\n"
        f"extracts: {{path: {json.dumps(str(extracts))}}}\n"
        "database: data/loyalty.duckdb\n"
        f"rules: {json.dumps(str(rules))}\n"
        "email:\n"
        "  mode: outbox\n"
        "  outbox_dir: outbox\n"
        '  sender: "Frühwarnsystem <fruehwarnung@example.com>"\n'
        "digest: {language: de}\n",
        encoding="utf-8",
    )
    return config


# --- one night, in a fresh process --------------------------------------------------------------


def run_night(config_path: str, night_iso: str, run: str, breakdown: bool, profile_dir: str | None) -> dict:
    """Run the night's plain functions like flows/nightly.py's tasks do, timing each stage."""
    started = time.perf_counter()
    from loyalty_engine import store
    from loyalty_engine.config import load_settings
    from loyalty_engine.mail.delivery import deliver_digests
    from loyalty_engine.mail.digest import render_digests
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.gate import extract_checks, flood_check, record_checks, stop_if_failed
    from loyalty_engine.lifecycle.warnings import advance_warnings
    from loyalty_engine.mail.mailing import night_mailing
    from loyalty_engine.lifecycle.routing import route_warnings
    from loyalty_engine.rules.compiler import check_rules
    from loyalty_engine.rules.evaluate import evaluate_rules
    from loyalty_engine.rules.loader import load_rules
    from loyalty_engine.lifecycle.snoozes import load_snoozes
    from loyalty_engine.extracts.validate import validate_night

    imports = time.perf_counter() - started
    rss_after_imports = peak_rss()
    settings = load_settings(Path(config_path))
    night = date.fromisoformat(night_iso)
    timer = Breakdown() if breakdown else None
    if timer:
        timer.install()

    @contextlib.contextmanager
    def database():
        """Open and close the file like each of the flow's tasks does; with --breakdown, time both."""
        begun = time.perf_counter()
        con = store.connect(settings.database)
        if timer:
            timer.add("open DuckDB file (+ shared tables)", time.perf_counter() - begun)
        try:
            yield TimedConnection(con, timer) if timer else con
        finally:
            begun = time.perf_counter()
            con.close()
            if timer:
                timer.add("close DuckDB file (checkpoint)", time.perf_counter() - begun)

    def rules():
        ruleset = load_rules(settings.rules)
        check_rules(ruleset)  # a broken rule stops the night before any data is replaced
        return ruleset

    # Stage to the flood check share one connection and one transaction, as night.run_night does;
    # its steps are timed one by one here.
    night_transaction = contextlib.ExitStack()

    def stage():
        con = night_transaction.enter_context(database())
        con.begin()
        return con, stage_extracts(con, settings.extracts, night)

    def validate():
        con, staged_tables = staged
        return validate_night(con, staged_tables, night)

    def gate():
        return extract_checks(staged[0], night, checks, settings)

    def evaluate():
        con = staged[0]
        outcome = evaluate_rules(con, ruleset, night, store.absent_tables(con, night))
        advance_warnings(con, ruleset, night, outcome, load_snoozes(settings.snoozes), settings.digest.repeat_after_days)
        route_warnings(con, night)
        gate_checks.append(flood_check(con, night, settings))
        return outcome.signals

    def commit():
        with night_transaction:
            stop_if_failed(night, gate_checks)
            record_checks(staged[0], night, gate_checks)
            staged[0].commit()

    def render():
        with database() as con:
            mailing = night_mailing(con, ruleset, night, settings.digest.language, settings.email.ops_recipients)
        begun = time.perf_counter()
        digests = render_digests(
            mailing.warnings, night, settings.email.sender, settings.digest.language, settings.digest.max_accounts,
            mailing.portfolios, settings.digest.currency,
        )
        if timer:
            timer.add(f"render_digests ({len(mailing.warnings)} warnings)", time.perf_counter() - begun)
        return digests

    def deliver():
        with database() as con:
            return deliver_digests(con, digests, settings.email)

    stages = []

    def measure(name, function):
        if timer:
            timer.stage = name
        profiler = None
        if profile_dir:
            import cProfile

            profiler = cProfile.Profile()
        begun = time.perf_counter()
        if profiler:
            profiler.enable()
        result = function()
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - begun
        if profiler:
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(str(Path(profile_dir) / f"{len(stages) + 1}-{name}.prof"))
        stages.append({"stage": name, "seconds": seconds, "peak_rss": peak_rss(), "db_bytes": database_bytes(settings.database)})
        return result

    ruleset = measure("rules", rules)
    staged = measure("stage", stage)
    checks = measure("validate", validate)
    gate_checks = measure("gate", gate)
    fired = measure("evaluate", evaluate)
    measure("commit", commit)
    digests = measure("render", render)
    report = measure("deliver", deliver)

    outbox = settings.email.outbox_dir / night.isoformat()
    return {
        "run": run,
        "imports_seconds": imports,
        "rss_after_imports": rss_after_imports,
        "stages": stages,
        "night_seconds": sum(s["seconds"] for s in stages),
        "peak_rss": peak_rss(),
        "db_bytes": database_bytes(settings.database),
        "tables": {c.table: {"loaded": c.rows_loaded, "quarantined": c.rows_quarantined} for c in checks},
        "staged_rows": {name: table.rows for name, table in staged[1].items()},
        "warnings": len(fired),
        "accounts_warned": len({f.account_id for f in fired}),
        "warnings_by_rule": dict(sorted(count_by(f.rule_id for f in fired).items())),
        "digests": len(digests),
        "sent": len(report.sent),
        "skipped": len(report.skipped),
        "failed": len(report.failed),
        "eml_files": len(list(outbox.glob("*.eml"))) if outbox.is_dir() else 0,
        "duckdb_threads": duckdb_threads(),
        "breakdown": timer.result() if timer else None,
    }


class Breakdown:
    """Sub-step timings: per table in stage and validate, pandera's own time, and every SQL statement.

    Installed by wrapping module attributes of the package in this process only (nothing on disk
    changes); the functions look them up at call time, so the wrappers see every call.
    """

    def __init__(self) -> None:
        self.stage = ""
        self.steps: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.sql: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0]))

    def add(self, step: str, seconds: float) -> None:
        self.steps[self.stage][step] += seconds

    def install(self) -> None:
        import pandera.polars as pa

        from loyalty_engine.extracts import staging as extracts, validate
        from loyalty_engine.rules import evaluate

        self._wrap(extracts, "_stage", lambda table, path: f"load {table.name}", arguments=(1, 2))
        self._wrap(validate, "_validate_table", lambda table, *_: f"table {table.name}", arguments=(1, 2, 3, 4))
        self._wrap(validate, "_failures", lambda name, *_: f"  {name}: Arrow batches + pandera", arguments=(1, 2))
        self._wrap(evaluate, "compile_rules", lambda *_: "compile rules (sqlglot)", arguments=(0, 1))
        validate_schema = pa.DataFrameSchema.validate
        timer = self

        def timed_validate(schema, *args, **kwargs):
            begun = time.perf_counter()
            try:
                return validate_schema(schema, *args, **kwargs)
            finally:
                timer.add(f"  {schema.name}: pandera validate", time.perf_counter() - begun)

        pa.DataFrameSchema.validate = timed_validate

    def _wrap(self, module, attribute: str, step, arguments: tuple[int, ...]) -> None:
        original = getattr(module, attribute)
        timer = self

        def timed(*args, **kwargs):
            begun = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                picked = [args[i] for i in arguments if i < len(args)]
                timer.add(step(*picked), time.perf_counter() - begun)

        setattr(module, attribute, timed)

    def statement(self, sql: str, seconds: float) -> None:
        key = " ".join(sql.split())[:90]
        entry = self.sql[self.stage][key]
        entry[0] += 1
        entry[1] += seconds

    def result(self) -> dict:
        return {
            "steps": {stage: dict(steps) for stage, steps in self.steps.items()},
            "sql": {
                stage: sorted(([key, calls, seconds] for key, (calls, seconds) in statements.items()), key=lambda e: -e[2])
                for stage, statements in self.sql.items()
            },
        }


class TimedConnection:
    """A DuckDB connection that times execute/executemany/commit and sql().fetchall().

    Everything else passes through. A relation read as Arrow batches (validate's `_failures`) is
    timed by the step wrapped around it, not as SQL.
    """

    def __init__(self, con, timer: Breakdown) -> None:
        self._con = con
        self._timer = timer

    def __getattr__(self, name):
        return getattr(self._con, name)

    def _timed(self, what: str, function, *args):
        begun = time.perf_counter()
        try:
            return function(*args)
        finally:
            self._timer.statement(what, time.perf_counter() - begun)

    def execute(self, sql, *args):
        return self._timed(sql, self._con.execute, sql, *args)

    def executemany(self, sql, *args):
        return self._timed(f"executemany: {sql}", self._con.executemany, sql, *args)

    def commit(self):
        return self._timed("COMMIT", self._con.commit)

    def sql(self, sql, *args, **kwargs):
        return TimedRelation(self._con.sql(sql, *args, **kwargs), sql, self._timer)


class TimedRelation:
    """A lazy DuckDB relation whose fetchall() is timed (where `con.sql(...)` does its work)."""

    def __init__(self, relation, sql: str, timer: Breakdown) -> None:
        self._relation = relation
        self._sql = sql
        self._timer = timer

    def __getattr__(self, name):
        return getattr(self._relation, name)

    def fetchall(self):
        begun = time.perf_counter()
        try:
            return self._relation.fetchall()
        finally:
            self._timer.statement(f"sql().fetchall(): {self._sql}", time.perf_counter() - begun)


# --- helpers --------------------------------------------------------------------------------------


def database_bytes(path: Path) -> int:
    """The DuckDB file plus its write-ahead log, if one is left."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())


def duckdb_threads() -> int:
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute("SELECT current_setting('threads')").fetchone()[0]
    finally:
        con.close()


def count_by(values) -> dict:
    counts: dict = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(counts)


def check_outcome(run: str, result: dict) -> None:
    """The figures only mean something if the night did what a night does."""
    problems = []
    if result["failed"]:
        problems.append(f"{result['failed']} digests failed")
    if run == "first" and result["sent"] != result["digests"]:
        problems.append(f"first night wrote {result['sent']} of {result['digests']} digests")
    if run == "re-run" and result["sent"]:
        problems.append(f"re-run sent {result['sent']} digests again")
    if problems:
        raise SystemExit(f"benchmark night ({run}) went wrong: {'; '.join(problems)}")


# --- reporting ------------------------------------------------------------------------------------


def summarise(rounds: list[dict]) -> dict:
    """Per run and stage: median, min and max seconds over the rounds; peak RSS and sizes of the last round."""
    summary = {}
    for run in RUNS:
        per_stage = {}
        for index, name in enumerate(STAGES):
            times = [r[run]["stages"][index]["seconds"] for r in rounds]
            per_stage[name] = {
                "seconds": statistics.median(times), "min": min(times), "max": max(times),
                "peak_rss": max(r[run]["stages"][index]["peak_rss"] for r in rounds),
                "db_bytes": rounds[-1][run]["stages"][index]["db_bytes"],
            }
        nights = [r[run]["night_seconds"] for r in rounds]
        summary[run] = {
            "stages": per_stage,
            "night_seconds": statistics.median(nights), "min": min(nights), "max": max(nights),
            "imports_seconds": statistics.median(r[run]["imports_seconds"] for r in rounds),
            "peak_rss": max(r[run]["peak_rss"] for r in rounds),
            "db_bytes": rounds[-1][run]["db_bytes"],
        }
    return summary


def print_outcome(first: dict, again: dict) -> None:
    tables = ", ".join(f"{t} {v['loaded']:,} ({v['quarantined']:,} quarantined)" for t, v in first["tables"].items())
    print(f"loaded: {tables}")
    rules = ", ".join(f"{rule} {n}" for rule, n in first["warnings_by_rule"].items())
    print(f"rules: {first['warnings']:,} warnings for {first['accounts_warned']:,} accounts ({rules})")
    print(f"digests: {first['digests']} written to the outbox ({first['eml_files']} .eml files); "
          f"re-run: {again['sent']} sent, {again['skipped']} skipped as already sent")
    print(f"DuckDB threads: {first['duckdb_threads']}; imports before the night: {first['imports_seconds']:.2f} s "
          f"(peak RSS {mib(first['rss_after_imports'])} after imports)\n")


def print_table(summary: dict, repeat: int) -> None:
    spread = repeat > 1
    header = f"{'stage':<10} {'first night':>12} {'re-run':>12} {'peak RSS':>10} {'DuckDB file':>12}"
    print(header + ("   (median of %d rounds; min-max)" % repeat if spread else ""))
    print("-" * len(header))
    first, again = summary["first"], summary["re-run"]
    for name in STAGES:
        a, b = first["stages"][name], again["stages"][name]
        line = f"{name:<10} {a['seconds']:>10.2f} s {b['seconds']:>10.2f} s {mib(a['peak_rss']):>10} {mib(a['db_bytes']):>12}"
        if spread:
            line += f"   {a['min']:.2f}-{a['max']:.2f} / {b['min']:.2f}-{b['max']:.2f}"
        print(line)
    print("-" * len(header))
    print(f"{'night':<10} {first['night_seconds']:>10.2f} s {again['night_seconds']:>10.2f} s "
          f"{mib(first['peak_rss']):>10} {mib(first['db_bytes']):>12}")
    print(f"{'':<10} {'':>12} {'':>12} {mib(again['peak_rss']):>10} {mib(again['db_bytes']):>12}   (re-run's peak RSS, file after it)")
    print("peak RSS is the process's high-water mark after the stage (it only grows); "
          "the DuckDB file is measured after the stage closed its connection.")


def print_breakdown(done: dict) -> None:
    for run in RUNS:
        breakdown = done[run]["breakdown"]
        stage_seconds = {s["stage"]: s["seconds"] for s in done[run]["stages"]}
        print(f"\nbreakdown, {run} night:")
        for name in STAGES:
            steps = breakdown["steps"].get(name, {})
            statements = breakdown["sql"].get(name, [])
            if not steps and not statements:
                continue
            print(f"  {name} ({stage_seconds[name]:.2f} s)")
            for step, seconds in steps.items():
                print(f"    {seconds:8.2f} s  {step}")
            sql_total = sum(e[2] for e in statements)
            print(f"    {sql_total:8.2f} s  SQL (execute/executemany/commit/fetchall), {sum(e[1] for e in statements)} calls; hottest:")
            for key, calls, seconds in statements[:5]:
                print(f"      {seconds:7.2f} s  {calls:>4}x  {key}")


if __name__ == "__main__":
    sys.exit(main())
