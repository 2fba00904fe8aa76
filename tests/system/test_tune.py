"""`loyalty tune` on a small history: one replay of every combination gives each the figures of
a plain backtest with those params written into the rule file; the table, JSON and HTML say
which combinations are on the front and which are the file's; nothing is stored."""

from __future__ import annotations

import json
import re
from datetime import date
from itertools import product
from pathlib import Path

import pytest

from loyalty_engine import api, store
from loyalty_engine.backtest import TUNE_FIGURES, pareto_front, stored_figures
from loyalty_engine.config import load_settings
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.extracts.validate import validate_night
from loyalty_engine.sample.generator import generate_sample
from tests.unit.test_cli import loyalty

LAST = date(2026, 11, 20)
FROM, TO = "2025-05-01", "2025-07-31"
# The tuned rule has `for:` and hysteresis (resolve_when with a param of its own); a second rule
# in the file shows that tuning one rule leaves the others out of its figures.
RULES = """
metrics:
  orders_recent:   {count: orders, window: 90d}
  orders_baseline: {count: orders, window: 365d, ending: 90d ago}
  complaints_month: {count: complaints, window: 30d}
rules:
  - id: fewer_orders
    severity: high
    params: {min_baseline: 6, share: 0.5, back_to: 0.8}
    when: orders_baseline >= min_baseline and orders_recent < share * expected_orders
    resolve_when: orders_recent >= back_to * expected_orders
    for: 2 nights
    values:
      expected_orders: orders_baseline * 90 / 365
    title: Fewer orders
    message: "{{ orders_recent }} orders in 90 days, about {{ expected_orders }} expected"
    action: Call.
  - id: complaints
    severity: medium
    when: complaints_month >= 2
    title: Complaints
    message: "{{ complaints_month }} complaints in 30 days"
    action: Call.
"""
GRID = {"min_baseline": [4, 6], "share": [0.3, 0.5, 0.7]}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """250 sample accounts over three years, loaded as the nightly job loads the last night, and
    a config whose rules are RULES."""
    folder = tmp_path_factory.mktemp("tune")
    sample = generate_sample(folder / "extracts", accounts=250, seed=11, end_date=LAST)
    with store.connect(folder / "loyalty.duckdb") as con:
        con.execute("BEGIN")
        validate_night(con, stage_extracts(con, sample.folder, LAST), LAST)
        con.execute("COMMIT")
    (folder / "rules").mkdir()
    (folder / "rules" / "orders.yaml").write_text(RULES, encoding="utf-8")
    (folder / "config.yaml").write_text(
        "extracts: {path: extracts}\ndatabase: loyalty.duckdb\nrules: rules\n"
        "email: {mode: outbox, outbox_dir: outbox, sender: fruehwarnung@example.com}\n",
        encoding="utf-8",
    )
    return folder


def with_params(params: dict) -> str:
    """RULES with the tuned rule's params line written for these values."""
    line = "params: {" + ", ".join(f"{name}: {value}" for name, value in params.items()) + "}"
    return RULES.replace("params: {min_baseline: 6, share: 0.5, back_to: 0.8}", line, 1)


def test_each_combination_has_the_figures_of_a_backtest_with_its_params(project, tmp_path):
    config = project / "config.yaml"
    varied = [f"--vary=min_baseline={','.join(map(str, GRID['min_baseline']))}", f"--vary=share={','.join(map(str, GRID['share']))}"]
    result = loyalty("tune", "fewer_orders", *varied, "--from", FROM, "--to", TO, "--config", str(config), "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["rule_id"], document["varied"], document["current"]) == ("fewer_orders", ["min_baseline", "share"], {"min_baseline": 6, "share": 0.5, "back_to": 0.8})
    combinations = document["combinations"]
    # The product in the order given (first --vary slowest); the file's values are in it, marked.
    assert [(c["params"]["min_baseline"], c["params"]["share"]) for c in combinations] == list(product(*GRID.values()))
    assert [c["current"] for c in combinations] == [c["params"] == {"min_baseline": 6, "share": 0.5, "back_to": 0.8} for c in combinations]
    assert sum(c["current"] for c in combinations) == 1
    assert [c["pareto"] for c in combinations] == pareto_front(combinations) and any(c["pareto"] for c in combinations)
    # A tune is an exploration: nothing stored.
    with store.connect(project / "loyalty.duckdb", read_only=True) as con:
        assert stored_figures(con) == []

    # The loop of backtests: each combination written into the file, replayed alone.
    settings = load_settings(config)
    for combination in combinations:
        rules = tmp_path / f"{combination['params']['min_baseline']}-{combination['params']['share']}.yaml"
        rules.write_text(with_params(combination["params"]), encoding="utf-8")
        run = api.backtest(settings, date.fromisoformat(FROM), date.fromisoformat(TO), rules)
        [alone] = [r for r in run.results[0].rules if r["rule_id"] == "fewer_orders"]
        assert {name: combination[name] for name in TUNE_FIGURES} == {name: alone[name] for name in TUNE_FIGURES}, combination["params"]
    assert len({c["accounts_flagged"] for c in combinations}) > 2  # the params matter on this history
    assert any(c["precision"] is not None for c in combinations) and any(c["lost_in_range"] for c in combinations)


def test_the_table_marks_the_front_and_the_current_values(project, tmp_path):
    config = project / "config.yaml"
    # share 0.5 is not in the grid: the file's values are replayed too, as the last row.
    result = loyalty("tune", "fewer_orders", "--vary", "share=0.3,0.7", "--from", "2025-06-01", "--to", TO, "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f"fewer_orders ({project / 'rules'}): 61 nights 2025-06-01 … {TO}, ")
    header = lines[1].split()
    assert header[:4] == ["share", "accounts", "flagged", "digests/owner/week"]
    rows = [line for line in lines if re.match(r"^\d", line)]
    assert [row.split()[0] for row in rows] == ["0.3", "0.7", "0.5"]
    assert rows[2].endswith("current") and any("front" in row for row in rows)
    assert "front: no other combination is at least as good on precision, recall and digests/owner/week and better on one (combinations that warn nobody left out)" in result.stdout

    page = tmp_path / "tune.html"
    result = loyalty("tune", "fewer_orders", "--vary", "share=0.3,0.7", "--from", "2025-06-01", "--to", TO, "--config", str(config), "--format", "html", "--out", str(page))
    assert result.returncode == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "http" not in html
    # In digest.language (German by default), the figures as the table writes them.
    assert html.count("<tr class=") == 3 and "<h1>Feinabstimmung fewer_orders: 61 Nächte" in html and "aktuell</td>" in html


def test_a_run_holding_the_database_stops_tune_with_exit_7(project):
    with store.night_lock(project / "loyalty.duckdb"):
        result = loyalty("tune", "fewer_orders", "--vary", "share=0.3", "--from", FROM, "--to", TO, "--config", str(project / "config.yaml"))
    assert result.returncode == 7 and "another run is using the database" in result.stderr
