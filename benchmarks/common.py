"""What every benchmark script needs: this tree's project on the path, a fresh process per measured
case, the process's memory, and a description of the machine the figures were taken on.

The scripts run as `python benchmarks/<script>.py`, which puts benchmarks/ on the path (so they
can import this module), not the project: importing this module puts the project first, so the
figures are those of this tree's loyalty_engine, in the scripts and in their spawned children,
which inherit the path.

Why every measured case runs in a freshly spawned process: a process's peak RSS (ru_maxrss) is a
high-water mark, and Linux carries it over exec, so a spawned child's starts from its parent's.
The parent stays small and runs nothing heavy, so each child's peak is its own, not the sample
generator's or the previous case's.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
from datetime import date
from importlib import metadata
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RULES = ROOT / "rules"
WORK = BENCHMARKS / "work"  # samples, databases and figures (git-ignored)
# Large night sets spill to disk (tens of GB at 30 nights x 10k accounts): stop a query at this
# much rather than let DuckDB's default (90% of the free disk) fill a shared machine.
SPILL_LIMIT = "30GB"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- fresh processes ------------------------------------------------------------------------------


def in_fresh_process(function, *args):
    """function(*args) in a newly spawned interpreter, its value returned; a failure ends the benchmark."""
    status, value, _ = _watch(function, args, None, None)
    if status != "ok":
        raise SystemExit(f"{function.__name__} failed: {value}")
    return value


def in_child(function, *args, limit: float | None = None, memory_cap_gib: float | None = None) -> dict:
    """function(*args) (which returns a dict) in a newly spawned interpreter, watched: stopped after
    `limit` seconds or once its RSS passes `memory_cap_gib`. The dict comes back with the 1-minute
    load average before the case began (`load_before`). A stopped or failed case is reported, not
    raised, so the other cases still count: {error, exit_code, seconds, peak_rss, load_before}."""
    status, value, watched = _watch(function, args, limit, memory_cap_gib)
    if status == "ok":
        return value | {"load_before": watched["load_before"]}
    return {"error": value} | watched


def _watch(function, args: tuple, limit: float | None, memory_cap_gib: float | None) -> tuple[str, object, dict]:
    """Run the child, polling it once a second; ("ok" | "stopped" | "failed", its value or why, what was seen)."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sending, function, *args))
    load = os.getloadavg()[0]  # other work on the machine skews the figures: keep a trace of it
    started = time.perf_counter()
    child.start()
    sending.close()
    outcome = None
    highest = 0
    try:
        while outcome is None:
            if receiving.poll(1.0):
                outcome = receiving.recv()
                break
            rss = status_bytes(child.pid, "VmRSS") or 0
            highest = max(highest, rss)
            elapsed = time.perf_counter() - started
            if memory_cap_gib and rss > memory_cap_gib * 2**30:
                outcome = ("stopped", f"RSS {mib(rss)} passed {memory_cap_gib:g} GiB after {elapsed:.0f} s, stopped")
            elif limit and elapsed > limit:
                outcome = ("stopped", f"still running after {limit:.0f} s, stopped")
            elif not child.is_alive() and not receiving.poll(0):  # gone, and not after sending its result
                outcome = ("failed", "the process died")
    except EOFError:  # the child died without a word: killed, most likely for memory
        outcome = ("failed", "the process died")
    high_water = status_bytes(child.pid, "VmHWM")  # read before the kill: a stopped case's memory is a figure too
    if child.is_alive() and outcome[0] != "ok":
        child.kill()
    child.join()
    status, value = outcome
    if status != "ok":
        for leftover in args:  # a stopped DuckDB leaves its spill folder (<file>.tmp) behind; the next case must not count it
            if isinstance(leftover, Path) and leftover.suffix == ".duckdb":
                shutil.rmtree(leftover.with_name(leftover.name + ".tmp"), ignore_errors=True)
    watched = {"exit_code": child.exitcode, "seconds": time.perf_counter() - started,
               "peak_rss": max(high_water or 0, highest), "load_before": load}
    return status, value, watched


def _child(sending, function, *args) -> None:
    try:
        sending.send(("ok", function(*args)))
    except BaseException as error:  # DuckDB's messages run on with advice: the first line says it
        sending.send(("failed", f"{type(error).__name__}: {str(error).strip().splitlines()[0]}\n{traceback.format_exc()}"))


def connect(database: Path):
    """The database as the product opens it, but spilling at most SPILL_LIMIT to disk."""
    from loyalty_engine import store

    con = store.connect(database)
    con.execute(f"SET max_temp_directory_size = '{SPILL_LIMIT}'")
    return con


# --- memory ---------------------------------------------------------------------------------------


def peak_rss() -> int:
    """This process's peak resident set size in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def current_rss() -> int:
    """This process's resident set size now, in bytes (0 where /proc does not say)."""
    return status_bytes(os.getpid(), "VmRSS") or 0


def status_bytes(pid: int, field: str) -> int | None:
    """A memory figure of a running process from /proc/<pid>/status (VmRSS: now, VmHWM: its peak),
    in bytes; None once the process has gone, or off Linux."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) * 1024 if match else None


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


# --- the machine ----------------------------------------------------------------------------------


def describe_machine() -> dict:
    """CPU, cores, RAM, OS, Python, the versions of the packages that matter, and the project's commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        cores = os.cpu_count()
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "commit": git_commit(),
        "cpu": cpu,
        "cores": cores,
        "ram_gib": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {p: package_version(p) for p in ("duckdb", "polars", "pandera", "pyarrow", "numpy", "sqlglot", "jinja2")},
        "date": date.today().isoformat(),
    }


def machine_line(machine: dict, packages: tuple[str, ...]) -> str:
    """describe_machine() in one line, with the versions of the given packages."""
    return ", ".join([f"{machine['cpu']}", f"{machine['cores']} cores", f"{machine['ram_gib']} GiB RAM", f"Python {machine['python']}"]
                     + [f"{package} {machine['versions'][package]}" for package in packages])


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The project's commit, with "+dirty" when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
