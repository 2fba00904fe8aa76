"""Hostile rule texts: each is rejected with a clear file:line:column message before any SQL is
built, and nothing runs (no file is read or written, the database is untouched)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.loader import check_rule_files
from tests.support.builders import ROOT

LOYALTY = str(Path(sys.executable).with_name("loyalty"))

RULE = """\
metrics:
  orders_recent: {{count: orders, window: 90d{where}}}
rules:
  - id: hostile
    severity: high
    when: {when}
    title: t
    message: {message}
    action: a
"""

HOSTILE_WHEN = [
    ("orders_recent > 0; DROP TABLE accounts", "not allowed in when: ;"),
    ("(SELECT count(*) FROM accounts) > 0", "not allowed in when"),
    ("read_csv('/etc/passwd') IS NOT NULL", "not allowed in when: READ_CSV"),
    ("getenv('HOME') = 'x'", "not allowed in when: GETENV"),
    ("orders_recent > 0 AND current_setting('threads') = '2'", "not allowed in when"),
    ("glob('/*') IS NOT NULL", "not allowed in when"),
    ("orders.amount > 0", "unknown metric 'orders.amount'"),
    ("orders_recent::VARCHAR = '1'", "not allowed in when: CAST"),
    ("'a' || 'b' = 'ab'", "not allowed in when"),
    ("orders_recent > 1e999", "is too large"),
    ("pragma version", "not allowed in when: PRAGMA"),
    ("attach 'stolen.db'", "not allowed in when: ATTACH"),
    ("install httpfs", "not allowed in when: INSTALL"),
    ("COPY accounts TO 'canary.csv'", "not allowed in when"),
    ("orders_recent > 0 -- */ ; DROP TABLE accounts; /*", None),  # a comment is dropped: harmless
    ("regexp_matches('a', 'a')", "not allowed in when"),
    ("orders_recent IN (SELECT 1)", "not allowed in when"),
]
HOSTILE_WHERE = [
    ("kind = 'x' OR 1=1) UNION SELECT * FROM accounts --", "cannot be parsed"),
    ("account_id IN (SELECT account_id FROM accounts)", "not allowed in metric 'orders_recent' where"),
    ("read_parquet('x.parquet') IS NULL", "not allowed in metric 'orders_recent' where"),
    ("owner_email = 'x'", "unknown column of orders 'owner_email'"),
    ("amount", "'amount' is a number where a condition belongs"),
]
HOSTILE_TEXTS = [
    ("'{{ orders_recent.__class__ }}'", "may only hold placeholders"),
    ("'{{ cycler.__init__.__globals__.os.popen(\"id\").read() }}'", "may only hold placeholders"),
    ("'{% for x in range(10**9) %}x{% endfor %}'", "may only hold placeholders"),
    ("'{{ orders_recent | format }}'", "unknown filter 'format'"),
]


def _check(tmp_path: Path, when="orders_recent > 0", where="", message="m") -> tuple[list[str], Path]:
    """What `loyalty rules check` finds (the same functions, in process; the CLI itself is tested below)."""
    folder = tmp_path / "rules"
    folder.mkdir()
    path = folder / "hostile.yaml"
    filter_text = f', where: "{where}"' if where else ""
    path.write_text(RULE.format(when=f'"{when}"', where=filter_text, message=message), encoding="utf-8")
    ruleset, problems = check_rule_files([folder])
    prove_rules(ruleset, date(2026, 11, 23), problems)
    return [str(p) for p in problems], path


def _assert_rejected(problems: list[str], path: Path, expected: str, tmp_path: Path):
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:") and expected in problems[0], problems[0]
    assert "\n" not in problems[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["hostile.yaml", "rules"]  # nothing written


@pytest.mark.parametrize("when, expected", HOSTILE_WHEN, ids=[w for w, _ in HOSTILE_WHEN])
def test_hostile_condition_is_rejected_and_runs_nothing(tmp_path, when, expected):
    problems, path = _check(tmp_path, when=when)
    if expected is None:
        assert problems == []
        return
    _assert_rejected(problems, path, expected, tmp_path)


@pytest.mark.parametrize("where, expected", HOSTILE_WHERE, ids=[w for w, _ in HOSTILE_WHERE])
def test_hostile_filter_is_rejected_and_runs_nothing(tmp_path, where, expected):
    problems, path = _check(tmp_path, where=where)
    _assert_rejected(problems, path, expected, tmp_path)


@pytest.mark.parametrize("message, expected", HOSTILE_TEXTS, ids=[m for m, _ in HOSTILE_TEXTS])
def test_hostile_text_is_rejected(tmp_path, message, expected):
    problems, path = _check(tmp_path, message=message)
    _assert_rejected(problems, path, expected, tmp_path)


@pytest.mark.slow  # several CLI processes or a replay: seconds
def test_rules_check_reports_every_problem_with_its_place_and_exits_1(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(RULE.format(when='"oders_recent > 0"', where="", message="m"), encoding="utf-8")
    (folder / "b.yaml").write_text(RULE.format(when='"orders_recent > 0"', where="", message="m").replace("id: hostile", "id: other").replace("90d", "90 days"), encoding="utf-8")
    result = subprocess.run([LOYALTY, "rules", "check", str(folder)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{folder}/a.yaml:6:12: unknown metric 'oders_recent' in when (did you mean 'orders_recent'?) (known: loyalty_group, orders_recent)",
        f"{folder}/b.yaml:2:42: window must look like 90d, 12w, 6m or 1y (at most 100 years), got '90 days'",
        "2 problems in 2 rule files",
    ]
    shipped = subprocess.run([LOYALTY, "rules", "check", str(ROOT / "rules")], capture_output=True, text=True)
    assert shipped.returncode == 0 and "13 rules" in shipped.stdout, shipped.stderr
