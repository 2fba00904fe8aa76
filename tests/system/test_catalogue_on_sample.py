"""The shipped catalogue on the sample order book, through a night as the nightly flow runs it:
each rule fires on most of the accounts built for it, on no stable account, and its chance
alarms stay fewer than its real ones."""

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
        # Three evaluated nights, so that `for: 3 nights` can be met, as the ground truth assumes.
        for night in (NIGHT - timedelta(days=2), NIGHT - timedelta(days=1), NIGHT):
            advance_warnings(con, ruleset, night, evaluate_rules(con, ruleset, night), [], repeat_after_days=7)
        firing = con.execute("SELECT account_id, rule_id FROM warning_nights WHERE night = ? AND state = 'firing'", [NIGHT]).fetchall()
    warned: dict[str, set[str]] = {}
    for account_id, rule_id in firing:
        warned.setdefault(account_id, set()).add(rule_id)
    return summary, truth, active, warned


def test_the_engine_warns_where_the_ground_truth_says(night):
    _, truth, active, warned = night
    expected = {account: set(row["signals"].split()) for account, row in truth.items() if account in active and row["signals"]}
    assert warned == expected


def test_every_rule_fires_on_most_accounts_built_for_it(night):
    _, truth, active, warned = night
    built = [(account, row["scenario"]) for account, row in truth.items() if row["pattern"] == "warning" and account in active]
    assert {rule for _, rule in built} == set(RULES)
    missed = Counter(rule for account, rule in built if rule not in warned.get(account, set()))
    assert sum(missed.values()) <= 0.15 * len(built), missed


def test_stable_accounts_get_no_warning(night):
    _, truth, _, warned = night
    stable = {account for account, row in truth.items() if row["pattern"] == "stable"}
    assert len(stable) > len(truth) / 4  # a third or more: the rest drift, are built, or meet a condition by chance
    assert stable & set(warned) == set()


def test_drifting_accounts_are_warned_far_more_often_than_plain_ones(night):
    _, truth, active, warned = night
    share = {}
    for kind, patterns in (("drifting", ("drifting",)), ("plain", ("stable", "noise"))):
        accounts = [a for a, row in truth.items() if row["pattern"] in patterns and a in active]
        share[kind] = sum(1 for a in accounts if a in warned) / len(accounts)
    assert share["drifting"] > 3 * share["plain"], share


def test_chance_alarms_stay_fewer_than_real_ones(night):
    _, truth, _, warned = night
    patterns = Counter(truth[account]["pattern"] for account in warned)
    assert patterns["noise"] < patterns["drifting"] + patterns["warning"], patterns
