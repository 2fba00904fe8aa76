"""A night run in a child process that kills itself (SIGKILL, no cleanup) at a chosen point.

    python -m tests.support.crash_child CONFIG NIGHT [MODULE.FUNCTION before|after N]

Runs the stages in the flow's order (flows/nightly.py: lock, the night's transaction, render,
deliver) without Prefect, whose start would dwarf the night. The kill point wraps the named
function; the N-th call kills the process before or after the original runs.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from datetime import date
from pathlib import Path

from loyalty_engine import night, store
from loyalty_engine.mail import delivery as deliver
from loyalty_engine.config import load_settings
from loyalty_engine.mail.mailing import night_digests
from loyalty_engine.rules.loader import load_rules


def run(config: Path, day: date) -> None:
    settings = load_settings(config)
    ruleset = load_rules(settings.rules)
    with store.night_lock(settings.database):
        with store.connect(settings.database) as con:
            night.run_night(con, settings, ruleset, [], day)
        with store.connect(settings.database) as con:
            _, digests = night_digests(con, settings, ruleset, day)
        with store.connect(settings.database) as con:
            earlier = deliver.undelivered_earlier(con, day, settings.digest.repeat_after_days)
            report = deliver.deliver_digests(con, earlier + digests, settings.email)
    if report.failed:
        raise SystemExit(f"not delivered: {report.failed}")


def kill_at(target: str, when: str, nth: int) -> None:
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original, calls = getattr(module, name), 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if when == "before" and calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if when == "after" and calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, name, wrapper)


if __name__ == "__main__":
    if len(sys.argv) == 6:
        kill_at(sys.argv[3], sys.argv[4], int(sys.argv[5]))
    run(Path(sys.argv[1]), date.fromisoformat(sys.argv[2]))
