"""The judge keeps "in time" and "too late" apart, and names the accounts behind its figures.

A hand-made order book (weekly orders, one gap or a stop per account), loaded into a real DuckDB
file as the nightly job loads it, replayed with a real rule file: every account's first warning
and loss fall on days worked out by hand, so each fate, figure and CSV row is known exactly.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from loyalty_engine import store
from loyalty_engine.backtest import (
    FATES,
    FIGURES,
    FLAGGED_COLUMNS,
    flagged_accounts,
    run_backtest,
    store_figures,
    stored_figures,
    write_flagged,
)
from loyalty_engine.config import BacktestSettings
from loyalty_engine.errors import UserError
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.extracts.validate import validate_night
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import write_extract

END = date(2026, 10, 15)  # the data's last night: losses and kept accounts are judged up to it
FIRST, LAST = date(2025, 9, 1), date(2025, 10, 31)  # the replayed nights
d = date.fromisoformat

# quiet_for_20_days warns 20 days after an account's latest order, bravo_quiet (Bravo only) after
# 10; quiet_for_45_days is in shadow mode. A warning resolves when the account orders again.
RULES = """
metrics:
  quiet: {days_since_latest: orders}
  account_name: {attribute: name}
rules:
  - id: quiet_for_20_days
    severity: high
    when: quiet >= 20
    title: {de: Still, en: Quiet}
    message: m
    action: a
  - id: bravo_quiet
    severity: high
    when: quiet >= 10 and account_name = 'Bravo'
    title: {de: Bravo still, en: Bravo quiet}
    message: m
    action: a
  - id: quiet_for_45_days
    severity: medium
    mode: shadow
    when: quiet >= 45
    title: {de: Lange still, en: Long quiet}
    message: m
    action: a
"""


def weekly(start: str, stop: str) -> list[date]:
    days, day = [], d(start)
    while day <= d(stop):
        days.append(day)
        day += timedelta(days=7)
    return days


# Every account orders weekly on Mondays (from 2024-01-01) in the stretches given. Defaults:
# horizon_days 180, min_lead_days 30; lost = stopped after 4+ orders a year, silent 180 days.
ACCOUNTS = {
    # Gap after 09-01 (warned 09-21), orders again, stops 10-27: warned 36 days ahead.
    "A-INTIME": ("Alpha", "anna@example.com", weekly("2024-01-01", "2025-09-01") + weekly("2025-09-29", "2025-10-27")),
    # Gap after 09-08 (warned 09-28), stops 10-20: warned 22 days ahead, under min_lead_days.
    # bravo_quiet warned it 10 days after 09-08, on 09-18: 32 days ahead, in time.
    "B-SHORT": ("Bravo", "anna@example.com", weekly("2024-01-01", "2025-09-08") + weekly("2025-10-06", "2025-10-20")),
    # Stops 09-15, warned 10-05: 20 days after its loss.
    "C-LATE": ("Charlie", "anna@example.com", weekly("2024-01-01", "2025-09-15")),
    # Left in March 2024 and still listed: lost (silent 180 days) before the range, so its
    # warnings are held back as the nightly job holds back a lost account's (lifecycle/lost.py):
    # never warned, not flagged.
    "D-GONE": ("Delta", "bernd@example.com", weekly("2023-01-02", "2024-03-04")),
    # Gap after 09-22 (warned 10-12), orders on to the end: a false alarm.
    "E-KEPT": ("Echo", "=bernd@example.com", weekly("2024-01-01", "2025-09-22") + weekly("2025-10-20", "2026-10-12")),
    # Gap after 09-15 (warned 10-05), stops 2026-04-13: lost 190 days after the warning.
    "F-LATER": ("Foxtrot", "carla@example.com", weekly("2024-01-01", "2025-09-15") + weekly("2025-10-13", "2026-04-13")),
    # Gap after 10-06 (warned 10-26), stops 2026-04-20, inside the horizon (2026-04-24), but at
    # the end it has been silent 178 days, too few to call it lost: its outcome is not known.
    "G-OPEN": ("Golf", "carla@example.com", weekly("2024-01-01", "2025-10-06") + weekly("2025-10-27", "2026-04-20")),
    # Never quiet: never flagged, not in the file.
    "H-STEADY": ("Hotel", "carla@example.com", weekly("2024-01-01", "2026-10-12")),
}

# (account, rule) -> (first warned, fate, lost_on), worked out from the comments above.
EXPECTED = {
    ("A-INTIME", "quiet_for_20_days"): ("2025-09-21", "lost in time", "2025-10-27"),
    ("B-SHORT", "quiet_for_20_days"): ("2025-09-28", "lost at short notice", "2025-10-20"),
    ("C-LATE", "quiet_for_20_days"): ("2025-10-05", "lost before the warning", "2025-09-15"),
    ("E-KEPT", "quiet_for_20_days"): ("2025-10-12", "not lost", None),
    ("F-LATER", "quiet_for_20_days"): ("2025-10-05", "lost after the horizon", "2026-04-13"),
    ("G-OPEN", "quiet_for_20_days"): ("2025-10-26", "outcome unknown", None),
    ("B-SHORT", "bravo_quiet"): ("2025-09-18", "lost in time", "2025-10-20"),
    # 45 days of silence within the range: only after a stop.
    ("C-LATE", "quiet_for_45_days"): ("2025-10-30", "lost before the warning", "2025-09-15"),
}
# Any live rule: the earliest of quiet_for_20_days and bravo_quiet.
EXPECTED |= {(account, "*"): value for (account, rule), value in EXPECTED.items() if rule == "quiet_for_20_days"}
EXPECTED[("B-SHORT", "*")] = EXPECTED[("B-SHORT", "bravo_quiet")]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """The order book loaded as the nightly job loads END's extract, and the backtest of FIRST … LAST."""
    folder = tmp_path_factory.mktemp("judge")
    accounts = [{"account_id": a, "name": name, "owner_email": owner, "owner_name": "Owner", "status": "active"}
                for a, (name, owner, _) in ACCOUNTS.items()]  # fmt: skip
    orders = [{"order_id": f"{a}-{day}", "account_id": a, "order_date": day.isoformat(), "amount": "100", "currency": "EUR"}
              for a, (_, _, days) in ACCOUNTS.items() for day in days]  # fmt: skip
    write_extract(folder / "extracts", END, accounts=accounts, orders=orders)
    (folder / "rules").mkdir()
    (folder / "rules" / "r.yaml").write_text(RULES, encoding="utf-8")
    database = folder / "loyalty.duckdb"
    with store.connect(database) as con:
        con.execute("BEGIN")
        validate_night(con, stage_extracts(con, folder / "extracts", END), END)
        con.execute("COMMIT")
        result = run_backtest(con, load_rules(folder / "rules"), BacktestSettings(), FIRST, LAST)
    return folder, result


def test_every_fate_on_its_day(replayed):
    _, result = replayed
    found = {(f["account_id"], f["group_id"]): (f["first_warned"].isoformat(), f["fate"], f["lost_on"] and f["lost_on"].isoformat())
             for f in result.flagged}  # fmt: skip
    assert found == EXPECTED
    assert {f["fate"] for f in result.flagged} == set(FATES)


def test_a_warning_after_the_loss_is_too_late_not_a_hit(replayed):
    _, result = replayed
    rules = {r["rule_id"]: r for r in result.rules}
    quiet = rules["quiet_for_20_days"]
    # Known: all but G-OPEN. Hits: A (in time) and B (right, at short notice). C was already
    # lost when first warned: in the denominator, not the numerator, and counted apart. D, lost
    # long before, is held back as lost: never warned.
    assert (quiet["accounts_flagged"], quiet["outcome_known"], quiet["lost_after_warning"], quiet["too_late"]) == (6, 5, 2, 1)
    assert quiet["precision"] == round(2 / 5, 4)
    # Lost from FIRST + 30 to LAST + 30: A (10-27) and B (10-20). Only A was warned 30 days
    # ahead; B's warning was right but late.
    assert (quiet["lost_in_range"], quiet["caught"], quiet["recall"]) == (2, 1, 0.5)
    # Leads of the accounts lost up to the horizon: A +36, B +22, C -20.
    assert quiet["median_lead_days"] == 22

    # The shadow rule warns only after the loss: one account, too late, precision zero.
    shadow = rules["quiet_for_45_days"]
    assert (shadow["accounts_flagged"], shadow["too_late"], shadow["precision"], shadow["caught"]) == (1, 1, 0.0, 0)
    assert (rules["bravo_quiet"]["too_late"], rules["bravo_quiet"]["precision"], rules["bravo_quiet"]["caught"]) == (0, 1.0, 1)

    # Any live rule: B's first warning is bravo_quiet's, in time. Shadow rules do not count.
    total = result.total
    assert (total["accounts_flagged"], total["outcome_known"], total["lost_after_warning"], total["too_late"]) == (6, 5, 2, 1)
    assert (total["caught"], total["recall"]) == (2, 1.0)
    document = result.as_json()
    assert document["total"]["too_late"] == 1 and [r["too_late"] for r in document["rules"]] == [1, 0, 1]


def test_flagged_accounts_as_csv(replayed, tmp_path):
    _, result = replayed
    path = tmp_path / "flagged.csv"
    assert write_flagged(result, path) == len(EXPECTED) == len(flagged_accounts(result))
    # Rules in the file's order, any live rule ('*') last; accounts by id. E-KEPT's owner address
    # starts with '=': a spreadsheet would run it, so it is written as text.
    assert path.read_bytes().decode("utf-8") == (
        "account_id,rule_id,first_warned,owner_email,fate,lost_on\n"
        "A-INTIME,quiet_for_20_days,2025-09-21,anna@example.com,lost in time,2025-10-27\n"
        "B-SHORT,quiet_for_20_days,2025-09-28,anna@example.com,lost at short notice,2025-10-20\n"
        "C-LATE,quiet_for_20_days,2025-10-05,anna@example.com,lost before the warning,2025-09-15\n"
        "E-KEPT,quiet_for_20_days,2025-10-12,'=bernd@example.com,not lost,\n"
        "F-LATER,quiet_for_20_days,2025-10-05,carla@example.com,lost after the horizon,2026-04-13\n"
        "G-OPEN,quiet_for_20_days,2025-10-26,carla@example.com,outcome unknown,\n"
        "B-SHORT,bravo_quiet,2025-09-18,anna@example.com,lost in time,2025-10-20\n"
        "C-LATE,quiet_for_45_days,2025-10-30,anna@example.com,lost before the warning,2025-09-15\n"
        "A-INTIME,*,2025-09-21,anna@example.com,lost in time,2025-10-27\n"
        "B-SHORT,*,2025-09-18,anna@example.com,lost in time,2025-10-20\n"
        "C-LATE,*,2025-10-05,anna@example.com,lost before the warning,2025-09-15\n"
        "E-KEPT,*,2025-10-12,'=bernd@example.com,not lost,\n"
        "F-LATER,*,2025-10-05,carla@example.com,lost after the horizon,2026-04-13\n"
        "G-OPEN,*,2025-10-26,carla@example.com,outcome unknown,\n"
    )
    with path.open(encoding="utf-8", newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == FLAGGED_COLUMNS
    # The figures count the same rows: each rule's too_late is its "lost before the warning" rows.
    rows = flagged_accounts(result)
    for figures in [*result.rules, {"rule_id": "*", **result.total}]:
        mine = [r for r in rows if r["rule_id"] == figures["rule_id"]]
        assert figures["too_late"] == sum(r["fate"] == "lost before the warning" for r in mine)
        assert figures["accounts_flagged"] == len(mine)

    # A folder that is not there: one line, nothing left behind.
    with pytest.raises(UserError, match=r"missing/flagged\.csv: cannot write the flagged accounts: "):
        write_flagged(result, tmp_path / "missing" / "flagged.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flagged.csv"]


OLD_TABLE = """CREATE TABLE backtest_figures (
    ran_at TIMESTAMP NOT NULL, first_night DATE NOT NULL, last_night DATE NOT NULL, rules VARCHAR NOT NULL,
    rule_id VARCHAR, mode VARCHAR, nights_fired INTEGER NOT NULL, accounts_flagged INTEGER NOT NULL,
    emails_per_owner_week DOUBLE, precision DOUBLE, recall DOUBLE, median_lead_days DOUBLE)"""


def test_figures_stored_in_a_table_from_before_too_late(replayed, tmp_path):
    """A database whose backtest_figures predates too_late: its rows still read (too_late None,
    not measured then), and the next backtest adds the column and stores the figure."""
    _, result = replayed
    database = tmp_path / "old.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute(OLD_TABLE)
        con.execute("INSERT INTO backtest_figures VALUES (TIMESTAMP '2026-01-02 03:04:05', DATE '2025-01-01', DATE '2025-06-30', 'rules', NULL, NULL, 10, 5, 0.5, 0.4, 0.6, 70)")
    with store.connect(database, read_only=True) as con:
        (old,) = stored_figures(con)
    assert old["rule_id"] is None and old["precision"] == 0.4 and old["too_late"] is None

    with store.connect(database) as con:  # the nightly schema on top of the old table
        store_figures(con, result, Path("rules"))
    with store.connect(database, read_only=True) as con:
        latest = stored_figures(con)
        older = con.execute("SELECT too_late FROM backtest_figures WHERE ran_at = TIMESTAMP '2026-01-02 03:04:05'").fetchall()
    assert older == [(None,)]
    assert [row["rule_id"] for row in latest] == ["bravo_quiet", "quiet_for_20_days", "quiet_for_45_days", None]
    by_rule = {row["rule_id"]: row for row in latest}
    for figures in [*result.rules, {"rule_id": None, **result.total}]:
        assert {name: by_rule[figures["rule_id"]][name] for name in FIGURES} == {name: figures[name] for name in FIGURES}
    assert by_rule[None]["too_late"] == 1 and by_rule["quiet_for_45_days"]["too_late"] == 1

    # A fresh database (today's schema) and one that never saw a backtest read alike.
    with store.connect(tmp_path / "new.duckdb") as con:
        assert stored_figures(con) == []
        store_figures(con, result, Path("rules"))
        store_figures(con, result, Path("rules"))  # the column is added once
        assert len(stored_figures(con)) == 4
    with duckdb.connect() as con:
        assert stored_figures(con) == []
