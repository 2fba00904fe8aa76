"""The run lock holds from the first second: a second run stops at once naming the holder, a lock
left by a dead run is taken over (saying so), and the flow inside `loyalty run` joins the lock the
command took. Real processes hold the lock; the commands run as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loyalty_engine import api, store
from loyalty_engine.config import load_settings
from loyalty_engine.errors import RunLocked
from tests.support.builders import NIGHT, ROOT, write_config, write_extract
from tests.support.builders import Extract, fading

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
HOLDER = re.compile(r"PID (\d+) \((.*)\), started (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def project(folder: Path, *, cut_off: bool = False):
    """A project with one night of extracts; `cut_off`: its orders.csv broke off mid-line (gate fails)."""
    config = write_config(folder)
    text = config.read_text(encoding="utf-8").replace("  retries: 0\n", "  retries: 0\n  ops_recipients: [ops@example.com]\n")
    config.write_text(text, encoding="utf-8")
    x = Extract()
    x.order_on(x.account("A1"), *fading())
    x.order_on(x.account("A2"), *range(1, 400, 4))  # orders up to last night: the gate passes
    write_extract(folder / "extracts", accounts=x.accounts, orders=x.orders)
    if cut_off:
        orders = folder / "extracts" / NIGHT.isoformat() / "orders.csv"
        data = orders.read_bytes()
        orders.write_bytes(data.rstrip(b"\n").rsplit(b",", 2)[0])
    return load_settings(config)


def hold_lock(database: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-m", "tests.support.lock_holder", str(database)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_held_lock_stops_run_gate_and_release_at_once_naming_the_holder(tmp_path):
    settings = project(tmp_path)
    holder = hold_lock(settings.database)
    said = []
    try:
        for call in (lambda: api.run(settings, progress=said.append), lambda: api.gate(settings, progress=said.append),
                     lambda: api.release(settings, NIGHT, "petra")):  # fmt: skip
            with pytest.raises(RunLocked) as stop:
                call()
            assert stop.value.exit_code == 7
            message = str(stop.value)
            assert message.startswith(f"{settings.database}: another run is using the database: PID {holder.pid} (lock_holder.py ")
            assert message.endswith(" UTC; not starting") and HOLDER.search(message)
    finally:
        holder.kill()
        holder.wait()
    assert said == []  # stopped before anything else: no pre-flight, no "Checking the extracts …"
    assert not settings.database.exists()  # and nothing was recorded


def test_a_lock_left_by_a_dead_run_is_taken_over_saying_so(tmp_path):
    settings = project(tmp_path, cut_off=True)  # the night stops at the gate before Prefect would start
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.lock_path(settings.database).parent.mkdir(parents=True)
    store.lock_path(settings.database).write_text(f"PID {dead.pid} (loyalty run), started 2026-11-23 02:30:00 UTC\n")
    said = []
    with pytest.raises(Exception) as stop:
        api.run(settings, progress=said.append)
    assert getattr(stop.value, "exit_code", None) == 3, stop.value
    assert said[0] == (
        f"{settings.database}: taking over the lock left by PID {dead.pid} (loyalty run), started 2026-11-23 02:30:00 UTC, "
        "which is no longer running"
    )
    assert store.lock_path(settings.database).read_text() == ""  # given back: free, not stale


def test_the_flow_joins_the_lock_its_command_holds_and_nothing_else_does(tmp_path):
    database = tmp_path / "data" / "loyalty.duckdb"
    with store.night_lock(database):
        line = store.lock_path(database).read_text()
        assert HOLDER.match(line) and int(HOLDER.match(line).group(1)) == os.getpid()
        with store.night_lock(database, join=True):  # the flow inside `loyalty run`
            pass
        assert store.lock_path(database).read_text() == line  # still held, by the command
        with pytest.raises(RunLocked):
            with store.night_lock(database):  # anything else (a backtest, `tune`) is refused
                pass
    assert store.lock_path(database).read_text() == ""


def test_a_cut_off_extract_is_answered_without_prefect_exit_3_and_ops_told(tmp_path):
    """`loyalty run` as a user runs it, in a process that cannot import Prefect: the gate's
    verdict comes from the pre-flight, the checks are kept and one ops notice is written."""
    settings = project(tmp_path, cut_off=True)
    code = (
        "import sys; sys.modules['prefect'] = sys.modules['flows.nightly'] = None  # Prefect may not start\n"
        "from loyalty_engine.cli import main\n"
        f"sys.argv = ['loyalty', 'run', '--config', {str(settings.source)!r}]\nmain()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: night {NIGHT} stopped by the gate: orders readable: ") and "orders.csv looks cut off at line" in last
    assert "Prefect" not in result.stderr
    assert [p.name for p in (tmp_path / "outbox" / NIGHT.isoformat()).iterdir()] == ["notice_failed_ops@example.com.eml"]
    gate = api.gate(settings)  # the stored checks are the gate's
    assert gate.exit_code == 3


@pytest.mark.slow  # a whole night under Prefect: about 30 s
def test_two_real_runs_started_together_the_second_stops_at_once(tmp_path):
    settings = project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_CONFIG"}
    first = subprocess.Popen([LOYALTY, "run", "--config", str(settings.source)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lock = store.lock_path(settings.database)
        deadline = time.monotonic() + 10
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        held = lock.read_text()
        assert held.startswith(f"PID {first.pid} (loyalty run --config "), held
        started = time.monotonic()
        second = subprocess.run([LOYALTY, "run", "--config", str(settings.source)], capture_output=True, text=True, env=env, timeout=60)
        took = time.monotonic() - started
        assert first.poll() is None  # the first is still running its night
    finally:
        out, err = first.communicate(timeout=300)
    assert second.returncode == 7
    assert second.stderr == f"error: {settings.database}: another run is using the database: {held.strip()}; not starting\n"
    assert took < 10, took  # at once (a process start), not after the first run's Prefect start
    assert first.returncode == 0, err
    assert "Night 2026-11-23" in out
