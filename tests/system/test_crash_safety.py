"""Runs killed at several points (SIGKILL in a child process: no cleanup, no finally) never lose
state and never send a digest twice, except in the one documented window: after the SMTP
server accepted a message and before the ledger records it, where the re-send carries the same
Message-ID. The next run completes the night exactly as an uninterrupted run would have.
"""

from __future__ import annotations

import csv
import email
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from email import policy
from pathlib import Path

import duckdb
import pytest

from tests.support.builders import ROOT, write_config
from tests.support.crash_child import run
from tests.unit.test_gate import SECOND, rewrite, sample, tonight  # noqa: F401  (the module-scoped sample, first night done)

KILL_POINTS = {
    # name: (function, before/after, which call)
    "mid-load, two tables replaced": ("loyalty_engine.extracts.validate._validate_table", "after", 2),
    "warnings advanced, not committed": ("loyalty_engine.night.advance_warnings", "after", 1),
    "just before the commit": ("loyalty_engine.gate.record_checks", "after", 1),
    "committed, nothing mailed": ("loyalty_engine.night.run_night", "after", 1),
    "first digest accepted by SMTP, not yet recorded": ("loyalty_engine.mail.delivery._mark", "before", 1),
    "one digest recorded, the next prepared": ("loyalty_engine.mail.delivery._mark_prepared", "after", 2),
}


def project(root: Path, sample: Path, smtp: str | None = None) -> Path:  # noqa: F811
    shutil.copytree(sample / "extracts", root / "extracts")
    (root / "data").mkdir()
    shutil.copy(sample / "loyalty.duckdb", root / "data" / "loyalty.duckdb")
    detractors(root)
    return write_config(root, mode="smtp", smtp=smtp) if smtp else write_config(root)


def detractors(root: Path) -> None:
    """News for every owner on the second night (a digest goes out only for something new): two
    of each owner's accounts answer tonight's survey with 0, too few for the flood check."""
    with tonight(root, "accounts").open(encoding="utf-8", newline="") as handle:
        by_owner = defaultdict(list)
        for row in csv.DictReader(handle):
            by_owner[row["owner_email"]].append(row["account_id"])
    chosen = [account for accounts in by_owner.values() for account in sorted(accounts)[:2]]
    rewrite(tonight(root, "surveys"), lambda rows: rows + [
        {"survey_id": f"CRASH-{a}", "account_id": a, "answered_at": SECOND.isoformat(), "nps": "0"} for a in chosen
    ])


def night_state(root: Path) -> dict:
    with duckdb.connect(str(root / "data" / "loyalty.duckdb"), read_only=True) as con:
        return {
            "nights": con.execute("SELECT night FROM nights ORDER BY 1").fetchall(),
            "warnings": con.execute(
                "SELECT * EXCLUDE (night) FROM warning_nights WHERE night = ? ORDER BY account_id, rule_id", [SECOND]
            ).fetchall(),
            "orders": con.execute("SELECT count(*), sum(amount) FROM orders").fetchone(),
            "loads": con.execute("SELECT night, table_name, rows_loaded, rows_quarantined FROM loads ORDER BY 1, 2").fetchall(),
            "ledger": con.execute("SELECT recipient, status FROM deliveries WHERE night = ? ORDER BY 1", [SECOND]).fetchall(),
        }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sample):  # noqa: F811
    """The second night run once without interruption."""
    root = tmp_path_factory.mktemp("reference")
    run(project(root, sample), SECOND)
    state = night_state(root)
    assert len(state["ledger"]) >= 2 and all(status == "sent" for _, status in state["ledger"])
    return state


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_run_killed_at_any_point_loses_nothing_and_the_next_run_completes_the_night(tmp_path, sample, reference, smtp_server, point):  # noqa: F811
    config = project(tmp_path, sample, smtp=f"{{host: {smtp_server.host}, port: {smtp_server.port}}}")
    before = night_state(tmp_path)
    killed = subprocess.run(
        [sys.executable, "-m", "tests.support.crash_child", str(config), SECOND.isoformat(), *map(str, KILL_POINTS[point])],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr  # it really died at the point
    after_kill = night_state(tmp_path)
    if point in ("mid-load, two tables replaced", "warnings advanced, not committed", "just before the commit"):
        assert after_kill == before  # the previous night's state, untouched
    run(config, SECOND)  # the next run
    assert night_state(tmp_path) == reference

    ids = defaultdict(set)
    received = Counter()
    for message in smtp_server.messages:
        parsed = email.message_from_bytes(message.content, policy=policy.default)
        ids[parsed["To"].addresses[0].addr_spec.lower()].add(parsed["Message-ID"])
        received[parsed["To"].addresses[0].addr_spec.lower()] += 1
    assert sorted(received) == [recipient for recipient, _ in reference["ledger"]]  # nobody's digest lost
    assert all(len(message_ids) == 1 for message_ids in ids.values())  # a re-send is the same message
    twice = sorted(r for r, n in received.items() if n > 1)
    if point == "first digest accepted by SMTP, not yet recorded":
        assert twice == [reference["ledger"][0][0]]  # the one window, one message wide
    else:
        assert twice == []
