"""The portfolio report's figures on a hand-made database: the retention rate (retention.py, the
same SQL as the digest header) never above 100 %, reactivated customers counted as won and shown
apart, and the count behind every share of the backtest."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest

from loyalty_engine import store
from loyalty_engine.mail.mailing import PORTFOLIO
from loyalty_engine.pages.portfolio import Figures, Month, _retention, render
from loyalty_engine.retention import retention_rate

NIGHT = date(2026, 6, 30)


@pytest.fixture
def con(tmp_path):
    with store.connect(tmp_path / "loyalty.duckdb") as con:
        con.execute("CREATE TABLE accounts (account_id VARCHAR, name VARCHAR, owner_email VARCHAR, owner_name VARCHAR, status VARCHAR)")
        con.execute("CREATE TABLE orders (order_id VARCHAR, account_id VARCHAR, order_date DATE, amount DOUBLE, currency VARCHAR)")
        yield con


def book(con, orders: dict[str, list[int]], closed: set[str] = frozenset()) -> None:
    """Accounts (one owner) with orders on the given days before NIGHT."""
    for account, days in orders.items():
        con.execute("INSERT INTO accounts VALUES (?, ?, 'owner@example.com', 'Owner', ?)", [account, account, "closed" if account in closed else "active"])
        for n, back in enumerate(days):
            con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}-{n}", account, NIGHT - timedelta(days=back)])


def digest_header(con) -> tuple[int, int, int]:
    """The owner's (at_start, at_end, won) as the digest header counts them."""
    row = con.execute(PORTFOLIO, {"night": NIGHT, "shadow": "shadow"}).fetchone()
    return row[3], row[4], row[5]


def test_reactivated_customers_count_as_won_so_the_rate_stays_at_most_100_percent(con):
    book(
        con,
        {
            "kept": [500, 100],  # a customer at the start and at the end
            "lost": [500],  # at the start only
            "lost_closed": [400],  # closed since: it was a customer at the start all the same
            "new": [30],  # first order ever in the year
            "back": [800, 50],  # no order in the year before the start, one in it: reactivated
            "back_too": [900, 20],
        },
        closed={"lost_closed"},
    )
    _, year, _ = _retention(con, NIGHT)
    assert (year.at_start, year.at_end, year.won, year.reactivated) == (3, 4, 3, 2)
    assert (year.kept, year.new) == (1, 1)
    assert year.rate == pytest.approx(1 / 3)  # one of three customers at the start is still one
    # The digest header counts the same customers, so it shows the same figure.
    assert digest_header(con) == (year.at_start, year.at_end, year.won)
    assert retention_rate(*digest_header(con)) == year.rate


def test_more_returns_than_losses_do_not_make_retention_exceed_100_percent(con):
    # One customer at the start, kept; three back after a pause: counted as new customers
    # (at the end, none at the start), the rate would be 4 / 1 = 400 %.
    book(con, {"kept": [400, 10], "back1": [800, 10], "back2": [800, 30], "back3": [1000, 60]})
    _, year, _ = _retention(con, NIGHT)
    assert (year.at_start, year.at_end, year.won, year.reactivated, year.kept) == (1, 4, 3, 3, 1)
    assert year.rate == 1.0


def test_no_month_above_100_percent_on_a_random_book(con):
    rng = random.Random(7)
    book(con, {f"a{i}": sorted(rng.sample(range(0, 1200), rng.randint(1, 6))) for i in range(150)}, closed={"a3", "a40"})
    months, year, _ = _retention(con, NIGHT)
    for period in [*months, year]:
        assert period.at_end - period.won <= period.at_start, period
        assert 0 <= period.reactivated <= period.won
        if period.rate is not None:
            assert 0 <= period.rate <= 1
    # Written out once more from the orders: kept = customers at the start who ordered in the year up to the end.
    kept = con.execute(
        """SELECT count(*) FROM accounts a WHERE
           EXISTS (SELECT 1 FROM orders o WHERE o.account_id = a.account_id AND o.order_date > $d - 730 AND o.order_date <= $d - 365)
           AND EXISTS (SELECT 1 FROM orders o WHERE o.account_id = a.account_id AND o.order_date > $d - 365 AND o.order_date <= $d)""",
        {"d": NIGHT},
    ).fetchone()[0]
    assert year.kept == kept


def page(backtest_lines: list[dict], language: str, year: Month | None = None) -> str:
    from loyalty_engine.pages.portfolio import Backtest

    year = year or Month(NIGHT - timedelta(days=365), NIGHT, 58, 55, 2, 0, True)
    figures = Figures(
        night=NIGHT, warnings_night=NIGHT, accounts=[], months=[], year=year, history_start=date(2023, 1, 1),
        rules=[], owners=[], warning_nights=[NIGHT], gate=[],
        backtest=Backtest(datetime(2026, 6, 1, 8), date(2025, 6, 1), date(2025, 12, 31), "rules", backtest_lines),
    )
    return render(figures, language).replace("\xa0", " ")


def line(rule_id, **counts) -> dict:
    return {
        "rule_id": rule_id, "mode": "live", "nights_fired": 3, "accounts_flagged": 5, "emails_per_owner_week": 0.1,
        "precision": 0.6, "too_late": 1, "recall": 1.0, "median_lead_days": -4.0, **counts,
    }


def test_every_share_has_its_count_and_the_figures_are_explained():
    counts = {"outcome_known": 5, "lost_after_warning": 3, "lost_in_range": 5, "caught": 5}
    german = page([line("r1", **counts), line(None, **counts)], "de")
    assert german.count("100 % (5 von 5)") == 2 and german.count("60 % (3 von 5)") == 2
    assert ">-4<" in german and "negativ heißt" in german
    assert "(214 Nächte nachgespielt)" in german  # 1 June to 31 December, every night
    assert "53 von 58 Kunden geblieben; 2 neu, 0 zurückgewonnen" in german
    assert "in 1 ausgewerteten Nacht" in german
    assert "¹" not in german
    english = page([line("r1", **counts), line(None, **counts)], "en")
    assert "100% (5 of 5)" in english and "60% (3 of 5)" in english and "negative means" in english


def test_a_backtest_without_counts_says_so():
    # Rows stored before the counts were: the share alone, marked, and a note that says why.
    german = page([line("r1"), line(None)], "de")
    assert "100 %¹" in german and "nur die Anteile gespeichert" in german


def test_no_path_on_the_page():
    for language in ("de", "en"):
        text = page([line(None)], language)
        assert "docs/" not in text and ".duckdb" not in text and "rules/" not in text and "groups.py" not in text


@pytest.mark.parametrize("source", ["/srv/loyalty/extracts/2026-11-20/orders.csv", "extracts/2026-11-20/orders.csv", r"C:\data\extracts\orders.csv"])
def test_a_gate_problem_names_the_file_not_its_path(source):
    from loyalty_engine import i18n
    from loyalty_engine.pages.portfolio import _problem

    check = {"name": "volume", "table_name": "orders", "outcome": "fail", "figure": "2,972 rows (2026-11-19: 5,943, -50.0%)",
             "limit_text": "-20% … +100%", "detail": f"{source} has far fewer rows; was the export cut off?"}
    english = _problem(check, i18n.language("en"))
    assert english["what"] == "orders · volume" and english["figure"].startswith("2,972 rows")
    assert english["detail"] == ""  # `means` says it already
    # A check the page has no words for shows the gate's detail, with the file's name only.
    unknown = _problem(check | {"name": "encoding"}, i18n.language("en"))
    assert unknown["what"] == "orders · encoding" and unknown["means"] == ""
    assert unknown["detail"] == "orders.csv has far fewer rows; was the export cut off?"
    german = _problem(check, i18n.language("de"))
    assert german["what"] == "Bestellungen · Datenmenge" and german["means"].startswith("Die Zahl der Zeilen")
    assert german["figure"] == german["limit"] == german["detail"] == ""  # the gate writes them in English
