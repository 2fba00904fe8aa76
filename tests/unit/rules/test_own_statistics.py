"""The account's own statistics (kinds spread, spread_sum, slope, slope_sum, unusual) on hand-made
order books at their edges, each value checked against a computation here in Python (periods
listed one by one, the negative binomial summed with math.lgamma), in both compile forms."""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta

import duckdb
import pytest

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import RuleError
from loyalty_engine.rules import compiler, kinds
from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.explain import explain_account, render
from loyalty_engine.rules.kinds import odds
from loyalty_engine.rules.loader import check_rule_files, load_rules
from loyalty_engine.rules.testing import run_rule_tests

NIGHT = date(2026, 11, 23)
# Ten nights across a month's end, so that windows start and end on a 1st, a 30th, a 31st.
NIGHTS = [date(2026, 10, 26) + timedelta(days=i) for i in range(10)]


def days(start: date, end: date, every: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(0, (end - start).days + 1, every)]


def book(orders: dict[str, list[tuple[date, float]]]):
    con = duckdb.connect()
    for table in TABLES.values():
        con.execute(table.create_sql())
    for account in [*orders, "NONE"]:
        con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES (?, ?, 'a@example.com', 'Anna', 'active')", [account, account])
    number = 0
    for account, rows in orders.items():
        for day, amount in rows:
            number += 1
            con.execute("INSERT INTO orders VALUES (?, ?, ?, ?, 'EUR')", [f"O{number}", account, day, amount])
    return con


def values(con, tmp_path, monkeypatch, metrics: dict[str, str], nights=NIGHTS) -> dict[tuple[str, str, date], object]:
    """Every metric per (metric, account, night), from both compile forms, which must agree."""
    (tmp_path / "m.yaml").write_text(
        "metrics:\n" + "".join(f"  {name}: {{{spec}}}\n" for name, spec in metrics.items())
        + "rules:\n  - {id: shows, severity: low, when: " + " is not null or ".join(metrics) + " is not null, title: t, message: m, action: a}\n",
        encoding="utf-8",
    )
    ruleset = load_rules(tmp_path)
    forms = []
    for joined in (len(nights), 0):
        monkeypatch.setattr(compiler, "JOINED_NIGHTS", joined)
        result = con.sql(compiler.compile_rules(ruleset, nights).sql)
        columns = result.columns
        forms.append({(name, row[0], row[1]): row[columns.index(name)] for row in result.fetchall() for name in metrics})
    joined, streamed = forms
    assert joined.keys() == streamed.keys()
    for key in joined:
        assert joined[key] == (None if streamed[key] is None else pytest.approx(streamed[key], rel=1e-9, abs=1e-12)), key
    return joined


# --- the same figures, computed here -----------------------------------------------------------


def window(night: date, length: int, ending: int = 0) -> tuple[date, date]:
    end = night - timedelta(days=ending)
    return end - timedelta(days=length - 1), end


def whole_periods(start: date, end: date, per: str) -> list[tuple[date, date]]:
    """The calendar months (weeks, Monday to Sunday) lying wholly in start … end."""
    periods, day = [], start
    while day <= end:
        if per == "month":
            first = day.replace(day=1)
            last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        else:
            first = day - timedelta(days=day.weekday())
            last = first + timedelta(days=6)
        if first >= start and last <= end:
            periods.append((first, last))
        day = last + timedelta(days=1)
    return periods


def series(rows, start, end, per, of_amount=False) -> list[float]:
    return [sum(amount if of_amount else 1 for day, amount in rows if first <= day <= last) for first, last in whole_periods(start, end, per)]


def slope(ys: list[float]) -> float:
    xs = range(len(ys))
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def pmf(k: int, mu: float, r: float | None) -> float:
    if r is None:
        return math.exp(k * math.log(mu) - mu - math.lgamma(k + 1))
    return math.exp(math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(r / (r + mu)) + k * math.log(mu / (r + mu)))


def unusual(rows, night, length=90, baseline=365, per="month", tail="low", ending=0, first_row=None) -> float | None:
    """The chance of at most (at least) the window's number of rows, by the baseline before it
    (which starts no earlier than the account's first row, `first_row` if given)."""
    start, end = window(night, length, ending)
    base_end = start - timedelta(days=1)
    first_row = first_row or min((day for day, _ in rows), default=None)
    if first_row is None:
        return None
    base_start = max(base_end - timedelta(days=baseline - 1), first_row)
    base_days = (base_end - base_start).days + 1
    events = sum(1 for day, _ in rows if base_start <= day <= base_end)
    if base_days <= 0 or events == 0:
        return None
    x = sum(1 for day, _ in rows if start <= day <= end)
    mu = events * length / base_days
    counts = series(rows, base_start, base_end, per)
    r = None
    if len(counts) >= 2:
        mean, var = statistics.fmean(counts), statistics.variance(counts)
        if var > mean > 0:
            r = mean * mean / (var - mean) * length / (365.2425 / 12 if per == "month" else 7)
    cdf = lambda upto: sum(pmf(k, mu, r) for k in range(upto + 1))  # noqa: E731
    return min(1.0, cdf(x)) if tail == "low" else min(1.0, 1 - cdf(x - 1))


# --- spread and slope ----------------------------------------------------------------------------

UNEVEN = [(d, 100.0 + 37 * (d.toordinal() % 5)) for d in days(date(2025, 6, 3), date(2026, 11, 2), 4) if d.month not in (2, 3, 8)]
UNEVEN += [(date(2026, 10, 31), 500.0), (date(2026, 10, 31), 20.0), (date(2026, 9, 1), 70.0), (date(2026, 10, 1), 10.0)]
# One order in Nov 2025, two in Dec, …, twelve in Oct 2026: one more a month.
GROWING = [(date(2025 + (10 + k) // 12, (10 + k) % 12 + 1, d), 50.0) for k in range(12) for d in range(1, k + 2)]


@pytest.mark.parametrize("per", ["month", "week"])
def test_spread_and_slope_of_counts_and_sums_count_empty_periods_as_zero(per, tmp_path, monkeypatch):
    rows = {"UNEVEN": UNEVEN, "GROWING": GROWING}
    con = book(rows)
    got = values(
        con, tmp_path, monkeypatch,
        {
            "spread_n": f"spread: orders, window: 365d, per: {per}",
            "spread_amount": f"spread_sum: orders.amount, window: 365d, per: {per}",
            "slope_n": f"slope: orders, window: 180d, per: {per}",
            "slope_amount": f"slope_sum: orders.amount, window: 180d, ending: 30d ago, per: {per}",
        },
    )  # fmt: skip
    for account, orders in rows.items():
        for night in NIGHTS:
            year, half, half_earlier = window(night, 365), window(night, 180), window(night, 180, ending=30)
            assert got[("spread_n", account, night)] == pytest.approx(statistics.stdev(series(orders, *year, per)))
            assert got[("spread_amount", account, night)] == pytest.approx(statistics.stdev(series(orders, *year, per, of_amount=True)))
            assert got[("slope_n", account, night)] == pytest.approx(slope(series(orders, *half, per)))
            assert got[("slope_amount", account, night)] == pytest.approx(slope(series(orders, *half_earlier, per, of_amount=True)))
    # Empty months count: UNEVEN has none in Feb, Mar and Aug; its monthly spread is not that of its busy months.
    assert 0 in series(UNEVEN, *window(NIGHT, 365), "month")
    if per == "month":
        assert got[("slope_n", "GROWING", NIGHTS[0])] == pytest.approx(1)
    # No orders at all: a real zero, as for count.
    assert all(got[(name, "NONE", night)] == 0 for name in ("spread_n", "spread_amount", "slope_n", "slope_amount") for night in NIGHTS)


def test_spread_follows_the_metrics_where_filter(tmp_path, monkeypatch):
    con = book({"UNEVEN": UNEVEN})
    got = values(con, tmp_path, monkeypatch, {"big": "spread: orders, window: 1y, per: month, where: 'amount >= 200'"})
    big = [row for row in UNEVEN if row[1] >= 200]
    for night in NIGHTS:
        start = night.replace(year=night.year - 1) + timedelta(days=1)
        assert got[("big", "UNEVEN", night)] == pytest.approx(statistics.stdev(series(big, start, night, "month")))


# --- unusual ---------------------------------------------------------------------------------------

QUIET_SINCE = NIGHT - timedelta(days=100)
STEADY = [(d, 100.0) for d in days(date(2024, 6, 1), QUIET_SINCE, 7)]  # about 4 a month, then a quiet quarter
BURSTY = [(d, 100.0) for start in days(date(2024, 3, 1), QUIET_SINCE, 120) for d in days(start, start + timedelta(days=5), 1) for _ in range(2)]
SINGLE = [(NIGHT - timedelta(days=200), 100.0)]
NEW = [(d, 100.0) for d in days(NIGHT - timedelta(days=60), NIGHT, 10)]  # all in the window: no baseline
RECENT = [(d, 100.0) for d in days(NIGHT - timedelta(days=200), QUIET_SINCE, 7)]  # the baseline starts before the first order
SPIKE = [(d, 100.0) for d in days(date(2025, 1, 5), NIGHT, 30)] + [(NIGHT - timedelta(days=i), 100.0) for i in range(1, 9)]
BOOKS = {"STEADY": STEADY, "BURSTY": BURSTY, "SINGLE": SINGLE, "NEW": NEW, "RECENT": RECENT, "SPIKE": SPIKE}


@pytest.fixture(scope="module")
def unusual_values(tmp_path_factory):
    con = book(BOOKS)
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield values(
            con, tmp_path_factory.mktemp("unusual"), monkeypatch,
            {
                "low": "unusual: orders, window: 90d, baseline: 365d, per: month, tail: low",
                "high": "unusual: orders, window: 90d, baseline: 365d, tail: high",
                "weekly": "unusual: orders, window: 90d, baseline: 52w, per: week",
            },
            nights=[NIGHT - timedelta(days=i) for i in range(10)],
        )  # fmt: skip
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("account", list(BOOKS))
def test_unusual_agrees_with_the_negative_binomial_computed_by_hand(account, unusual_values):
    for night in [NIGHT - timedelta(days=i) for i in range(10)]:
        for name, per, tail, baseline in (("low", "month", "low", 365), ("high", "month", "high", 365), ("weekly", "week", "low", 364)):
            expected = unusual(BOOKS[account], night, baseline=baseline, per=per, tail=tail)
            got = unusual_values[(name, account, night)]
            assert (got is None) == (expected is None), (name, night)
            if expected is not None:
                assert got == pytest.approx(expected, rel=1e-6, abs=1e-12), (name, night)


def test_unusual_at_its_edges(unusual_values):
    at = lambda name, account: unusual_values[(name, account, NIGHT)]  # noqa: E731
    # A steady account (4 a month) with an empty quarter: next to impossible by chance.
    assert at("low", "STEADY") < 1e-5
    # A project buyer ordering in bursts every four months: an empty quarter is not news.
    assert at("low", "BURSTY") > 0.05
    # Poisson would call it impossible: the bursts' own variance is what makes it likely.
    assert at("low", "BURSTY") > 100 * math.exp(-sum(1 for d, _ in BURSTY if NIGHT - timedelta(days=454) <= d <= NIGHT - timedelta(days=90)) * 90 / 365)
    # One order ever, in the baseline: an empty quarter is likely.
    assert 0.3 < at("low", "SINGLE") < 1
    # No baseline: every order in the window; none at all.
    assert at("low", "NEW") is None and at("high", "NEW") is None and unusual_values[("low", "NONE", NIGHT)] is None
    # The baseline starts before the first order: its rate counts from the first order on.
    assert at("low", "RECENT") < 0.01
    # Eight orders in eight days after one a month: the high tail is small, the low one large.
    assert at("high", "SPIKE") < 0.01 < 0.99 < at("low", "SPIKE")


def test_unusual_follows_where_and_ending(tmp_path, monkeypatch):
    """Only matching rows count, in the window and the baseline; the baseline still starts at the
    account's first row of any kind; `ending` moves both back."""
    con = book({"UNEVEN": UNEVEN, "SPIKE": SPIKE})
    got = values(
        con, tmp_path, monkeypatch,
        {
            "big": "unusual: orders, window: 60d, baseline: 200d, where: 'amount >= 150', per: week",
            "earlier": "unusual: orders, window: 90d, ending: 30d ago, tail: high",
        },
    )  # fmt: skip
    for account, rows in (("UNEVEN", UNEVEN), ("SPIKE", SPIKE)):
        first = min(day for day, _ in rows)
        big = [row for row in rows if row[1] >= 150]
        for night in NIGHTS:
            expected = unusual(big, night, length=60, baseline=200, per="week", first_row=first)
            assert got[("big", account, night)] == (None if expected is None else pytest.approx(expected, rel=1e-6, abs=1e-12)), night
            expected = unusual(rows, night, ending=30, tail="high")
            assert got[("earlier", account, night)] == pytest.approx(expected, rel=1e-6, abs=1e-12), night
    assert got[("big", "SPIKE", NIGHTS[0])] is None  # SPIKE's orders are all of 100


# --- words, odds, mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chance", "window_days", "words"),
    [
        (0.005, 90, "about once in 200 quarters"),
        (0.0123, 30, "about once in 81 months"),
        (0.25, 365, "about once in 4 years"),
        (0.00012345, 7, "about once in 8,100 weeks"),
        (0.6, 182, "more often than not (60% of half-years)"),
        (1e-9, 90, "less than once in a million quarters"),
        (0.01, 45, "about once in 100 45-day windows"),
        (None, 90, None),
    ],
)
def test_a_chance_reads_as_odds(chance, window_days, words):
    assert odds(chance, window_days) == words


def test_explain_describes_the_statistics_and_shows_the_chance_as_odds(tmp_path):
    con = book({"STEADY": STEADY})
    (tmp_path / "m.yaml").write_text(
        "metrics:\n"
        "  orders_unusual: {unusual: orders, window: 90d, baseline: 365d, per: month, tail: low}\n"
        "  orders_spread: {spread: orders, window: 365d, per: month}\n"
        "  revenue_trend: {slope_sum: orders.amount, window: 365d}\n"
        "rules:\n  - {id: quiet_for_them, severity: high, when: orders_unusual < 0.01 and orders_spread >= 0 and revenue_trend < 1000,"
        " title: t, message: m, action: a}\n",
        encoding="utf-8",
    )
    explained = explain_account(con, load_rules(tmp_path), "STEADY", NIGHT, absent=set())
    [rule] = explained.rules
    words = {name: what for name, _, what in rule.numbers}
    assert words["orders_unusual"] == (
        "chance of at most this many orders by the account's own rate and spread per month in the 365d before, over 90d (2026-08-26 … 2026-11-23)"
    )
    assert words["orders_spread"].startswith("standard deviation of the number of orders per month (whole months, none counting 0), over 365d")
    assert words["revenue_trend"].startswith("trend of the sum of orders.amount per month: change per month")
    assert rule.shown == {"orders_unusual": "about once in 290,000 quarters"}
    text = render(explained)
    assert "orders_unusual = 3.5e-06 (about once in 290,000 quarters) chance of at most" in text
    assert "orders_unusual < 0.01   3.5e-06 < 0.01" in text and rule.outcome == "fires"


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("spread: orders, window: 365d, per: day", "m.yaml:2:42: per must be month or week, got 'day'"),
        ("slope: orders.amount, window: 365d", "m.yaml:2:14: slope takes a table name, not 'orders.amount' (e.g. slope: orders)"),
        ("spread_sum: orders.currency, window: 365d", "m.yaml:2:19: spread_sum needs table.column with a number column"),
        ("unusual: orders, window: 90d, baseline: 1y", "m.yaml:2:47: baseline must be a span in days or weeks, e.g. 365d, got '1y'"),
        ("unusual: orders, window: 90d, tail: left", "m.yaml:2:43: tail must be low or high, got 'left'"),
        ("unusual: orders", "m.yaml:2:6: unusual metric 'm' needs a window, e.g. window: 90d"),
    ],
)
def test_mistakes_get_one_line_errors(written, problem, tmp_path):
    (tmp_path / "m.yaml").write_text(f"metrics:\n  m: {{{written}}}\nrules: []\n", encoding="utf-8")
    _, problems = check_rule_files(tmp_path)
    assert len(problems) == 1 and isinstance(problems[0], RuleError)
    assert str(problems[0]).replace(str(tmp_path) + "/", "").startswith(problem)


def test_a_window_too_short_for_two_periods_is_a_rule_error(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "metrics:\n  m: {spread: orders, window: 60d}\nrules:\n  - {id: r, severity: low, when: m > 1, title: t, message: m, action: a}\n", encoding="utf-8"
    )
    with pytest.raises(RuleError, match=r"m.yaml:2:6: spread metric 'm' per month needs a window of at least 92d or 3m \(two whole months\), got 60d"):
        prove_rules(load_rules(tmp_path), NIGHT)


def test_rule_tests_run_a_rule_on_the_accounts_own_odds(tmp_path):
    """`loyalty rules test` on both sides of the threshold: a steady account that went quiet
    fires, a bursty one in a normal gap does not."""
    (tmp_path / "quiet.yaml").write_text(
        "metrics:\n  orders_unusual: {unusual: orders, window: 90d, baseline: 365d, tail: low}\n"
        "rules:\n  - {id: unusually_quiet, severity: high, when: orders_unusual < 0.01, title: t, message: '{{ orders_unusual }}', action: a}\n",
        encoding="utf-8",
    )
    (tmp_path / "quiet.test.yaml").write_text(
        "tests:\n"
        "  - name: steady, then quiet\n"
        "    night: 2026-11-23\n"
        "    orders:\n"
        "      - {account_id: STEADY, every: 7d, from: 2025-01-01, until: 2026-08-01}\n"
        "      - {account_id: BURSTY, every: 1d, from: 2025-03-01, until: 2025-03-10}\n"
        "      - {account_id: BURSTY, every: 1d, from: 2025-07-01, until: 2025-07-10}\n"
        "      - {account_id: BURSTY, every: 1d, from: 2025-11-01, until: 2025-11-10}\n"
        "      - {account_id: BURSTY, every: 1d, from: 2026-03-01, until: 2026-03-10}\n"
        "      - {account_id: BURSTY, every: 1d, from: 2026-07-01, until: 2026-07-10}\n"
        "    expect:\n"
        "      - {account: STEADY, rule: unusually_quiet}\n",
        encoding="utf-8",
    )
    [result] = run_rule_tests(tmp_path / "quiet.test.yaml")
    assert result.passed, result


def test_unusual_for_a_large_account_sums_only_the_terms_that_matter(tmp_path, monkeypatch):
    """About 20 orders a day, then 17 a day: thousands of events, a sum capped near the mean,
    the same chance as the whole sum computed here."""
    con = book({})
    con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES ('LARGE', 'L', 'a@example.com', 'Anna', 'active')")
    start = NIGHT - timedelta(days=600)
    con.execute(
        "INSERT INTO orders SELECT 'L' || i, 'LARGE', ?::DATE + CAST(CASE WHEN i < 510 * 20 THEN i // 20 ELSE 510 + (i - 510 * 20) // 17 END AS INTEGER), 100, 'EUR' "
        "FROM range(0, 510 * 20 + 90 * 17) r(i)",
        [start],
    )
    rows = [(day, 100.0) for (day,) in con.execute("SELECT order_date FROM orders WHERE account_id = 'LARGE'").fetchall()]
    nights = [NIGHT - timedelta(days=i) for i in range(3)]
    got = values(con, tmp_path, monkeypatch, {"low": "unusual: orders, window: 90d", "high": "unusual: orders, window: 90d, tail: high"}, nights=nights)
    for night in nights:
        for tail in ("low", "high"):
            assert got[(tail, "LARGE", night)] == pytest.approx(unusual(rows, night, tail=tail), rel=1e-6, abs=1e-12), (tail, night)
    assert sum(1 for day, _ in rows if day > NIGHT - timedelta(days=90)) == 89 * 17  # 17 a day in the window (its first day has none)
    assert got[("low", "LARGE", NIGHT)] < 1e-6 and got[("high", "LARGE", NIGHT)] > 0.99


def exact_at_most(upto: int, mu: float, r: float) -> float:
    """The negative binomial's chance of at most `upto`, by its ratio recurrence from pmf(0), in
    logs (no lgamma, so no cancellation however large r is)."""
    log_term, logs = r * math.log1p(-mu / (r + mu)), []
    for k in range(upto + 1):
        logs.append(log_term)
        log_term += math.log1p((k - mu) / (r + mu)) - math.log(k + 1) + math.log(mu)
    return math.fsum(math.exp(t) for t in logs)


@pytest.mark.parametrize("r", [0.3, 49.9, 50.0, 1e3, 1e6, 1e9, 1e13])
def test_the_chance_stays_exact_for_any_size(r):
    """Near Poisson's spread the size r grows without bound; LGAMMA(k + r) - LGAMMA(r) would lose
    r * ln(r) * 2e-16 of it, so large sizes take Stirling's form. Both agree with the recurrence."""
    cases = [(x, mu) for mu in (0.7, 3.0, 40.0, 900.0) for x in {0, int(mu / 2), int(mu), int(mu * 1.5)}]
    query = "SELECT * FROM (VALUES " + ", ".join(f"({x}, {mu!r}::DOUBLE, {r!r}::DOUBLE)" for x, mu in cases) + ") AS t(upto, mu, r)"
    for step in kinds._at_most():
        columns = ", ".join(f"{value.sql('duckdb')} AS {name}" for name, value in step.items())
        query = f"SELECT *, {columns} FROM ({query})"
    got = duckdb.sql(f"SELECT upto, mu, cdf FROM ({query})").fetchall()
    for upto, mu, cdf in got:
        expected = exact_at_most(upto, mu, r)
        assert cdf == pytest.approx(expected, rel=1e-9, abs=1e-15), (upto, mu, r)
