"""Recording verdicts in a real DuckDB file: the latest counts, the history stays, "already known"
becomes a snooze, the owners' precision per rule; and the pages' rate limit."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from loyalty_engine import store
from loyalty_engine.feedback.links import Verdict
from loyalty_engine.feedback.pages import RateLimit
from loyalty_engine.feedback.verdicts import MailedWarning, latest_answer, owner_snoozes, record, rest_until, rule_figures, verdict_rows

NIGHT = date(2026, 11, 23)
AT = datetime(2026, 11, 24, 9, 0)


def warning(account_id="K-1", rule_id="falling_order_frequency", owner="anna@example.com", night=NIGHT) -> MailedWarning:
    return MailedWarning(night, account_id, f"Kunde {account_id}", rule_id, "high", {}, owner)


def test_the_latest_answer_counts_and_every_answer_stays(tmp_path):
    with store.connect(tmp_path / "db.duckdb") as con:
        first = record(con, warning(), Verdict.USEFUL, AT)
        assert first is not None and first.snooze_until is None
        assert record(con, warning(), Verdict.USEFUL, AT + timedelta(minutes=1)) is None  # the same again: nothing new
        assert record(con, warning(), Verdict.FALSE_ALARM, AT + timedelta(minutes=2)) is not None
        assert latest_answer(con, warning()).verdict is Verdict.FALSE_ALARM
        rows = verdict_rows(con)
        assert [(r["verdict"], r["counts"]) for r in rows] == [("false_alarm", True), ("useful", False)]
        # Another night's digest, another owner: separate answers.
        record(con, warning(night=NIGHT + timedelta(days=1)), Verdict.USEFUL, AT)
        record(con, warning(owner="bernd@example.com"), Verdict.USEFUL, AT)
        assert len(verdict_rows(con)) == 4 and len(verdict_rows(con, since=date(2030, 1, 1))) == 0
        assert [r["rule_id"] for r in verdict_rows(con, rule="other")] == []


def test_already_known_rests_thirty_days_from_the_answer(tmp_path):
    assert rest_until(NIGHT, date(2026, 11, 25)) == date(2026, 12, 25)
    assert rest_until(NIGHT, date(2026, 11, 1)) == date(2026, 12, 23)  # answered "before" the night: from the night
    with store.connect(tmp_path / "db.duckdb") as con:
        answer = record(con, warning(), Verdict.ALREADY_KNOWN, AT)
        assert answer.snooze_until == date(2026, 12, 24)
        [snooze] = owner_snoozes(con, NIGHT + timedelta(days=1))
        assert (snooze.account_id, snooze.rule_id, snooze.until, snooze.by, snooze.reason) == (
            "K-1", "falling_order_frequency", date(2026, 12, 24), "anna@example.com", "owner's verdict: already known")
        assert str(snooze.id).startswith("V")
        assert owner_snoozes(con, date(2026, 12, 25)) == []  # rested long enough
        record(con, warning(), Verdict.USEFUL, AT + timedelta(hours=1))  # the owner changed their mind
        assert owner_snoozes(con, NIGHT + timedelta(days=1)) == []


def test_the_owners_precision_counts_useful_against_false_alarms(tmp_path):
    with store.connect(tmp_path / "db.duckdb") as con:
        assert rule_figures(con) == {}
        for account, verdict in (("K-1", Verdict.USEFUL), ("K-2", Verdict.USEFUL), ("K-3", Verdict.FALSE_ALARM), ("K-4", Verdict.ALREADY_KNOWN)):
            record(con, warning(account), verdict, AT)
        record(con, warning("K-5", rule_id="nps_detractor"), Verdict.ALREADY_KNOWN, AT)
        figures = rule_figures(con)
    assert figures["falling_order_frequency"] == {"useful": 2, "false_alarm": 1, "already_known": 1, "owners_precision": 2 / 3}
    assert figures["nps_detractor"]["owners_precision"] is None  # nobody said useful or false alarm


def test_the_rate_limit_refills_evenly_per_client():
    now = [0.0]
    limit = RateLimit(per_minute=3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")  # another client has its own bucket
    now[0] += 20  # a third of a minute: one request back
    assert [limit.allow("a") for _ in range(2)] == [True, False]
