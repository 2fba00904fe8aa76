"""The library under the CLI, called as a script would: each command's function returns data
(dataclasses, lists of dicts) from a real DuckDB file and the shipped rules, and prints nothing."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest

from loyalty_engine import api, store
from loyalty_engine.config import Settings, load_settings
from loyalty_engine.errors import UserError
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.extracts.validate import validate_night
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import NIGHT, ROOT, run_nights, write_config, write_extract
from tests.support.builders import Extract, fading, steady


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    """Three evaluated nights of a small extract: A1's orders fall (falling_order_frequency, a
    shadow rule) and it renews for a shorter term tonight (shorter_contracts); B1 orders as usual."""
    folder = tmp_path_factory.mktemp("api")
    x = Extract()
    x.order_on(x.account("A1"), *fading())
    x.contract("A1", "2024-11-23", "2026-11-22")
    x.contract("A1", "2026-11-23", "2027-11-22")
    x.order_on(x.account("B1", owner="bernd"), *steady(30))
    x.orders.append({"order_id": "BAD", "account_id": "B1", "order_date": "2026-11-01", "amount": "-3", "currency": "EUR"})
    write_extract(folder / "extracts", accounts=x.accounts, orders=x.orders, contracts=x.contracts)
    settings = load_settings(write_config(folder))
    with store.connect(settings.database) as con:
        validate_night(con, stage_extracts(con, settings.extracts.path, NIGHT), NIGHT)
        run_nights(con, load_rules(settings.rules), NIGHT - timedelta(days=2), NIGHT - timedelta(days=1), NIGHT)
    return settings


def test_alerts_history_and_quarantine_are_rows(settings, capsys):
    shadow, contract = api.alerts(settings)
    assert (shadow["night"], shadow["account_id"], shadow["rule_id"], shadow["state"], shadow["notice"], shadow["recipient"]) == (
        NIGHT, "A1", "falling_order_frequency", "firing", "new", "anna@example.com")
    assert shadow["evidence"]["orders_recent"] == 2
    assert (contract["rule_id"], contract["state"], contract["notice"]) == ("shorter_contracts", "firing", "new")
    assert [(e["night"], e["rule_id"], e["event"]) for e in api.history(settings, "A1")] == [
        (NIGHT - timedelta(days=2), "falling_order_frequency", "pending (1 night held)"),
        (NIGHT, "falling_order_frequency", "fired, would have been mailed to anna@example.com (shadow rule)"),
        (NIGHT, "shorter_contracts", "fired, mailed to anna@example.com"),
    ]
    [cell] = api.quarantine(settings, table="orders")
    assert (cell["row_key"], cell["column_name"], cell["value"], cell["row_kept_out"]) == ("BAD", "amount", "-3", True)
    with pytest.raises(UserError, match=r"^night 2026-01-01 was never evaluated \(the latest evaluated night is 2026-11-23\)$"):
        api.alerts(settings, date(2026, 1, 1))
    assert capsys.readouterr() == ("", "")  # the api prints nothing


def test_explain_gives_every_rules_verdict_as_of_the_latest_loaded_night(settings):
    explanation = api.explain(settings, "A1")
    explained = explanation.account
    assert explained.night == NIGHT and explanation.warnings is not None
    verdicts = {r.rule.id: r.outcome for r in explained.rules}
    assert verdicts["falling_order_frequency"] == "fires" and verdicts["nps_detractor"].startswith("skipped")
    with pytest.raises(UserError, match="account 'NOPE' is not in the loaded accounts"):
        api.explain(settings, "NOPE")


def test_gate_checks_the_newest_night_and_keeps_nothing(settings):
    notes = []
    report = api.gate(settings, progress=notes.append)
    assert report.night == NIGHT and notes == [f"Checking the extracts of {NIGHT} in {settings.extracts.path} …"]
    assert {c.name for c in report.checks} >= {"presence", "volume", "flood"}
    assert report.exit_code == 0 and not [c for c in report.checks if c.outcome.value in ("fail", "hold")]
    assert api.history(settings, "A1")[-1]["night"] == NIGHT  # rolled back: the night as it was


def test_a_snooze_is_checked_added_listed_and_removed(settings, tmp_path):
    mine = settings.model_copy(update={"snoozes": tmp_path / "snoozes.yaml"})
    for args, message in [
        (("A1", "falling_order_frequenzy", date(2099, 1, 1)), "unknown rule 'falling_order_frequenzy' \\(did you mean 'falling_order_frequency'\\?\\)"),
        (("A1", None, date(2020, 1, 1)), "--until 2020-01-01 lies before the newest evaluated night"),
        (("A1x", None, date(2099, 1, 1)), "unknown account 'A1x' \\(did you mean 'A1'\\?\\)"),
    ]:
        with pytest.raises(UserError, match=message):
            api.snooze(mine, *args, reason="Werksferien", by="anna")
    added = api.snooze(mine, "A1", "falling_order_frequency", date(2099, 1, 1), "Werksferien", "anna")
    assert (added.id, added.account_id, added.until, added.created) == (1, "A1", date(2099, 1, 1), date.today())
    [row] = api.snooze_list(mine)
    assert (row["id"], row["rule"], row["status"], row["by"]) == (1, "falling_order_frequency", "active", "anna")
    assert api.snooze_remove(mine, 1) == added and api.snooze_list(mine) == []


def test_preview_and_report_write_their_files(settings, tmp_path):
    preview = api.preview(settings, "Anna@Example.com", tmp_path / "anna.html")
    assert preview.subject.startswith("Frühwarnung 23.11.2026: 1 neues Warnsignal")
    page = preview.html_file.read_text(encoding="utf-8")
    assert "Kürzere Vertragslaufzeit" in page and "Bestellfrequenz sinkt" not in page  # a shadow rule is never mailed
    assert preview.text_file == tmp_path / "anna.txt"
    with pytest.raises(UserError, match="bernd@example.com gets no digest on 2026-11-23"):
        api.preview(settings, "bernd@example.com", tmp_path / "bernd.html")

    figures = api.report(settings, tmp_path / "report.html")
    assert figures.night == NIGHT and len(figures.accounts) == 2
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(UserError, match="cannot write the report"):
        api.report(settings, tmp_path / "missing" / "report.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anna.html", "anna.txt", "report.html"]  # no partial page left


def test_a_backtest_is_stored_and_listed_beside_the_rules(settings, tmp_path):
    mine = settings.model_copy(update={"database": tmp_path / "loyalty.duckdb"})
    shutil.copy(settings.database, mine.database)
    with pytest.raises(UserError, match="--from 2026-11-23 lies after --to 2026-11-22"):
        api.backtest(mine, NIGHT, NIGHT - timedelta(days=1))
    orders = ROOT / "rules" / "orders.yaml"
    run = api.backtest(mine, NIGHT - timedelta(days=6), NIGHT, compare_with=orders)
    assert run.rule_paths == [mine.rules, orders] and [r.nights for r in run.results] == [7, 7]
    document = run.as_json()
    # A1 is warned by shorter_contracts (contracts.yaml), which orders.yaml alone drops.
    assert document["compare"]["rules_path"] == str(orders) and document["compare"]["dropped"]["accounts"] == 1
    listing = api.rules_list([mine.rules], mine.database)
    assert listing.backtest == (NIGHT - timedelta(days=6), NIGHT)
    flagged = {row["rule_id"]: row["flagged"] for row in listing.rows}
    assert flagged["falling_order_frequency"] == 1 and len(flagged) == 13
    assert api.rules_list([mine.rules]).backtest is None  # without a database: the rules alone


def test_rules_check_and_rules_test_on_the_shipped_rules():
    check = api.rules_check([ROOT / "rules"])
    assert check.problems == [] and len(check.ruleset.rules) == 13 and len(check.files) == len(list((ROOT / "rules").glob("*.yaml"))) // 2
    tests = api.rules_test([ROOT / "rules" / "orders.test.yaml"])
    assert tests.failed == 0 and tests.passed == len(tests.files[0].cases) > 0
