"""The backtest: a year of nights from one query, the real lifecycle, and figures against real losses."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path
from statistics import median

import duckdb
import pytest

from loyalty_engine import store
from loyalty_engine.backtest import account_fates, flagged_accounts, judge, run_backtest
from loyalty_engine.config import BacktestSettings, DigestSettings
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.rules import compiler
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.sample.generator import generate_sample
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import ROOT, run_nights
from tests.unit.test_cli import loyalty

LAST = date(2026, 11, 20)
RULES = load_rules(ROOT / "rules")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """400 sample accounts over three years, loaded as the nightly job loads the last night."""
    folder = tmp_path_factory.mktemp("backtest")
    sample = generate_sample(folder / "extracts", accounts=400, seed=7, end_date=LAST)
    with store.connect(folder / "loyalty.duckdb") as con:
        con.execute("BEGIN")
        validate_night(con, stage_extracts(con, sample.folder, LAST), LAST)
        con.execute("COMMIT")
    return folder


def copy_of(history: Path, tmp_path: Path) -> Path:
    shutil.copy(history / "loyalty.duckdb", tmp_path / "loyalty.duckdb")
    return tmp_path / "loyalty.duckdb"


# Sums of DOUBLE amounts come out a few ulps apart when the two forms add them in another order,
# and a slope or spread subtracts nearly equal sums (sum of amount x period number - first period
# x sum of amounts, with period numbers near 24,300), so the error scales with those sums, not
# with the result: a revenue trend near 0.111 differed by 2e-9 (2e-8 relative). So a float is
# compared relative to the largest value of its column over the book, the scale of its sums.
SUMMATION_ORDER = 1e-9


@pytest.mark.parametrize("folder", ["rules"])
def test_streamed_metrics_equal_joined_metrics(history, monkeypatch, folder):
    """A year's query sorts rows and probes into one stream; a night's joins rows to nights.
    Both must give every metric the same value, on nights near and far apart, for the shipped
    catalogue and the retuned one (slope_sum, unusual)."""
    nights = [LAST, LAST - timedelta(days=1), LAST - timedelta(days=2), LAST - timedelta(days=45), LAST - timedelta(days=400)]
    rules = load_rules(ROOT / folder)
    with store.connect(history / "loyalty.duckdb", read_only=True) as con:
        results = {}
        for limit in (len(nights), 0):  # everything joined, then everything streamed
            monkeypatch.setattr(compiler, "JOINED_NIGHTS", limit)
            compiled = compiler.compile_rules(rules, nights)
            # The metrics only: a rule's value or condition computed from them by the same SQL can
            # turn a last-bit difference into a whole one (round(x) with x on a half, x < limit).
            result = con.sql(f"SELECT account_id, night, {', '.join(compiled.metrics)} FROM ({compiled.sql})")
            results[limit] = (result.columns, sorted(result.fetchall(), key=lambda row: (row[0], row[1])))
    (columns, joined), (_, streamed) = results[len(nights)], results[0]
    assert len(joined) == len(streamed) > 1000
    scale = {name: max((abs(v) for row in joined for v in [row[i]] if isinstance(v, float)), default=0) for i, name in enumerate(columns)}
    for row_joined, row_streamed in zip(joined, streamed):
        for name, a, b in zip(columns, row_joined, row_streamed):
            close = isinstance(a, float) and isinstance(b, float) and abs(a - b) <= SUMMATION_ORDER * max(scale[name], 1.0)
            assert a == b or close, (name, row_joined[:2], a, b)


def test_replay_matches_a_loop_of_nightly_runs(history, tmp_path):
    """The backtest's warnings, night by night, are the ones the nightly job would have kept
    (accounts made open and customers from the start: the replay cannot know when that changed),
    lost accounts held back and the digest policy applied (no budget here: the replay ranks by
    revenue alone; tests/unit/test_backtest_digests.py checks the budget against the outbox)."""
    first, last = LAST - timedelta(days=20), LAST
    nightly_db = copy_of(history, tmp_path)
    policy = DigestSettings(max_new=10**6)
    with store.connect(nightly_db) as con:
        con.execute("UPDATE accounts SET status = NULL, customer_since = NULL")
        run_nights(con, RULES, *[first + timedelta(days=d) for d in range((last - first).days + 1)], digest=policy, lost=BacktestSettings().lost)
        nightly = set(con.execute("SELECT night, account_id, rule_id, notice FROM warning_nights").fetchall())
        replayed = run_backtest(con, RULES, BacktestSettings(), first, last, digest=policy)
    backtest = {(r["night"], r["account_id"], r["rule_id"], r["notice"]) for r in replayed.owner_mail.to_pylist()}
    assert len(nightly) > 500 and {n for n in nightly if n[3] == "new"}
    assert backtest == nightly


def test_sample_drifting_accounts_are_warned_two_months_ahead(history, tmp_path):
    """The brief's promise on the sample: the accounts that really drifted away (the generator's
    ground truth) are warned, with a median lead of at least 60 days before they stopped."""
    first, last = LAST - timedelta(days=545), LAST - timedelta(days=181)
    with store.connect(copy_of(history, tmp_path)) as con:
        result = run_backtest(con, RULES, BacktestSettings(), first, last)
    warned = {f["account_id"]: f["first_warned"] for f in result.flagged if f["group_id"] == "*"}
    with (history / "extracts" / "ground_truth.csv").open(encoding="utf-8") as handle:
        drifted = {
            row["account_id"]: date.fromisoformat(row["lost_on"])
            for row in csv.DictReader(handle)
            if row["pattern"] == "drifting" and first + timedelta(days=30) <= date.fromisoformat(row["lost_on"]) <= last
        }
    assert len(drifted) >= 20
    leads = [(lost_on - warned[account]).days for account, lost_on in drifted.items() if account in warned]
    assert len(leads) >= 0.9 * len(drifted)
    assert median(leads) >= 60, sorted(leads)
    # The data-defined figures (every loss by the backtest's definition, chance losses of plain
    # accounts included) show the retuned catalogue's trade: fewer, more precise warnings, still
    # early. Measured here (400 accounts, seed 7, 365 nights, live rules, falling_order_frequency
    # in shadow): 126 accounts warned, precision 36 %, recall 47 %, median lead 72 days, 1.2
    # digests per owner and week; the first-shipped catalogue warned 355 at 12 %, recall 93 %,
    # lead 85.5 days, 5.0 digests. Recall is no longer >= 80 % by design: rules speak only while
    # the account still orders (benchmarks/README.md, "Signal quality after the retune").
    assert result.total["recall"] >= 0.45 and result.total["median_lead_days"] >= 60
    assert 0.33 <= result.total["precision"] <= 1 and 0 < result.total["emails_per_owner_week"] <= 2
    # The accounts behind the figures: each rule's rows by fate are what its figures count.
    rows = flagged_accounts(result)
    for figures in [*result.rules, {"rule_id": "*", **result.total}]:
        mine = [r["fate"] for r in rows if r["rule_id"] == figures["rule_id"]]
        assert len(mine) == figures["accounts_flagged"]
        assert mine.count("lost before the warning") == figures["too_late"] <= figures["outcome_known"]
        assert mine.count("lost in time") + mine.count("lost at short notice") == figures["lost_after_warning"]
        assert len(mine) - mine.count("outcome unknown") == figures["outcome_known"]


def test_fates_and_figures_on_hand_made_histories():
    """Each case of the lost definition and of the figures, with numbers worked out by hand."""
    con = duckdb.connect()
    con.execute("CREATE TABLE orders (order_id VARCHAR, account_id VARCHAR, order_date DATE, amount DOUBLE)")
    end = date(2026, 6, 30)
    monthly = lambda account, start, count, amount=100.0: [  # noqa: E731
        (f"{account}-{i}", account, (date(start.year + (start.month - 1 + i) // 12, (start.month - 1 + i) % 12 + 1, 15)), amount)
        for i in range(count)
    ]
    rows = (
        monthly("STOPPED", date(2024, 1, 1), 12)  # last order 2024-12-15, then silence: lost then
        + monthly("RECENT", date(2025, 6, 1), 12)  # last order 2026-05-15: silence too short to know
        + monthly("RARE", date(2024, 1, 1), 3)  # never ordered regularly: not lost by the definition
        + monthly("SHRANK", date(2023, 7, 1), 12, 1000.0) + monthly("SHRANK", date(2024, 7, 1), 24, 100.0)
        + monthly("KEPT", date(2023, 1, 1), 42)
    )
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    settings = BacktestSettings()
    account_fates(con, settings.lost, end)
    fates = {row[0]: row[1:] for row in con.execute("SELECT account_id, lost_on, lost_how FROM account_fates").fetchall()}
    assert fates["STOPPED"] == (date(2024, 12, 15), "stopped")
    assert fates["RECENT"] == (None, None) and fates["RARE"] == (None, None) and fates["KEPT"] == (None, None)
    # A year of 100 a month against a year of 1000 a month: below half at the first month end
    # whose trailing year holds no 1000 month at all... or already when it is under half.
    assert fates["SHRANK"][1] == "shrank" and date(2024, 7, 31) < fates["SHRANK"][0] <= date(2025, 6, 30)

    con.execute("CREATE TABLE warned (group_id VARCHAR, account_id VARCHAR, first_warned DATE)")
    con.executemany(
        "INSERT INTO warned VALUES (?, ?, ?)",
        [
            ("rule", "STOPPED", date(2024, 10, 1)),  # 75 days before its last order: in time
            ("rule", "KEPT", date(2025, 1, 1)),  # still ordering 180 days later: a false alarm
            ("rule", "RECENT", date(2026, 5, 1)),  # horizon not over yet: left out
        ],
    )
    figures = judge(con, "warned", settings, date(2024, 9, 1), date(2025, 3, 1), end)["rule"]
    assert figures["accounts_flagged"] == 3 and figures["outcome_known"] == 2
    assert figures["precision"] == 0.5
    assert figures["median_lead_days"] == 75
    # Lost from 2024-10-01 to 2025-03-31: STOPPED (2024-12-15, warned 75 ≥ 30 days before) and
    # SHRANK if its month end falls inside; only STOPPED was warned.
    lost = 1 + (date(2024, 10, 1) <= fates["SHRANK"][0] <= date(2025, 3, 31))
    assert figures["lost_in_range"] == lost and figures["caught"] == 1 and figures["recall"] == 1 / lost


def test_backtest_command(history, tmp_path):
    """JSON in the issue's shape, --compare's adds and drops, figures in `rules list`, an HTML
    page, and one-line errors."""
    copy_of(history, tmp_path)
    next_rules = tmp_path / "rules-next"
    shutil.copytree(ROOT / "rules", next_rules)
    # The change under review: falling_order_frequency goes live from shadow, and already at a
    # quarter this thin once in five (max_chance 0.2 instead of 0.1): it can only add warnings.
    orders = next_rules / "orders.yaml"
    text = orders.read_text(encoding="utf-8")
    shadow = "  - id: falling_order_frequency\n    severity: high\n    mode: shadow\n"
    assert shadow in text and "params: {min_orders: 6, min_decline: 1, min_t: 2.5, max_chance: 0.1," in text
    text = text.replace(shadow, "  - id: falling_order_frequency\n    severity: high\n", 1)
    orders.write_text(text.replace("min_t: 2.5, max_chance: 0.1,", "min_t: 2.5, max_chance: 0.2,", 1), encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"extracts: {{path: extracts}}\ndatabase: loyalty.duckdb\nrules: {ROOT / 'rules'}\n"
        "email: {mode: outbox, outbox_dir: outbox, sender: fruehwarnung@example.com}\n",
        encoding="utf-8",
    )
    window = ["--from", "2025-07-01", "--to", "2025-08-15", "--config", str(config)]
    result = loyalty("backtest", *window, "--compare", str(next_rules), "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document["rules"][0]) >= {"rule_id", "nights_fired", "accounts_flagged", "emails_per_owner_week", "precision", "too_late", "recall", "median_lead_days"}
    assert [r["rule_id"] for r in document["rules"]] == [r.id for r in RULES.rules]
    assert set(document["total"]) >= {"nights_fired", "accounts_flagged", "emails_per_owner_week", "precision", "too_late", "recall", "median_lead_days"}
    for figures in [*document["rules"], document["total"]]:
        for share in ("precision", "recall"):
            assert figures[share] is None or 0 <= figures[share] <= 1
    added = document["compare"]["added"]
    assert added["accounts"] > 0 and document["compare"]["dropped"]["accounts"] == 0
    assert added["accounts"] == len(added["accounts_list"]) and 0 <= added["lost"] <= added["accounts"]
    assert document["compare"]["total"]["accounts_flagged"] == document["total"]["accounts_flagged"] + added["accounts"]

    listed = loyalty("rules", "list", "--config", str(config), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    by_rule = {row["rule_id"]: row for row in json.loads(listed.stdout)}
    first = document["rules"][0]
    assert by_rule[first["rule_id"]]["precision"] == first["precision"] and by_rule[first["rule_id"]]["flagged"] == first["accounts_flagged"]
    assert "Figures from the backtest of 2025-07-01 … 2025-08-15" in listed.stderr

    page = tmp_path / "backtest.html"
    result = loyalty("backtest", "--from", "2025-08-01", "--to", "2025-08-15", "--config", str(config), "--format", "html", "--out", str(page))
    assert result.returncode == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    assert "<table>" in html and "falling_order_frequency" in html and "http" not in html

    backwards = loyalty("backtest", "--from", "2025-08-31", "--to", "2025-06-01", "--config", str(config))
    assert backwards.returncode == 2 and backwards.stderr.strip() == "error: --from 2025-08-31 lies after --to 2025-06-01"
