"""How fast the ops commands answer, as a ratio to the floor of any process on this machine.

    .venv/bin/python benchmarks/ops.py [--accounts 2000] [--repeat 5] [--work DIR] [--before TREE] [--bytecode none]
    .venv/bin/python benchmarks/ops.py --config path/to/config.yaml --account K00042   # an existing database

Each command is run as a user runs it, a new `loyalty` process each time, --repeat times, and the
median is shown beside two floors measured in the same run, interleaved with the commands so that
both see the same load: `python -c pass` (the interpreter alone) and `loyalty --version` (the
interpreter, typer and the CLI module). The goals of issue 17: `--help` within 0.3 s, the ops
commands within 0.5 s (at 100,000 accounts).

--before TREE times the same commands from another source tree too (say `git worktree add
/tmp/base <commit>`), interleaved in the same loop: before and after under the same load.

Bytecode: an installed package runs from cached .pyc files; a process that must compile every
module from source (PYTHONDONTWRITEBYTECODE set and no .pyc beside the sources, as in a venv
synced with it) spends about as long compiling as running. By default the commands keep their
bytecode under <work>/pycache (PYTHONPYCACHEPREFIX; one untimed pass fills it), as deployed;
--bytecode none times them compiling everything each time.

Without --config, a sample of --accounts accounts (seed 7, last night 2026-11-20) is generated and
one night evaluated through `night.run_night` (no Prefect, no mail) in a fresh process, under
<work>/ops-<accounts>/ (reused when it is there). Nothing of that is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, RULES, WORK, describe_machine, in_fresh_process, machine_line

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
NIGHT = "2026-11-20"
CONFIG = """extracts: {{path: extracts}}
database: loyalty.duckdb
rules: {rules}
email: {{mode: outbox, outbox_dir: outbox, sender: "Fruehwarnung <fw@example.com>"}}
"""


def prepare(folder: Path, accounts: int) -> str:
    """The sample and one evaluated night; returns an account with a warning (for history and explain)."""
    from datetime import date

    from loyalty_engine import store
    from loyalty_engine.config import load_settings
    from loyalty_engine.night import run_night
    from loyalty_engine.rules.loader import load_rules
    from loyalty_engine.sample.generator import generate_sample

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(CONFIG.format(rules=RULES), encoding="utf-8")
    night = date.fromisoformat(NIGHT)
    generate_sample(folder / "extracts", accounts=accounts, seed=7, end_date=night, nights=1)
    settings = load_settings(folder / "config.yaml")
    with store.connect(settings.database) as con:
        run_night(con, settings, load_rules(settings.rules), [], night)
        return con.execute("SELECT min(account_id) FROM warning_nights WHERE night = ?", [night]).fetchall()[0][0]


def timed(args: list[str], env: dict, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # rules check exits 1 on a problem, which is an answer too
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000, help="sample size when no --config is given")
    parser.add_argument("--config", type=Path, help="an existing config.yaml whose database holds an evaluated night")
    parser.add_argument("--account", help="the account for history and explain (default: one with a warning)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median shown)")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--before", type=Path, help="another source tree to time in the same run (the baseline)")
    parser.add_argument("--bytecode", choices=("cached", "none"), default="cached", help="cached: as installed (default); none: compile every module each run")
    args = parser.parse_args(argv)
    if args.config is None:
        folder = args.work.resolve() / f"ops-{args.accounts}"
        marker = folder / "account.txt"
        if not marker.exists():
            print(f"preparing {args.accounts:,} accounts and one night under {folder} ...", flush=True)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(in_fresh_process(prepare, folder, args.accounts) or "", encoding="utf-8")
        config, account = folder / "config.yaml", args.account or marker.read_text(encoding="utf-8").strip()
    else:
        config, account = args.config.resolve(), args.account
        if not account:
            parser.error("--account is needed with --config")
    env = {k: v for k, v in os.environ.items() if k not in ("LOYALTY_CONFIG", "PREFECT_API_URL", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["LOYALTY_CONFIG"] = str(config)
    if args.bytecode == "cached":
        env["PYTHONPYCACHEPREFIX"] = str(args.work.resolve() / "pycache")
    else:  # an empty cache that is never written: nothing read, everything compiled
        env["PYTHONPYCACHEPREFIX"] = str(args.work.resolve() / "pycache-none")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    trees = {"before": args.before.resolve(), "after": ROOT} if args.before else {"": ROOT}
    envs = {tree: {**env, "PYTHONPATH": str(path) + os.pathsep + env.get("PYTHONPATH", "")} for tree, path in trees.items()}
    commands = {
        "loyalty --version": [LOYALTY, "--version"],
        "loyalty --help": [LOYALTY, "--help"],
        "rules list": [LOYALTY, "rules", "list"],
        "rules check": [LOYALTY, "rules", "check"],
        "alerts": [LOYALTY, "alerts"],
        "history": [LOYALTY, "history", account],
        "explain": [LOYALTY, "explain", account],
    }
    runs = {("", "python -c pass"): ([sys.executable, "-c", "pass"], env)}
    runs |= {(tree, name): (command, envs[tree]) for name, command in commands.items() for tree in trees}
    if args.bytecode == "cached":
        for command, run_env in runs.values():  # fills the bytecode cache; not timed
            timed(command, run_env, config.parent)
    machine = describe_machine()
    print(f"machine: {machine_line(machine, ('duckdb',))}; commit {machine['commit']}; bytecode {args.bytecode}; load {os.getloadavg()[0]:.2f}")
    if args.before:
        print(f"before: {trees['before']}; after: {ROOT}")
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(args.repeat):  # interleaved: every command sees the same stretch of load
        for key, (command, run_env) in runs.items():
            times[key].append(timed(command, run_env, config.parent))
    floor = statistics.median(times["", "python -c pass"])

    def cell(key: tuple[str, str]) -> str:
        values = times[key]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) | {statistics.median(values) / floor:.1f}"

    if args.before:
        print("\n| command | before: median s (min-max) | × `python -c pass` | after: median s (min-max) | × `python -c pass` |\n|---|---:|---:|---:|---:|")
        print(f"| `python -c pass` | {cell(('', 'python -c pass'))} | | |")
        for name in commands:
            print(f"| `{name}` | {cell(('before', name))} | {cell(('after', name))} |")
    else:
        print("\n| command | median s (min-max) | × `python -c pass` |\n|---|---:|---:|")
        for tree, name in times:
            print(f"| `{name}` | {cell((tree, name))} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
