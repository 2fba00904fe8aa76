"""How long `loyalty run` takes to answer a bad extract (exit 3), as a ratio to `loyalty --version`.

    .venv/bin/python benchmarks/early_answer.py [--accounts 2000] [--repeat 3] [--work DIR]

Builds a project in <work>/early-<accounts>/ (a generated sample, two nights; the first night run
once so that the gate has a night to compare with and Prefect's home is migrated), then for each
bad extract below copies the second night, spoils it and times `loyalty run --date <night>` as a
user runs it (a new process, Prefect's local API when the night really runs). Each case is timed
`--repeat` times beside `loyalty --version`, the floor of any `loyalty` process on this machine
(Python start, typer), and printed as seconds and as a ratio to it. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOYALTY = str(Path(sys.executable).with_name("loyalty"))
FIRST, NIGHT = "2026-11-20", "2026-11-23"
CONFIG = """extracts: {{path: {extracts}}}
database: data/loyalty.duckdb
rules: {rules}
email:
  mode: outbox
  outbox_dir: outbox
  sender: "Fruehwarnung <fw@example.com>"
  ops_recipients: [ops@example.com]
  retries: 0
schedule: {{cron: '0 6 * * *', timezone: Europe/Berlin}}
"""


def cut_off(folder: Path) -> None:
    """orders.csv broken off mid-line: the last line has no line end and too few fields."""
    path = folder / "orders.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3].rsplit(b",", 1)[0])


def bad_amounts(folder: Path) -> None:
    """A third of the orders with a negative amount: the contract fails them, the quarantine share fails the gate."""
    path = folder / "orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    amount = header.index("amount")
    for i in range(1, len(lines), 3):
        cells = lines[i].split(",")
        cells[amount] = "-1"
        lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def missing_column(folder: Path) -> None:
    path = folder / "orders.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("order_date", "datum", 1), encoding="utf-8")


CASES = {"cut-off orders.csv": cut_off, "contract: 1/3 of amounts negative": bad_amounts, "missing column": missing_column}


def timed(args: list[str], cwd: Path, env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([LOYALTY, *args], cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    options = parser.parse_args()
    case_dir = options.work / f"early-{options.accounts}"
    env = {k: v for k, v in os.environ.items() if k not in ("LOYALTY_CONFIG", "PREFECT_API_URL")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    sample = case_dir / "sample"
    if not (sample / NIGHT).exists():
        shutil.rmtree(case_dir, ignore_errors=True)
        subprocess.run([LOYALTY, "generate-sample", "--out", str(sample), "--accounts", str(options.accounts),
                        "--end-date", NIGHT, "--nights", "2"], check=True, env=env, capture_output=True)
    project = case_dir / "project"
    shutil.rmtree(project, ignore_errors=True)
    (project / "extracts").mkdir(parents=True)
    shutil.copytree(sample / FIRST, project / "extracts" / FIRST)
    (project / "config.yaml").write_text(CONFIG.format(extracts="extracts", rules=ROOT / "rules"), encoding="utf-8")
    seconds, code = timed(["run", "--date", FIRST], project, env)
    print(f"first night (warm-up, Prefect's home migrated): {seconds:.1f} s, exit {code}")
    rows = []
    for name, spoil in CASES.items():
        shutil.rmtree(project / "extracts" / NIGHT, ignore_errors=True)
        shutil.copytree(sample / NIGHT, project / "extracts" / NIGHT)
        spoil(project / "extracts" / NIGHT)
        versions, runs, codes = [], [], set()
        for _ in range(options.repeat):
            versions.append(timed(["--version"], project, env)[0])
            seconds, code = timed(["run", "--date", NIGHT], project, env)
            runs.append(seconds)
            codes.add(code)
        version, run = statistics.median(versions), statistics.median(runs)
        rows.append((name, sorted(codes), run, version, run / version))
    print(f"\n{options.accounts} accounts, median of {options.repeat}\n")
    print("| bad extract | exit | `loyalty run` | `loyalty --version` | ratio |")
    print("|---|---|---|---|---|")
    for name, codes, run, version, ratio in rows:
        print(f"| {name} | {','.join(map(str, codes))} | {run:.2f} s | {version:.2f} s | {ratio:.1f} |")


if __name__ == "__main__":
    main()
