"""The shipped catalogue on the sample order book: each rule fires on the accounts built for it,
and on no stable account. The generator records in ground_truth.csv which rules' conditions
hold for each account; the engine, loading the sample like any extract, must agree exactly."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, timedelta

import pytest

from loyalty_engine import store
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.lifecycle.warnings import advance_warnings
from loyalty_engine.rules.evaluate import evaluate_rules
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.sample.generator import RULES, generate_sample
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import ROOT

NIGHT = date(2026, 11, 20)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Ground truth and the engine's firing warnings for one night of a 300-account sample."""
    root = tmp_path_factory.mktemp("catalogue")
    summary = generate_sample(root / "extracts", accounts=300, seed=11, end_date=NIGHT)
    with (root / "extracts" / "ground_truth.csv").open(encoding="utf-8") as handle:
        truth = {row["account_id"]: row for row in csv.DictReader(handle)}
    with store.connect(root / "loyalty.duckdb") as con:
        checks = validate_night(con, stage_extracts(con, root / "extracts", NIGHT), NIGHT)
        assert all(check.rows_quarantined == 0 for check in checks), checks
        active = {account for (account,) in con.execute("SELECT account_id FROM accounts WHERE status <> 'closed'").fetchall()}
        ruleset = load_rules(ROOT / "rules")
        # Two evaluated nights, so that `for: 2 nights` can be met, as the ground truth assumes.
        for night in (NIGHT - timedelta(days=1), NIGHT):
            advance_warnings(con, ruleset, night, evaluate_rules(con, ruleset, night), [], repeat_after_days=7)
        firing = con.execute("SELECT account_id, rule_id FROM warning_nights WHERE night = ? AND state = 'firing'", [NIGHT]).fetchall()
    warned: dict[str, set[str]] = {}
    for account_id, rule_id in firing:
        warned.setdefault(account_id, set()).add(rule_id)
    return summary, truth, active, warned


def test_the_engine_warns_exactly_where_the_ground_truth_says_a_condition_holds(night):
    _, truth, active, warned = night
    expected = {account: set(row["signals"].split()) for account, row in truth.items() if account in active and row["signals"]}
    assert warned == expected


def test_every_rule_fires_on_the_accounts_built_for_it(night):
    _, truth, active, warned = night
    built = [(account, row["scenario"]) for account, row in truth.items() if row["pattern"] == "warning" and account in active]
    assert {rule for _, rule in built} == set(RULES)
    assert [(account, rule) for account, rule in built if rule not in warned.get(account, set())] == []


def test_stable_accounts_get_no_warning(night):
    _, truth, _, warned = night
    stable = {account for account, row in truth.items() if row["pattern"] == "stable"}
    assert len(stable) > len(truth) / 4  # a third or more: the rest drift, are built, or meet a condition by chance
    assert stable & set(warned) == set()


def test_drifting_accounts_are_what_most_warnings_are_about(night):
    _, truth, _, warned = night
    patterns = Counter(truth[account]["pattern"] for account in warned)
    # Most drifting accounts that are still open show some sign.
    drifting_open = [a for a, row in truth.items() if row["pattern"] == "drifting" and a in night[2]]
    assert sum(1 for a in drifting_open if a in warned) > 0.5 * len(drifting_open), patterns


@pytest.mark.xfail(strict=True, reason="issue 14: on a book with real order books' traps the shipped fixed "
                   "thresholds warn more plain accounts by chance (noise) than drifting and built ones together; "
                   "the catalogue is to be retuned (item 5), then this passes and the mark goes")
def test_chance_alarms_stay_fewer_than_real_ones(night):
    _, truth, _, warned = night
    patterns = Counter(truth[account]["pattern"] for account in warned)
    assert patterns["noise"] < patterns["drifting"] + patterns["warning"], patterns
