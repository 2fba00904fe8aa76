"""Tonight and the pre-flight: one definition of the night for `run`, `gate`, `release` and the
flow, and every reason a night cannot start answered before anything is touched."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from loyalty_engine.config import Settings, load_settings
from loyalty_engine.errors import RuleError
from loyalty_engine.preflight import preflight, today, tonight
from tests.support.builders import NIGHT, ROOT, write_config, write_extract


def project(folder: Path, timezone: str = "Europe/Berlin", rules: Path = ROOT / "rules") -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder)
    text = config.read_text(encoding="utf-8").replace("Europe/Berlin", timezone).replace(f"rules: {ROOT / 'rules'}", f"rules: {rules}")
    config.write_text(text, encoding="utf-8")
    return load_settings(config)


def test_tonight_is_the_given_date_else_the_newest_folder_else_today_on_the_schedules_clock(tmp_path):
    settings = project(tmp_path)
    assert tonight(settings) == today(settings) == datetime.now(ZoneInfo("Europe/Berlin")).date()  # no extracts yet
    (tmp_path / "extracts").mkdir()
    (tmp_path / "extracts" / "orders.csv").write_text("order_id\n", encoding="utf-8")
    assert tonight(settings) == today(settings)  # extracts lying flat carry no date
    for name in ("2026-11-20", NIGHT.isoformat(), "2026-02-30", "2027-01-01.old"):
        (tmp_path / "extracts" / name).mkdir()
    assert tonight(settings) == NIGHT  # the newest real date; 2026-02-30 only looks like one
    assert tonight(settings, date(2026, 11, 20)) == date(2026, 11, 20)


def test_today_is_the_date_in_the_schedules_time_zone_not_the_machines(tmp_path):
    # 25 hours apart: whatever the hour, Kiritimati's date is a day ahead of Pago Pago's.
    ahead = today(project(tmp_path / "a", timezone="Pacific/Kiritimati"))
    behind = today(project(tmp_path / "b", timezone="Pacific/Pago_Pago"))
    assert ahead > behind


def test_the_preflight_proves_the_rules_against_tonight_and_loads_the_snoozes(tmp_path):
    settings = project(tmp_path)
    write_extract(tmp_path / "extracts")
    settings.snoozes.write_text(
        "snoozes:\n  - id: 1\n    account: A1\n    rule: falling_order_frequency\n    until: 2099-12-31\n    reason: Werksferien\n",
        encoding="utf-8",
    )
    checked = preflight(settings)
    assert checked.night == NIGHT
    assert len(checked.ruleset.rules) == 13
    assert [(s.account_id, s.rule_id) for s in checked.snoozes] == [("A1", "falling_order_frequency")]
    # Chosen as the newest folder, NIGHT lies this many days behind today: the flow warns past one.
    assert checked.days_behind == (today(settings) - NIGHT).days
    assert preflight(settings, NIGHT).days_behind == 0  # a night asked for is never late


def test_a_broken_rule_stops_the_preflight_before_the_database_is_touched(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ROOT / "rules" / "orders.yaml").read_text(encoding="utf-8")
    (rules / "orders.yaml").write_text(text.replace("orders_last_year >= min_orders", "orders_last_yaer >= min_orders", 1), encoding="utf-8")
    settings = project(tmp_path, rules=rules)
    with pytest.raises(RuleError, match=r"orders.yaml:33:11: unknown metric 'orders_last_yaer' in when") as stop:
        preflight(settings)
    assert stop.value.exit_code == 4
    assert not settings.database.parent.exists()


def test_a_bad_snoozes_file_stops_the_preflight(tmp_path):
    settings = project(tmp_path)
    settings.snoozes.write_text("snoozes:\n  - id: 1\n    account: A1\n    until: 2099-12-31\n", encoding="utf-8")
    with pytest.raises(RuleError, match="snooze is missing required key 'reason'"):
        preflight(settings)
