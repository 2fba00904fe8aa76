"""Shipped rules on hand-made extracts: both sides of each threshold and every window edge."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from loyalty_engine import store
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import NIGHT, ROOT, run_nights, write_extract

D = NIGHT


def ago(days: int) -> str:
    return (D - timedelta(days=days)).isoformat()


class Extract:
    """Builds a small extract account by account."""

    def __init__(self):
        self.accounts, self.orders, self.complaints, self.contracts = [], [], [], []

    def account(self, account_id: str, status: str = "active", owner: str = "anna") -> str:
        self.accounts.append(
            {"account_id": account_id, "name": f"Kunde {account_id}", "owner_email": f"{owner}@example.com",
             "owner_name": owner.title(), "status": status}
        )
        return account_id

    def order_on(self, account_id: str, *days_ago: int) -> None:
        for days in days_ago:
            self.orders.append({"order_id": f"O{len(self.orders) + 1}", "account_id": account_id,
                                "order_date": ago(days), "amount": "100.00", "currency": "EUR"})

    def complaint_on(self, account_id: str, *days_ago: int) -> None:
        for days in days_ago:
            self.complaints.append({"complaint_id": f"C{len(self.complaints) + 1}", "account_id": account_id,
                                    "opened_at": ago(days)})

    def contract(self, account_id: str, start: str, end: str) -> None:
        self.contracts.append({"contract_id": f"K{len(self.contracts) + 1}", "account_id": account_id,
                               "start_date": start, "end_date": end, "annual_value": "1000"})


def baseline(count: int) -> list[int]:
    """`count` orders spread inside the baseline window (D-454 … D-90), away from its edges."""
    return [100 + i * (340 // max(count, 1)) for i in range(count)]


@pytest.fixture(scope="module")
def fired(tmp_path_factory):
    """Evaluate the shipped rules once on an extract with accounts on each side of each threshold."""
    x = Extract()
    # falling_order_frequency: recent < 0.5 × baseline × 90 / 365, baseline ≥ 6
    x.order_on(x.account("F_ZERO_RECENT"), *baseline(8))                      # fires: 0 < 0.99
    x.order_on(x.account("F_ONE_RECENT"), *baseline(8), 10)                   # 1 ≥ 0.99: quiet
    x.order_on(x.account("F_BASELINE_5"), *baseline(5))                       # baseline < 6: quiet
    x.order_on(x.account("F_BASELINE_6"), *baseline(6))                       # baseline = 6: fires
    x.order_on(x.account("F_40_4"), *baseline(40), 1, 2, 3, 4)                # 4 < 4.93: fires
    x.order_on(x.account("F_40_5"), *baseline(40), 1, 2, 3, 4, 5)             # 5 ≥ 4.93: quiet
    x.order_on(x.account("F_EDGE_89"), *baseline(8), 89)                      # D-89 is recent: quiet
    x.order_on(x.account("F_EDGE_90"), *baseline(8), 90)                      # D-90 is baseline tonight, but was
                                                                              # recent last night: for: 2 nights, quiet
    x.order_on(x.account("F_EDGE_91"), *baseline(8), 91)                      # baseline both nights: fires, 9
    x.order_on(x.account("F_EDGE_454"), *baseline(5), 454)                    # D-454 in baseline: 6, fires
    x.order_on(x.account("F_EDGE_455"), *baseline(5), 455)                    # D-455 outside: 5, quiet
    x.order_on(x.account("F_CLOSED", status="closed"), *baseline(8))          # closed account: quiet
    # sudden_zero_complaints: ≥ 3 in D-454 … D-90, none in D-89 … D, ordered within D-364 … D
    for name, complaints, last_order in [
        ("S_THREE", [200, 300, 400], 30),          # fires
        ("S_TWO", [200, 300], 30),                 # only 2: quiet
        ("S_RECENT_89", [200, 300, 400, 89], 30),  # one on D-89: quiet
        ("S_EDGE_90", [200, 300, 90], 30),         # D-90 is baseline: fires
        ("S_EDGE_455", [200, 300, 455], 30),       # D-455 outside: 2, quiet
        ("S_ORDER_365", [200, 300, 400], 365),     # last order D-365, outside the year: quiet
        ("S_ORDER_364", [200, 300, 400], 364),     # last order D-364, inside: fires
    ]:
        x.complaint_on(x.account(name, owner="bernd"), *complaints)
        x.order_on(name, last_order)
    # shorter_contracts: latest started ≤ D runs ≤ 75 % of the months of the one before
    for name, previous, latest in [
        ("K_24_12", ("2024-01-01", "2025-12-31"), ("2026-01-01", "2026-12-31")),  # 12 ≤ 18: fires
        ("K_24_18", ("2024-01-01", "2025-12-31"), ("2026-01-01", "2027-06-30")),  # 18 ≤ 18: fires
        ("K_24_19", ("2024-01-01", "2025-12-31"), ("2026-01-01", "2027-07-31")),  # 19 > 18: quiet
        ("K_12_12", ("2025-01-01", "2025-12-31"), ("2026-01-01", "2026-12-31")),  # same: quiet
    ]:
        x.account(name, owner="carla")
        x.contract(name, *previous)
        x.contract(name, *latest)
    x.contract(x.account("K_ONLY_ONE", owner="carla"), "2026-01-01", "2026-06-30")  # nothing to compare: quiet
    x.account("K_SIGNED_AHEAD", owner="carla")                                     # the shorter one starts tomorrow: quiet
    x.contract("K_SIGNED_AHEAD", "2024-11-24", "2026-11-23")
    x.contract("K_SIGNED_AHEAD", "2026-11-24", "2027-11-23")

    root = tmp_path_factory.mktemp("rules")
    write_extract(root / "extracts", accounts=x.accounts, orders=x.orders, complaints=x.complaints, contracts=x.contracts)
    with store.connect(root / "loyalty.duckdb") as con:
        checks = validate_night(con, stage_extracts(con, root / "extracts", D), D)
        assert all(c.rows_quarantined == 0 for c in checks), checks
        # Two evaluated nights: falling_order_frequency waits `for: 2 nights`.
        run_nights(con, load_rules(ROOT / "rules"), D - timedelta(days=1), D)
        return firing(con, D)


def firing(con, night) -> dict:
    """(account, rule) -> evidence of the warnings firing on the night."""
    rows = con.execute("SELECT account_id, rule_id, evidence FROM warning_nights WHERE night = ? AND state = 'firing'", [night]).fetchall()
    return {(account, rule): json.loads(evidence) for account, rule, evidence in rows}


def accounts_for(fired: dict, rule_id: str) -> set[str]:
    return {account for account, rule in fired if rule == rule_id}


def test_falling_order_frequency_fires_exactly_below_half_the_baseline_rate(fired):
    assert accounts_for(fired, "falling_order_frequency") == {
        "F_ZERO_RECENT", "F_BASELINE_6", "F_40_4", "F_EDGE_91", "F_EDGE_454",
    }


def test_falling_order_frequency_evidence_has_the_numbers(fired):
    evidence = fired[("F_EDGE_91", "falling_order_frequency")]
    assert evidence["orders_recent"] == 0
    assert evidence["orders_baseline"] == 9  # the order on D-91 counts in the baseline
    assert evidence["expected_orders"] == pytest.approx(9 * 90 / 365)
    assert fired[("F_EDGE_454", "falling_order_frequency")]["orders_baseline"] == 6


def test_sudden_zero_complaints_fires_exactly_on_resignation(fired):
    assert accounts_for(fired, "sudden_zero_complaints") == {"S_THREE", "S_EDGE_90", "S_ORDER_364"}
    assert fired[("S_THREE", "sudden_zero_complaints")] == {
        "complaints_baseline": 3, "complaints_recent": 0, "orders_last_year": 1,
    }


def test_shorter_contracts_fires_at_three_quarters_or_less(fired):
    assert accounts_for(fired, "shorter_contracts") == {"K_24_12", "K_24_18"}
    assert fired[("K_24_12", "shorter_contracts")] == {"contract_months_latest": 12, "contract_months_previous": 24}


def test_closed_accounts_get_no_warnings(fired):
    assert not any(account == "F_CLOSED" for account, _ in fired)


def test_re_evaluating_a_night_replaces_its_warnings(tmp_path):
    x = Extract()
    x.order_on(x.account("A"), *baseline(8))
    write_extract(tmp_path / "extracts", accounts=x.accounts, orders=x.orders)
    with store.connect(tmp_path / "db.duckdb") as con:
        for _ in range(2):
            validate_night(con, stage_extracts(con, tmp_path / "extracts", D), D)
            run_nights(con, load_rules(ROOT / "rules"), D)
        assert con.execute("SELECT count(*) FROM signals").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM warning_nights").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 8


def test_an_earlier_night_sees_nothing_that_happened_after_it(tmp_path):
    """Point in time: evaluated 200 days before the extract's night, later orders and a later
    contract do not count."""
    earlier = D - timedelta(days=200)
    x = Extract()
    x.order_on(x.account("P"), *range(300, 460, 20), 100, 70, 40, 20, 10)  # 8 in the earlier baseline, 5 after it
    x.account("Q")
    x.contract("Q", "2023-01-01", "2024-12-31")
    x.contract("Q", "2025-01-01", "2025-12-31")
    x.contract("Q", "2026-06-01", "2028-05-31")  # starts after the earlier night
    write_extract(tmp_path / "extracts", accounts=x.accounts, orders=x.orders, contracts=x.contracts)
    with store.connect(tmp_path / "db.duckdb") as con:
        validate_night(con, stage_extracts(con, tmp_path / "extracts", D), D)
        run_nights(con, load_rules(ROOT / "rules"), earlier - timedelta(days=1), earlier)
        fired = firing(con, earlier)
    assert fired[("P", "falling_order_frequency")]["orders_recent"] == 0
    assert fired[("P", "falling_order_frequency")]["orders_baseline"] == 8
    assert fired[("Q", "shorter_contracts")] == {"contract_months_latest": 12, "contract_months_previous": 24}
    assert ("Q", "smaller_contract_value") not in fired  # no annual values: unknown, not a warning
