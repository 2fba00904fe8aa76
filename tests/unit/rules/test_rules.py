"""Shipped rules on hand-made extracts: both sides of each threshold and every window edge."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from loyalty_engine import store
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import NIGHT, ROOT, Extract, ago, every, fading, run_nights, steady, write_extract

D = NIGHT


def shifted(day, months: int):
    """The same day of the month `months` later (or earlier); the days used here exist in every month."""
    y, m = divmod(day.month - 1 + months, 12)
    return day.replace(year=day.year + y, month=m + 1)


def renewal(account_id: str, x: "Extract", previous_months: int, latest_months: int, started_days_ago: int) -> None:
    """Two contracts back to back, the latest starting `started_days_ago` days before the night."""
    start = D - timedelta(days=started_days_ago)
    x.contract(account_id, shifted(start, -previous_months).isoformat(), (start - timedelta(days=1)).isoformat())
    x.contract(account_id, start.isoformat(), (shifted(start, latest_months) - timedelta(days=1)).isoformat())


NIGHTS = (D - timedelta(days=2), D - timedelta(days=1), D)  # the rules with `for: 3 nights` can fire on D


@pytest.fixture(scope="module")
def fired(tmp_path_factory):
    """Evaluate the shipped rules on three nights of an extract with accounts on each side of
    each threshold (the thresholds' meaning is in rules/*.yaml; their figures in docs/rules.md)."""
    x = Extract()
    # falling_order_frequency: a clear year-long fall, a thin quarter, still ordering (≤ 60 days)
    x.order_on(x.account("F_FADING"), *fading())                            # fires
    x.order_on(x.account("F_STEADY_WEEKLY"), *steady(7))                    # no fall: quiet
    x.order_on(x.account("F_STEADY_MONTHLY"), *steady(30))                  # no fall: quiet
    x.order_on(x.account("F_SILENT_60"), *fading(last=60))                  # last order 60 days ago: fires
    x.order_on(x.account("F_SILENT_61"), *fading(last=61))                  # 61 days: long gone is not news, quiet
    x.order_on(x.account("F_FEW"), *every(70, 380, 30))                     # 5 orders a year (< 6): quiet
    x.order_on(x.account("F_CLOSED", status="closed"), *fading())           # closed account: quiet
    # sudden_zero_complaints: ≥ 5 in D-454 … D-90, none in D-89 … D, a quiet this account has by
    # chance less than once in five quarters, still ordering within 60 days
    monthly = every(30, 450, 100)                                           # 12 complaints, one a month
    for name, complaints, last_order in [
        ("S_MONTHLY", monthly, 30),                    # fires: 0 where about 3 are expected
        ("S_FOUR", [400, 300, 200, 100], 30),          # 4 < 5: quiet
        ("S_RECENT_89", monthly + [89], 30),           # one on D-89 (the recent window): quiet
        ("S_EDGE_91", monthly[1:] + [91], 30),         # in the recent window two nights ago (`for: 3 nights`): quiet
        ("S_EDGE_92", monthly[1:] + [92], 30),         # in the baseline on all three nights: fires
        ("S_ORDER_61", monthly, 61),                   # not ordering for 61 days: quiet
    ]:
        x.complaint_on(x.account(name, owner="bernd"), *complaints)
        x.order_on(name, last_order)
    # shorter_contracts: the latest runs ≤ 75 % of the months of the one before, renewed ≤ 60 days ago
    for name, previous, latest, started in [
        ("K_24_12", 24, 12, 30),    # 12 ≤ 18: fires
        ("K_24_18", 24, 18, 30),    # 18 ≤ 18: fires
        ("K_24_19", 24, 19, 30),    # 19 > 18: quiet
        ("K_12_12", 12, 12, 30),    # same: quiet
        ("K_AGE_60", 24, 12, 60),   # renewed 60 days ago: fires
        ("K_AGE_61", 24, 12, 61),   # 61 days ago: old news, quiet
        ("K_AHEAD", 24, 12, -1),    # the shorter one starts tomorrow: quiet
    ]:
        renewal(x.account(name, owner="carla"), x, previous, latest, started)
    x.contract(x.account("K_ONLY_ONE", owner="carla"), ago(30), (D + timedelta(days=150)).isoformat())  # nothing to compare

    root = tmp_path_factory.mktemp("rules")
    write_extract(root / "extracts", accounts=x.accounts, orders=x.orders, complaints=x.complaints, contracts=x.contracts)
    with store.connect(root / "loyalty.duckdb") as con:
        checks = validate_night(con, stage_extracts(con, root / "extracts", D), D)
        assert all(c.rows_quarantined == 0 for c in checks), checks
        run_nights(con, load_rules(ROOT / "rules"), *NIGHTS)
        return firing(con, D)


def firing(con, night) -> dict:
    """(account, rule) -> evidence of the warnings firing on the night."""
    rows = con.execute("SELECT account_id, rule_id, evidence FROM warning_nights WHERE night = ? AND state = 'firing'", [night]).fetchall()
    return {(account, rule): json.loads(evidence) for account, rule, evidence in rows}


def accounts_for(fired: dict, rule_id: str) -> set[str]:
    return {account for account, rule in fired if rule == rule_id}


def test_falling_order_frequency_fires_on_a_clear_fall_while_the_account_still_orders(fired):
    assert accounts_for(fired, "falling_order_frequency") == {"F_FADING", "F_SILENT_60"}


def test_falling_order_frequency_evidence_has_the_numbers(fired):
    evidence = fired[("F_FADING", "falling_order_frequency")]
    assert evidence["orders_recent"] == 2  # monthly: D-60 and D-30 (D-90 lies before the 90 days)
    assert evidence["days_since_order"] == 30
    assert evidence["orders_unusual"] < 0.1
    assert evidence["monthly_fall"] > 0


def test_sudden_zero_complaints_fires_on_a_quiet_quarter_unusual_for_the_account(fired):
    assert accounts_for(fired, "sudden_zero_complaints") == {"S_MONTHLY", "S_EDGE_92"}
    evidence = fired[("S_MONTHLY", "sudden_zero_complaints")]
    assert (evidence["complaints_baseline"], evidence["complaints_recent"]) == (12, 0)
    assert evidence["complaints_quiet"] < 0.2


def test_shorter_contracts_fires_at_three_quarters_or_less_within_sixty_days_of_renewal(fired):
    assert accounts_for(fired, "shorter_contracts") == {"K_24_12", "K_24_18", "K_AGE_60"}
    evidence = fired[("K_24_12", "shorter_contracts")]
    assert (evidence["contract_months_latest"], evidence["contract_months_previous"], evidence["days_since_renewal"]) == (12, 24, 30)


def test_closed_accounts_get_no_warnings(fired):
    assert not any(account == "F_CLOSED" for account, _ in fired)


def test_re_evaluating_a_night_replaces_its_warnings(tmp_path):
    x = Extract()
    x.order_on(x.account("A"), *fading())
    write_extract(tmp_path / "extracts", accounts=x.accounts, orders=x.orders)
    with store.connect(tmp_path / "db.duckdb") as con:
        for _ in range(2):
            validate_night(con, stage_extracts(con, tmp_path / "extracts", D), D)
            run_nights(con, load_rules(ROOT / "rules"), D)
        assert con.execute("SELECT count(*) FROM signals").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM warning_nights").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == len(fading())


def test_an_earlier_night_sees_nothing_that_happened_after_it(tmp_path):
    """Point in time: evaluated 200 days before the extract's night, later orders and a later
    contract do not count."""
    earlier = D - timedelta(days=200)
    x = Extract()
    x.order_on(x.account("P"), *(days + 200 for days in fading()), *every(7, 190, 5))  # fading then, weekly again after
    x.account("Q")
    x.contract("Q", "2024-04-01", "2026-03-31")
    x.contract("Q", "2026-04-01", "2027-03-31")  # 36 days before the earlier night
    x.contract("Q", "2026-06-01", "2029-05-31")  # starts after it
    write_extract(tmp_path / "extracts", accounts=x.accounts, orders=x.orders, contracts=x.contracts)
    with store.connect(tmp_path / "db.duckdb") as con:
        validate_night(con, stage_extracts(con, tmp_path / "extracts", D), D)
        run_nights(con, load_rules(ROOT / "rules"), *(earlier - timedelta(days=n) for n in (2, 1, 0)))
        fired = firing(con, earlier)
    assert fired[("P", "falling_order_frequency")]["orders_recent"] == 2
    assert fired[("P", "falling_order_frequency")]["days_since_order"] == 30
    assert fired[("Q", "shorter_contracts")] == {"contract_months_latest": 12, "contract_months_previous": 24, "days_since_renewal": 36, "max_age": 60, "share": 0.75}
    assert ("Q", "smaller_contract_value") not in fired  # no annual values: unknown, not a warning
