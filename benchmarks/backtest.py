"""Benchmark the backtest: a year of nights replayed at once, against one night's evaluation.

    .venv/bin/python benchmarks/backtest.py                              # 10,000 and 100,000 accounts
    .venv/bin/python benchmarks/backtest.py --accounts 10000
    .venv/bin/python benchmarks/backtest.py --accounts 100000 --keep --probes-per-chunk 2000000

`loyalty backtest` (loyalty_engine.backtest.run_backtest) replays the rules over a range of
nights: one streamed signal query per chunk of accounts, the real lifecycle for all nights at once
in an in-memory database (lifecycle/replay.py; night after night until issue 17), then the figures. A loop of nightly runs would evaluate the rules once per
night, 365 times for a year. This script measures what the replay costs instead:

1. **Sample (not timed as part of anything).** `generate_sample` (seed 7, one night, last night
   2026-11-20), loaded as the nightly job loads a night: `stage_extracts` and `validate_night` on
   one `store.connect` connection, in one transaction. With --keep, a case folder that already
   holds a loaded database is used as it is.
2. **One night**, in a fresh process: `evaluate_rules` for the last loaded night on that database
   (what the nightly job runs per night), inside a transaction that is rolled back, so the file
   stays as loaded. The first call is reported apart (the nightly job makes one call per
   process), then the median of --repeat further calls.
3. **Backtest**, in a fresh process: `run_backtest` over the --nights nights ending on the last
   loaded night, with the project's rules and default backtest settings. Its steps are timed
   from its `progress` messages (per account chunk: the signal query, then keeping the signals
   the lifecycle needs) and by wrapping the module's step functions in this process only
   (`_signals`, `_lifecycle`, `account_fates`, `_figures`; nothing on disk changes).
   --probes-per-chunk sets `backtest.PROBES_PER_CHUNK` the same way.

Memory: the process's peak RSS (`ru_maxrss`; every case runs in a spawned process, see
common.py for why), and a sampler thread that reads, every --sample-every seconds, the current
RSS (/proc/self/status) and DuckDB's own accounting (`duckdb_memory()`: memory in its buffer
manager, and bytes spilled to temporary files) of the database file and of the backtest's
in-memory lifecycle database. Each step gets the highest samples taken while it ran. DuckDB runs
with its defaults (threads = cores, memory_limit = 80 % of RAM), except that it may spill at most
common.SPILL_LIMIT to disk.

The parent watches every case: one whose RSS passes --memory-cap GiB, or still running after
--limit seconds, is stopped and reported with what it had reached. The 1-minute load average is
recorded before each case and sampled while it runs (other work on the machine slows it). The
table is printed; each case's record is appended to <work>/backtest-results.json (a JSON list).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from common import ROOT, RULES, WORK, connect, current_rss, describe_machine, in_child, machine_line, mib, peak_rss

END_DATE = date(2026, 11, 20)  # the sample's last night (a Friday), fixed so every machine gets the same files
SEED = 7


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = describe_machine() | {"tracked_changes": tracked_changes()}
    print(f"loyalty-engine backtest benchmark: {args.nights} nights up to {END_DATE}, seed {SEED}, accounts {', '.join(f'{a:,}' for a in args.accounts)}")
    print(f"machine: {machine_line(machine, ('duckdb', 'sqlglot'))}; commit {machine['commit']}\n")

    for accounts in args.accounts:
        case = args.work / f"backtest-{accounts}"
        database = case / "loyalty.duckdb"
        loaded = case / "loaded.json"
        if args.keep and loaded.exists() and database.exists():
            sample = json.loads(loaded.read_text(encoding="utf-8"))
            print(f"[{accounts:,}] sample kept from {sample['prepared_at']}")
        else:
            shutil.rmtree(case, ignore_errors=True)
            case.mkdir(parents=True)
            print(f"[{accounts:,}] generating and loading the sample ...", flush=True)
            sample = in_child(prepare, case, accounts)
            if "error" in sample:
                raise SystemExit(f"preparing the sample failed: {sample['error']}")
            loaded.write_text(json.dumps(sample, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"[{accounts:,}] sample: {', '.join(f'{n:,} {t}' for t, n in sample['rows'].items())}")
        print(f"          generated in {sample['generate_seconds']:.1f} s (peak RSS {mib(sample['generate_peak_rss'])}), "
              f"loaded in {sample['load_seconds']:.1f} s (peak RSS {mib(sample['load_peak_rss'])}); DuckDB file {mib(sample['db_bytes'])}")

        print(f"[{accounts:,}] one night: evaluate_rules ... (load {os.getloadavg()[0]:.2f})", flush=True)
        night = in_child(one_night, database, args.repeat, args.sample_every, limit=args.limit, memory_cap_gib=args.memory_cap)
        print_night(night)
        print(f"[{accounts:,}] backtest over {args.nights} nights ... (load {os.getloadavg()[0]:.2f})", flush=True)
        backtest = in_child(replay, database, args.nights, args.probes_per_chunk, args.sample_every,
                            limit=args.limit, memory_cap_gib=args.memory_cap)
        print_backtest(backtest, night)
        record = {
            "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "arguments": {"accounts": accounts, "nights": args.nights, "repeat": args.repeat,
                          "probes_per_chunk": args.probes_per_chunk, "limit": args.limit, "memory_cap_gib": args.memory_cap},
            "machine": machine,
            "sample": sample,
            "one_night": night,
            "backtest": backtest,
        }
        results = save(args.work / "backtest-results.json", record)
        print(f"[{accounts:,}] figures written to {results}\n")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time a backtest over a year of nights against one night's evaluate_rules.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 100_000], help="accounts in the sample, one case each")
    parser.add_argument("--nights", type=int, default=365, help="nights replayed, ending on the sample's last night")
    parser.add_argument("--repeat", type=int, default=5, help="timed evaluate_rules calls after the first (median shown)")
    parser.add_argument("--probes-per-chunk", type=int, default=None,
                        help="set backtest.PROBES_PER_CHUNK (account x night probes per signal query) in the child; default: the module's")
    parser.add_argument("--work", type=Path, default=WORK, help="folder for the samples, databases and figures (git-ignored)")
    parser.add_argument("--keep", action="store_true", help="reuse a case folder's loaded database instead of generating it again")
    parser.add_argument("--limit", type=float, default=1800.0, help="stop a case still running after this many seconds")
    parser.add_argument("--memory-cap", type=float, default=16.0, help="stop a case whose RSS passes this many GiB")
    parser.add_argument("--sample-every", type=float, default=0.5, help="seconds between memory samples")
    args = parser.parse_args(argv)
    if min(args.accounts) < 1 or args.nights < 1 or args.repeat < 1:
        parser.error("--accounts, --nights and --repeat must be at least 1")
    args.work = args.work.resolve()
    return args


# --- in fresh processes ---------------------------------------------------------------------------


def prepare(case: Path, accounts: int) -> dict:
    """The sample, loaded the way the nightly job loads a night: stage and validate in one transaction."""
    from loyalty_engine import store
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.sample.generator import generate_sample
    from loyalty_engine.extracts.validate import validate_night

    started = time.perf_counter()
    sample = generate_sample(case / "extracts", accounts=accounts, seed=SEED, end_date=END_DATE, nights=1)
    generated = time.perf_counter()
    generate_peak = peak_rss()
    con = store.connect(case / "loyalty.duckdb")
    try:
        con.execute("BEGIN")
        checks = validate_night(con, stage_extracts(con, sample.folder, sample.end_date), sample.end_date)
        con.execute("COMMIT")
    finally:
        con.close()
    loaded = time.perf_counter()
    quarantined = sum(c.rows_quarantined for c in checks)
    if quarantined:  # the figures are about the rules on a clean history
        raise RuntimeError(f"{quarantined} rows quarantined while loading the sample")
    return {
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "night": sample.end_date.isoformat(),
        "rows": sample.rows,
        "csv_bytes": sum(p.stat().st_size for p in sample.folder.iterdir() if p.is_file()),
        "generate_seconds": generated - started,
        "generate_peak_rss": generate_peak,
        "load_seconds": loaded - generated,
        "load_peak_rss": peak_rss(),
        "db_bytes": (case / "loyalty.duckdb").stat().st_size,
    }


def one_night(database: Path, repeat: int, sample_every: float) -> dict:
    """evaluate_rules for the last loaded night, as the nightly job calls it, rolled back after."""
    from loyalty_engine import store
    from loyalty_engine.rules.evaluate import evaluate_rules
    from loyalty_engine.rules.loader import load_rules

    ruleset = load_rules(RULES)
    con = connect(database)
    sampler = Sampler(sample_every, [con])
    try:
        night = con.execute("SELECT max(night) FROM loads").fetchall()[0][0]
        absent = store.absent_tables(con, night)
        con.execute("BEGIN")
        sampler.start()
        times, cpu = [], []
        for _ in range(repeat + 1):
            started, cpu_started = time.perf_counter(), time.process_time()
            outcome = evaluate_rules(con, ruleset, night, absent)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            sampler.mark(f"call {len(times)}")
        sampler.stop()
        con.execute("ROLLBACK")
        settings = {name: con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0] for name in ("threads", "memory_limit")}
    finally:
        sampler.stop()
        con.close()
    rest = times[1:]
    return {
        "night": night.isoformat(),
        "rules": len([r for r in ruleset.rules if r.enabled]),
        "signals": len(outcome.signals),
        "accounts_signalled": len({s.account_id for s in outcome.signals}),
        "first_seconds": times[0],
        "seconds": statistics.median(rest) if rest else times[0],
        "min": min(rest or times),
        "max": max(rest or times),
        "runs": len(rest),
        "first_cpu_seconds": cpu[0],
        "cpu_seconds": statistics.median(cpu[1:]) if rest else cpu[0],
        "peak_rss": peak_rss(),
        "memory": sampler.summary(),
        "duckdb_settings": settings,
    }


def replay(database: Path, nights: int, probes_per_chunk: int | None, sample_every: float) -> dict:
    """run_backtest over `nights` nights ending on the last loaded night, step by step."""
    import duckdb

    from loyalty_engine import backtest
    from loyalty_engine.config import BacktestSettings
    from loyalty_engine.lifecycle import replay as lifecycle_replay
    from loyalty_engine.rules.loader import load_rules

    if probes_per_chunk:
        backtest.PROBES_PER_CHUNK = probes_per_chunk
    ruleset = load_rules(RULES)
    con = connect(database)
    sampler = Sampler(sample_every, [con])
    # (seconds since the start, CPU seconds of the process's threads since the start, what began or ended)
    events: list[tuple[float, float, str]] = []
    begun, cpu_begun = time.perf_counter(), time.process_time()

    def note(message: str) -> None:
        events.append((time.perf_counter() - begun, time.process_time() - cpu_begun, message))
        sampler.mark(message)
        # Live, so that a case stopped for time or memory still shows how far it got.
        print(f"    {events[-1][0]:8.1f} s  CPU {events[-1][1]:8.1f} s  RSS {mib(current_rss()):>10}  load {os.getloadavg()[0]:4.1f}  {message}", flush=True)

    # The step functions, timed where run_backtest looks them up (module attributes, this process only).
    for name in ("_signals", "_lifecycle", "account_fates", "_figures"):
        original = getattr(backtest, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            note(f"begin {_name}")
            try:
                return _original(*args, **kwargs)
            finally:
                note(f"end {_name}")

        setattr(backtest, name, timed)

    # The lifecycle's own in-memory database, so the sampler can read its memory too.
    class DuckDB:
        def __getattr__(self, name):
            return getattr(duckdb, name)

        def connect(self, *args, **kwargs):
            replay_con = duckdb.connect(*args, **kwargs)
            sampler.watch(replay_con)
            return replay_con

    backtest.duckdb = DuckDB()
    lifecycle_replay.duckdb = DuckDB()
    try:
        data_end = con.execute("SELECT max(night) FROM loads").fetchall()[0][0]
        first = data_end - timedelta(days=nights - 1)
        settings = {name: con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0] for name in ("threads", "memory_limit")}
        sampler.start()
        begun, cpu_begun = sampler.begun, time.process_time()  # events and memory samples on one clock
        note("begin run_backtest")
        result = backtest.run_backtest(con, ruleset, BacktestSettings(), first, data_end, progress=note)
        note("end run_backtest")
        sampler.stop()
        spilled_left = con.execute("SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()").fetchall()[0][0]
    finally:
        sampler.stop()
        con.close()
    total = result.total
    return {
        "first_night": first.isoformat(),
        "last_night": data_end.isoformat(),
        "nights": result.nights,
        "rules": len([r for r in ruleset.rules if r.enabled]),
        "probes_per_chunk": backtest.PROBES_PER_CHUNK,
        "seconds": events[-1][0] - events[0][0],
        "cpu_seconds": events[-1][1] - events[0][1],
        "steps": steps(events, sampler),
        "events": events,
        "peak_rss": peak_rss(),
        "memory": sampler.summary(),
        "spill_left_bytes": spilled_left,
        "duckdb_settings": settings,
        "warning_rows": result.warnings.num_rows if result.warnings is not None else None,
        "total": {k: total.get(k) for k in ("nights_fired", "accounts_flagged", "emails_per_owner_week", "precision", "recall", "median_lead_days")},
    }


PART = re.compile(r"accounts part (\d+) of (\d+)")


def steps(events: list[tuple[float, float, str]], sampler: "Sampler") -> list[dict]:
    """The run's steps from its events: per chunk the signal query (from 'evaluating ... part k' to
    'evaluated in'), then keeping its signals (to the next chunk, or to the end of _signals, which
    also reads every kept signal into Arrow); the lifecycle; account_fates; _figures; and the rest
    of run_backtest (loads, rule checks, hand-offs between the steps)."""
    at = {}
    for seconds, cpu, message in events:
        at.setdefault(message, (seconds, cpu))
    out = []
    chunk_starts = [(s, c, m) for s, c, m in events if PART.search(m)]
    ends = [(s, c) for s, c, m in events if m.startswith("evaluated in")]
    for index, (start, cpu, message) in enumerate(chunk_starts):
        part, parts = PART.search(message).groups()
        query_end = ends[index]
        keep_end = chunk_starts[index + 1][:2] if index + 1 < len(chunk_starts) else at["end _signals"]
        out.append(step(f"signal query, part {part} of {parts}", (start, cpu), query_end, sampler, "query"))
        out.append(step(f"keep signals, part {part} of {parts}" + (" (+ read all into Arrow)" if index + 1 == len(chunk_starts) else ""),
                        query_end, keep_end, sampler, "keep"))
    out.append(step("lifecycle replay (_lifecycle)", at["begin _lifecycle"], at["end _lifecycle"], sampler, "lifecycle"))
    out.append(step("figures: account_fates", at["begin account_fates"], at["end account_fates"], sampler, "figures"))
    out.append(step("figures: _figures (judge, noise)", at["begin _figures"], at["end _figures"], sampler, "figures"))
    begin, end = at["begin run_backtest"], at["end run_backtest"]
    out.append({"step": "rest of run_backtest", "kind": "rest",
                "seconds": end[0] - begin[0] - sum(s["seconds"] for s in out),
                "cpu_seconds": end[1] - begin[1] - sum(s["cpu_seconds"] for s in out)})
    return out


def step(name: str, start: tuple[float, float], end: tuple[float, float], sampler: "Sampler", kind: str) -> dict:
    """A step from (wall, CPU) at its start to (wall, CPU) at its end, with the samples taken meanwhile."""
    return ({"step": name, "kind": kind, "seconds": end[0] - start[0], "cpu_seconds": end[1] - start[1], "start": start[0]}
            | sampler.peaks(start[0], end[0]))


class Sampler:
    """Samples the process's RSS and DuckDB's memory (per watched connection's database) in a thread."""

    def __init__(self, every: float, connections: list) -> None:
        self.every = every
        self.cursors = [c.cursor() for c in connections]  # a cursor is a connection of its own to the same database
        self.samples: list[tuple[float, int, int, int, float]] = []  # (t, rss, duckdb memory, duckdb spill, load)
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.begun = time.perf_counter()
        self._lock = threading.Lock()

    def watch(self, con) -> None:
        with self._lock:
            self.cursors.append(con.cursor())

    def start(self) -> None:
        self.begun = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark(self, message: str) -> None:
        self.marks.append((time.perf_counter() - self.begun, message))

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        memory = spill = 0
        with self._lock:
            cursors = list(self.cursors)
        for cursor in cursors:
            try:
                used, spilled = cursor.execute(
                    "SELECT coalesce(sum(memory_usage_bytes), 0), coalesce(sum(temporary_storage_bytes), 0) FROM duckdb_memory()"
                ).fetchall()[0]
                memory += used
                spill += spilled
            except Exception:  # a closed database (the lifecycle's, after the replay)
                pass
        self.samples.append((time.perf_counter() - self.begun, current_rss(), memory, spill, os.getloadavg()[0]))

    def peaks(self, start: float, end: float) -> dict:
        """The highest samples taken between start and end (seconds since start())."""
        if not self.samples:
            return {}
        # A step shorter than the sampling interval gets the sample nearest its end.
        inside = [s for s in self.samples if start <= s[0] <= end] or [min(self.samples, key=lambda s: abs(s[0] - end))]
        return {"rss": max(s[1] for s in inside), "duckdb_memory": max(s[2] for s in inside), "duckdb_spill": max(s[3] for s in inside),
                "load_mean": statistics.mean(s[4] for s in inside), "samples": len(inside)}

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {
            "samples": len(self.samples),
            "rss_max": max(s[1] for s in self.samples),
            "duckdb_memory_max": max(s[2] for s in self.samples),
            "duckdb_spill_max": max(s[3] for s in self.samples),
            "load_min": min(s[4] for s in self.samples),
            "load_max": max(s[4] for s in self.samples),
            "load_mean": statistics.mean(s[4] for s in self.samples),
        }


# --- helpers --------------------------------------------------------------------------------------


def tracked_changes() -> str | None:
    """A short hash of the uncommitted changes to tracked files (the tree is shared and edited)."""
    try:
        diff = subprocess.run(["git", "diff", "HEAD", "--", "loyalty_engine", "rules"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if not diff:
        return None
    import hashlib

    return hashlib.sha1(diff).hexdigest()[:10]


def save(path: Path, record: dict) -> Path:
    """Append the case's record: on a shared, noisy machine every run is worth keeping."""
    records = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    path.write_text(json.dumps(records + [record], indent=2, default=str) + "\n", encoding="utf-8")
    return path


# --- reporting ------------------------------------------------------------------------------------


def gib(size: float | None) -> str:
    return "?" if size is None else f"{size / 2**30:,.2f} GiB"


def print_night(night: dict) -> None:
    if "error" in night:
        print(f"  one night failed: {night['error'].splitlines()[0]} (after {night['seconds']:.0f} s, peak RSS {mib(night['peak_rss'])})")
        return
    memory = night["memory"]
    print(f"  evaluate_rules, night {night['night']}, {night['rules']} rules: first call {night['first_seconds']:.2f} s, "
          f"then median {night['seconds']:.2f} s ({night['min']:.2f}-{night['max']:.2f}, {night['runs']} calls; CPU {night['cpu_seconds']:.2f} s); "
          f"{night['signals']:,} signals for {night['accounts_signalled']:,} accounts")
    print(f"  peak RSS {mib(night['peak_rss'])}, DuckDB memory up to {mib(memory.get('duckdb_memory_max', 0))}; "
          f"load {night['load_before']:.2f} before, {memory.get('load_min', 0):.2f}-{memory.get('load_max', 0):.2f} during")


def print_backtest(result: dict, night: dict) -> None:
    if "error" in result:
        print(f"  backtest: {result['error'].splitlines()[0]} (after {result['seconds']:.0f} s, peak RSS {mib(result['peak_rss'] or 0)})")
        return
    print(f"  {result['nights']} nights {result['first_night']} .. {result['last_night']}, {result['rules']} rules, "
          f"PROBES_PER_CHUNK {result['probes_per_chunk']:,}")
    print(f"  {'step':<52} {'seconds':>9} {'CPU s':>9} {'RSS max':>11} {'DuckDB mem':>11} {'spilled':>11} {'load':>5}")
    for s in result["steps"]:
        memory = (f"{mib(s['rss']):>11} {mib(s['duckdb_memory']):>11} {mib(s['duckdb_spill']):>11} {s['load_mean']:>5.1f}" if "rss" in s else "")
        print(f"  {s['step']:<52} {s['seconds']:>9.2f} {s['cpu_seconds']:>9.2f} {memory}")
    memory = result["memory"]
    one = night.get("seconds") if "error" not in night else None
    ratio = f" = {result['seconds'] / one:,.0f}x one night's evaluate_rules ({one:.2f} s; a loop of nights: {result['nights']}x)" if one else ""
    print(f"  {'backtest':<52} {result['seconds']:>9.2f} {result['cpu_seconds']:>9.2f}{ratio}")
    print(f"  peak RSS {mib(result['peak_rss'])}; DuckDB memory up to {mib(memory['duckdb_memory_max'])} "
          f"(file and lifecycle databases), spilled up to {mib(memory['duckdb_spill_max'])}; "
          f"load {result['load_before']:.2f} before, {memory['load_min']:.2f}-{memory['load_max']:.2f} during (mean {memory['load_mean']:.2f})")
    total = result["total"]
    print(f"  all live rules: {total['accounts_flagged']:,} accounts flagged, precision {total['precision']}, recall {total['recall']}, "
          f"median lead {total['median_lead_days']} days; {result['warning_rows']:,} replayed warning rows")


if __name__ == "__main__":
    sys.exit(main())
