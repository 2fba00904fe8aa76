"""The backtest counts mail as it would really go out: over a short hand-made history, its
digests equal the digests the real nightly stages write to the outbox, night by night, for a
daily and a weekly cadence (the attention budget, waiting warnings, repeats riding along,
resolution-only nights sending nothing, the first night's introduction).

Each night gets its own extract folder holding only what was known that night; the nights run
through run_night, night_mailing, render_digests and deliver_digests into a real outbox; then
the backtest replays the same nights on the last night's data.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from loyalty_engine import store
from loyalty_engine.backtest import run_backtest
from loyalty_engine.config import BacktestSettings, DigestSettings, EmailSettings, ExtractSettings, GateSettings, Settings
from loyalty_engine.mail.delivery import deliver_digests
from loyalty_engine.mail.digest import render_digests
from loyalty_engine.mail.mailing import night_mailing
from loyalty_engine.night import run_night
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import write_extract

FIRST = date(2026, 3, 2)  # a Monday
NIGHTS = [FIRST + timedelta(days=n) for n in range(24)]
HISTORY = date(2026, 1, 5)

RULES = """
metrics:
  quiet: {days_since_latest: orders}
rules:
  - {id: quiet_10, severity: high, when: quiet >= 10, title: Still, message: "{{ quiet }} Tage", action: Anrufen}
  - {id: quiet_20, severity: medium, when: quiet >= 20, title: Lange still, message: "{{ quiet }} Tage", action: Besuchen}
  - {id: quiet_30, severity: critical, when: quiet >= 30, title: Weg, message: "{{ quiet }} Tage", action: Chef}
"""


def _order_days(account: str) -> list[date]:
    """Weekly orders from HISTORY, with each account's own stop, gap or daily rhythm."""
    every_day = [HISTORY + timedelta(days=n) for n in range((NIGHTS[-1] - HISTORY).days + 1)]
    weekly = every_day[::7]
    if account in ("A4", "B3"):
        return every_day
    stops = {"A1": date(2026, 2, 16), "A2": date(2026, 2, 9), "B1": date(2026, 2, 23)}
    if account in stops:
        return [d for d in weekly if d <= stops[account]]
    gaps = {"A3": (date(2026, 2, 24), date(2026, 3, 17)), "B2": (date(2026, 2, 23), date(2026, 3, 13))}
    start, end = gaps[account]
    return [d for d in weekly if not start < d < end] + [end]


ACCOUNTS = {"A1": "anna", "A2": "anna", "A3": "anna", "A4": "anna", "B1": "bert", "B2": "bert", "B3": "bert"}


def _history(root):
    for night in NIGHTS:
        accounts = [{"account_id": a, "name": f"Kunde {a}", "owner_email": f"{o}@example.com", "owner_name": o.title(), "status": "active"}
                    for a, o in ACCOUNTS.items()]  # fmt: skip
        orders = [{"order_id": f"{a}-{d}", "account_id": a, "order_date": d.isoformat(), "amount": "1000", "currency": "EUR"}
                  for a in ACCOUNTS for d in _order_days(a) if d <= night]  # fmt: skip
        write_extract(root / "extracts", night, accounts=accounts, orders=orders)


@pytest.mark.parametrize("digest", [
    DigestSettings(max_new=1, repeat_after_days=3),
    DigestSettings(max_new=1, repeat_after_days=3, cadence="weekly", weekday="wednesday", immediate_severity="critical"),
], ids=["daily", "weekly"])  # fmt: skip
def test_the_backtest_counts_the_digests_the_nightly_stages_write(tmp_path, digest):
    _history(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(RULES, encoding="utf-8")
    ruleset = load_rules(tmp_path / "rules")
    mail = EmailSettings(mode="outbox", outbox_dir=tmp_path / "outbox", sender="Frühwarnung <fw@example.com>")
    settings = Settings(
        extracts=ExtractSettings(path=tmp_path / "extracts"), database=tmp_path / "loyalty.duckdb", rules=tmp_path / "rules",
        email=mail, digest=digest, gate=GateSettings(min_recent_order_share=0),
    )
    written = {}
    with store.connect(settings.database) as con:
        for night in NIGHTS:
            run_night(con, settings, ruleset, [], night)
            mailing = night_mailing(con, ruleset, night, "de", [])
            deliver_digests(con, render_digests(mailing.warnings, night, mail.sender, "de", 15, mailing.portfolios), mail)
            folder = tmp_path / "outbox" / night.isoformat()
            written[night] = sorted(p.stem for p in folder.glob("*.eml")) if folder.exists() else []
        backtest = run_backtest(con, ruleset, BacktestSettings(), NIGHTS[0], NIGHTS[-1], digest=digest)
    replayed = {night: [] for night in NIGHTS}
    rows = backtest.owner_mail.to_pylist()
    for night, recipient in sorted({(r["night"], r["recipient"]) for r in backtest_digests(backtest)}):
        replayed[night].append(recipient)
    assert replayed == written
    sent = sum(len(v) for v in written.values())
    assert backtest.total["digests"] == sent
    assert backtest.total["emails_per_owner_week"] == round(sent / 2 / (len(NIGHTS) / 7), 3)
    # The history exercises what the policy decides: waiting, repeats riding along, deferred resolutions.
    assert {r["notice"] for r in rows} >= {"intro", "new", "waiting", "repeat", "resolved"}
    assert any(r["notice"] == "open" and not r["would_mail"] for r in rows if r["night"] in [n for n in NIGHTS if not written[n]])
    if digest.cadence == "weekly":
        days = {n.weekday() for n, sent in written.items() if sent and n != NIGHTS[0]}
        assert 2 in days  # Wednesdays, and critical warnings at once
    nights_with_mail = [n for n in NIGHTS if written[n]]
    assert len(nights_with_mail) < len(NIGHTS)  # quiet nights send nothing


def backtest_digests(backtest):
    """The replay's digests: (night, recipient) of the owners' real digest stream."""
    return [r for r in backtest.owner_mail.to_pylist() if r["would_mail"]]
