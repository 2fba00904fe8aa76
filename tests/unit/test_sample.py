"""The sample generator: reproducible files that keep the data contract and look like a real order book."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from loyalty_engine.backtest import account_fates
from loyalty_engine.config import LostSettings
from loyalty_engine.sample.generator import PATTERNS, TRAITS, generate_sample
from loyalty_engine.sample.generator import RULES
from tests.support.sample_checks import load

NIGHT = date(2025, 11, 20)  # a Thursday
TABLES = ("accounts", "orders", "complaints", "contracts", "interactions", "surveys")
COLUMNS = {
    "accounts": [
        "account_id", "name", "owner_email", "owner_name", "status", "segment", "language",
        "supervisor_email", "customer_since",
    ],
    "orders": ["order_id", "account_id", "order_date", "amount", "currency"],
    "complaints": ["complaint_id", "account_id", "opened_at", "closed_at", "category", "severity"],
    "contracts": ["contract_id", "account_id", "start_date", "end_date", "annual_value", "previous_contract_id"],
    "interactions": ["interaction_id", "account_id", "occurred_at", "kind", "contact_person", "by_owner",
                     "competitor_mentioned"],
    "surveys": ["survey_id", "account_id", "answered_at", "nps", "satisfaction"],
    "ground_truth": ["account_id", "pattern", "drift_started_on", "lost_on", "signals", "scenario", "loyalty_group",
                     "lost_how", "traits", "orders_per_year", "complaints_per_year", "paused_from", "paused_to"],
}
KEYS = {"accounts": "account_id", "orders": "order_id", "complaints": "complaint_id", "contracts": "contract_id",
        "interactions": "interaction_id", "surveys": "survey_id"}
EVENT_DATES = {"orders": "order_date", "complaints": "opened_at", "contracts": "start_date",
               "interactions": "occurred_at", "surveys": "answered_at"}
GROUPS = ("apostle", "opportunist", "hostage", "defector", "terrorist")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("extracts")
    return out, generate_sample(out, accounts=200, seed=7, end_date=NIGHT)


def loaded(out: Path, folder: Path) -> duckdb.DuckDBPyConnection:
    """A night's CSVs and the ground truth in an in-memory DuckDB."""
    con = duckdb.connect()
    for table in TABLES:
        load(con, table, folder / f"{table}.csv")
    load(con, "ground_truth", out / "ground_truth.csv")
    return con


@pytest.fixture(scope="module")
def db(sample):
    out, summary = sample
    con = loaded(out, summary.folder)
    yield con
    con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchall()[0][0]


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def signals(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    rows = con.sql("SELECT account_id, coalesce(signals, '') FROM ground_truth").fetchall()
    return {account: set(text.split()) for account, text in rows}


# --- reproducible -------------------------------------------------------------------------------


def test_same_arguments_give_identical_files_and_another_seed_does_not(tmp_path):
    generate_sample(tmp_path / "a", accounts=60, seed=3, end_date=NIGHT)
    generate_sample(tmp_path / "b", accounts=60, seed=3, end_date=NIGHT)
    generate_sample(tmp_path / "c", accounts=60, seed=4, end_date=NIGHT)
    first, again, other = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert sorted(first) == sorted([f"2025-11-20/{table}.csv" for table in TABLES] + ["ground_truth.csv"])
    assert first == again
    for table in TABLES[1:]:
        assert first[f"2025-11-20/{table}.csv"] != other[f"2025-11-20/{table}.csv"], table
    assert first["ground_truth.csv"] != other["ground_truth.csv"]


def test_summary_says_what_was_written(sample, db):
    out, summary = sample
    assert summary.folder == out / "2025-11-20" and summary.end_date == NIGHT
    assert summary.folders == [summary.folder]
    assert summary.rows == {table: one(db, f"SELECT count(*) FROM {table}") for table in TABLES}
    assert summary.drifting == one(db, "SELECT count(*) FROM ground_truth WHERE pattern = 'drifting'")
    assert summary.lost == one(db, f"SELECT count(*) FROM ground_truth WHERE pattern = 'drifting' AND lost_on <= DATE '{NIGHT}'")
    assert summary.patterns == dict(db.sql("SELECT pattern, count(*) FROM ground_truth GROUP BY ALL").fetchall())
    assert list(summary.patterns) == list(PATTERNS) and list(summary.traits) == list(TRAITS)
    per_trait = {t: one(db, f"SELECT count(*) FROM ground_truth WHERE list_contains(string_split(traits, ' '), '{t}')") for t in TRAITS}
    assert summary.traits == per_trait
    assert summary.owners == one(db, "SELECT count(DISTINCT owner_email) FROM accounts")
    per_rule = {rule: sum(rule in s for s in signals(db).values()) for rule in RULES}
    assert summary.signals == per_rule and list(summary.signals) == list(RULES)
    assert summary.rows["orders"] > 10_000 and summary.rows["interactions"] > 10_000


def test_end_date_defaults_to_today_or_the_friday_before_and_no_leftover_files(tmp_path):
    summary = generate_sample(tmp_path, accounts=3)
    today = date.today()
    expected = today - timedelta(days=max(0, today.weekday() - 4))  # Saturday, Sunday: the Friday before
    assert summary.end_date == expected and summary.folder == tmp_path / expected.isoformat()
    assert not [p for p in tmp_path.rglob(".*")]  # the half-written files were renamed into place


def test_at_least_one_account_and_one_night():
    with pytest.raises(ValueError, match="accounts must be at least 1"):
        generate_sample(Path("unused"), accounts=0)
    with pytest.raises(ValueError, match="nights must be at least 1"):
        generate_sample(Path("unused"), nights=0)


# --- the data contract ---------------------------------------------------------------------------


def test_columns_are_exactly_the_contracts_in_order(sample):
    out, summary = sample
    for table, columns in COLUMNS.items():
        path = out / "ground_truth.csv" if table == "ground_truth" else summary.folder / f"{table}.csv"
        assert path.read_bytes()[:3] != b"\xef\xbb\xbf"  # UTF-8 without BOM
        assert path.read_text(encoding="utf-8").splitlines()[0].split(",") == columns


def test_ids_are_unique_and_every_reference_exists(db):
    for table, key in [*KEYS.items(), ("ground_truth", "account_id")]:
        assert one(db, f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0, table
        assert one(db, f"SELECT count(*) FILTER (WHERE {key} IS NULL) FROM {table}") == 0, table
    for table in ("orders", "complaints", "contracts", "interactions", "surveys", "ground_truth"):
        orphans = f"SELECT count(*) FROM {table} t ANTI JOIN accounts a USING (account_id)"
        assert one(db, orphans) == 0, table
    assert one(db, "SELECT count(*) FROM ground_truth") == one(db, "SELECT count(*) FROM accounts")
    assert one(db, "SELECT min(account_id) FROM accounts") == "K-00001"
    assert one(db, "SELECT min(order_id) FROM orders") == "O-0000001"
    assert one(db, "SELECT min(interaction_id) FROM interactions") == "I-0000001"
    assert one(db, "SELECT min(survey_id) FROM surveys") == "S-000001"


def test_values_keep_the_contract(db):
    checks = {
        "negative or missing amounts": "SELECT count(*) FROM orders WHERE amount IS NULL OR amount < 0",
        "amounts not in cents": "SELECT count(*) FROM orders WHERE round(amount, 2) <> amount",
        "other currencies": "SELECT count(*) FROM orders WHERE currency <> 'EUR'",
        "contracts ending before they start": "SELECT count(*) FROM contracts WHERE end_date <= start_date",
        "negative contract values": "SELECT count(*) FROM contracts WHERE annual_value < 0",
        "complaints closed before opened": "SELECT count(*) FROM complaints WHERE closed_at < opened_at",
        "unknown categories": "SELECT count(*) FROM complaints "
        "WHERE category NOT IN ('Lieferung', 'Qualität', 'Rechnung', 'Service')",
        "unknown severities": "SELECT count(*) FROM complaints WHERE severity NOT IN ('low', 'medium', 'high')",
        "unknown statuses": "SELECT count(*) FROM accounts WHERE status NOT IN ('active', 'closed')",
        "unknown segments": "SELECT count(*) FROM accounts WHERE segment NOT IN ('A', 'B', 'C')",
        "unknown languages": "SELECT count(*) FROM accounts WHERE language NOT IN ('de', 'en')",
        "bad emails": "SELECT count(*) FROM accounts WHERE NOT regexp_full_match(owner_email, '[a-z.]+@example\\.com')"
        " OR NOT regexp_full_match(supervisor_email, '[a-z.]+@example\\.com')",
        "unknown kinds": "SELECT count(*) FROM interactions "
        "WHERE kind IS NULL OR kind NOT IN ('visit', 'call', 'email', 'meeting', 'escalation')",
        "missing flags": "SELECT count(*) FROM interactions WHERE by_owner IS NULL OR competitor_mentioned IS NULL",
        "contact persons without a name": "SELECT count(*) FROM interactions "
        "WHERE NOT regexp_full_match(contact_person, '[A-ZÄÖÜ][a-zäöüß]+ [A-ZÄÖÜ][a-zäöüß]+')",
        "the owner escalating or writing emails": "SELECT count(*) FROM interactions "
        "WHERE by_owner AND kind IN ('escalation', 'email')",
        "scores outside 0-10": "SELECT count(*) FROM surveys WHERE nps IS NULL OR nps NOT BETWEEN 0 AND 10",
        "satisfaction outside 1-5": "SELECT count(*) FROM surveys WHERE satisfaction NOT BETWEEN 1 AND 5",
        "unknown patterns": "SELECT count(*) FROM ground_truth "
        "WHERE pattern NOT IN ('stable', 'drifting', 'dormant', 'warning', 'noise')",
        "unknown traits": "SELECT count(*) FROM (SELECT unnest(string_split(traits, ' ')) t FROM ground_truth) "
        f"WHERE t NOT IN {TRAITS}",
        "unknown fates": "SELECT count(*) FROM ground_truth WHERE (lost_how IS NULL) <> (lost_on IS NULL) "
        "OR lost_how NOT IN ('stopped', 'shrank')",
    }
    for problem, sql in checks.items():
        assert one(db, sql) == 0, problem
    assert 0 < one(db, "SELECT count(*) FROM complaints WHERE closed_at IS NULL") < 50  # a few still open
    assert 0.1 < one(db, "SELECT avg((satisfaction IS NULL)::int) FROM surveys") < 0.5  # an optional question
    assert one(db, "SELECT avg(regexp_matches(contact_person, '[äöüß]')::int) FROM interactions") > 0.05


def test_flags_and_scores_are_written_plainly(sample):
    _, summary = sample
    with open(summary.folder / "interactions.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["by_owner"] for r in rows} == {r["competitor_mentioned"] for r in rows} == {"true", "false"}
    with open(summary.folder / "surveys.csv", encoding="utf-8") as f:
        assert all(r["nps"].isdigit() for r in csv.DictReader(f))


def test_no_date_after_the_night_except_contract_ends_and_losses(db):
    night = f"DATE '{NIGHT}'"
    for table, column in [("accounts", "customer_since"), ("orders", "order_date"), ("complaints", "opened_at"),
                          ("complaints", "closed_at"), ("contracts", "start_date"), ("interactions", "occurred_at"),
                          ("surveys", "answered_at"), ("ground_truth", "drift_started_on")]:
        assert one(db, f"SELECT max({column}) FROM {table}") <= NIGHT, (table, column)
    assert one(db, f"SELECT count(*) FROM contracts WHERE end_date > {night}") > 0
    assert one(db, f"SELECT count(*) FROM ground_truth WHERE lost_on > {night}") > 0
    for table in ("orders", "complaints", "interactions", "surveys"):
        assert one(db, f"SELECT min({EVENT_DATES[table]}) FROM {table}") > NIGHT - timedelta(days=3 * 366), table
    for table, column in [("interactions", "occurred_at"), ("surveys", "answered_at")]:
        before = f"SELECT count(*) FROM {table} JOIN accounts a USING (account_id) WHERE {column} < a.customer_since"
        assert one(db, before) == 0, table


def test_contracts_form_consecutive_chains_over_the_window(db):
    assert one(db, "SELECT count(*) FROM accounts ANTI JOIN contracts USING (account_id)") == 0
    assert one(db, "SELECT count(*) FROM contracts WHERE previous_contract_id IS NULL") == 200  # one chain each
    broken = """
        SELECT count(*) FROM contracts c JOIN contracts p ON c.previous_contract_id = p.contract_id
        WHERE c.account_id <> p.account_id OR c.start_date <> p.end_date + 1"""
    assert one(db, broken) == 0
    assert one(db, "SELECT count(*) FROM contracts WHERE previous_contract_id NOT IN (SELECT contract_id FROM contracts)") == 0
    terms = "SELECT DISTINCT round(date_diff('day', start_date, end_date) / 30.4375) FROM contracts"
    assert {row[0] for row in db.sql(terms).fetchall()} <= {6, 12, 24, 36}


# --- realism -----------------------------------------------------------------------------------



def test_owners_look_after_many_accounts_with_german_names(db):
    """200 accounts: 1-4 owners with 50-300 accounts each (the large book below has more), one manager."""
    owners = db.sql("SELECT owner_email, count(*) FROM accounts GROUP BY ALL").fetchall()
    assert 1 <= len(owners) <= 4 and all(50 <= accounts <= 300 for _, accounts in owners), owners
    assert one(db, "SELECT count(DISTINCT supervisor_email) FROM accounts") == 1
    assert one(db, "SELECT avg(regexp_matches(name, '[äöüÄÖÜß]')::int) FROM accounts") > 0.3
    assert one(db, "SELECT count(DISTINCT name) FROM accounts") >= 190
    assert 0.03 <= one(db, "SELECT avg((language = 'en')::int) FROM accounts") <= 0.2
    assert one(db, f"SELECT avg((customer_since < DATE '{NIGHT}' - 1095)::int) FROM accounts") > 0.6


def test_segments_follow_order_volume(db):
    volume = """
        SELECT segment, min(v), max(v), count(*) FROM (
            SELECT a.account_id, a.segment, coalesce(sum(o.amount), 0) v
            FROM accounts a LEFT JOIN orders o USING (account_id) GROUP BY ALL)
        GROUP BY segment ORDER BY segment"""
    (_, a_min, _, a_count), (_, b_min, b_max, _), (_, _, c_max, _) = db.sql(volume).fetchall()
    assert a_min >= b_max and b_min >= c_max and a_count == 40


def test_orders_look_like_a_b2b_order_book(db):
    low, median, high = one(db, "SELECT quantile_cont(amount, [0.05, 0.5, 0.95]) FROM orders")
    assert 100 < low < median < high < 20_000 and 500 < median < 5_000
    weekend = one(db, "SELECT avg((dayofweek(order_date) IN (0, 6))::int) FROM orders")
    assert weekend < 0.05
    assert one(db, "SELECT count(*) FROM orders JOIN accounts USING (account_id) WHERE order_date < customer_since") == 0


def test_drifting_share_is_realistic(db):
    share = one(db, "SELECT avg((pattern = 'drifting')::int) FROM ground_truth")
    assert 0.10 <= share <= 0.25
    assert one(db, "SELECT count(*) FROM ground_truth WHERE pattern <> 'drifting' AND drift_started_on IS NOT NULL") == 0
    # lost_on is the last order (as the backtest dates a stop): at most 300 days (the longest fade)
    # into the drift, and mostly after its start (a rare buyer may not order again once it began).
    assert one(db, "SELECT count(*) FROM ground_truth WHERE pattern = 'drifting' AND NOT "
                   "(lost_how = 'stopped' AND lost_on <= drift_started_on + 300)") == 0
    assert one(db, "SELECT avg((lost_on >= drift_started_on)::int) FROM ground_truth WHERE pattern = 'drifting'") > 0.9


def test_drifting_accounts_order_less_before_they_are_lost(db):
    per_account = f"""
        SELECT g.account_id,
            count(o.order_id) FILTER (WHERE o.order_date >= g.lost_on - 90 AND o.order_date < g.lost_on) last_90,
            count(o.order_id) FILTER (WHERE o.order_date >= g.drift_started_on - 365
                                      AND o.order_date < g.drift_started_on) year_before
        FROM ground_truth g LEFT JOIN orders o USING (account_id)
        WHERE g.pattern = 'drifting' AND g.lost_on <= DATE '{NIGHT}'
        GROUP BY ALL"""
    rows = db.sql(per_account).fetchall()
    assert len(rows) >= 10
    assert all(last_90 < year_before for _, last_90, year_before in rows)
    # Per day, too: the 90 days before the last order run at well under the rate of the year
    # before the drift, taken together and for most accounts (not all: lost_on is the last order,
    # and when that comes early in the fade, those 90 days still hold weeks from before the drift).
    assert sum(last_90 for _, last_90, _ in rows) * 365 / 90 < 0.75 * sum(year_before for *_, year_before in rows)
    slower = [last_90 * 365 / 90 < 0.75 * year_before for _, last_90, year_before in rows]
    assert sum(slower) >= 0.5 * len(rows)


def test_nothing_happens_after_the_loss_and_complaints_stop_at_the_drift(db):
    after_loss = "SELECT count(*) FROM orders JOIN ground_truth g USING (account_id) WHERE g.lost_how = 'stopped' AND order_date > g.lost_on"
    assert one(db, after_loss) == 0
    after_drift = "SELECT count(*) FROM complaints JOIN ground_truth g USING (account_id) WHERE opened_at >= g.drift_started_on"
    assert one(db, after_drift) == 0
    complained_before = """
        SELECT count(DISTINCT account_id) FROM complaints JOIN ground_truth g USING (account_id)
        WHERE opened_at BETWEEN g.drift_started_on - 365 AND g.drift_started_on - 1"""
    assert one(db, complained_before) >= 5


def test_closed_accounts_are_lost_ones(db):
    statuses = db.sql(f"""
        SELECT a.status, count(*) FROM accounts a JOIN ground_truth g USING (account_id)
        WHERE g.pattern = 'drifting' AND g.drift_started_on <= DATE '{NIGHT}' - 360 GROUP BY ALL""").fetchall()
    closed = dict(statuses)
    assert closed["closed"] > closed.get("active", 0)  # 85 % are closed: most, even in a small book
    closed_but_not_lost = f"""
        SELECT count(*) FROM accounts a JOIN ground_truth g USING (account_id)
        WHERE a.status = 'closed' AND (g.lost_on IS NULL OR g.lost_on > DATE '{NIGHT}' - 60)"""
    assert one(db, closed_but_not_lost) == 0


def test_stable_accounts_keep_in_touch_steadily(db):
    """Owner contacts every 4-8 weeks, the customer's own 1-3 a month, one contact person, no
    escalation, no competitor: nothing an interaction rule could take for a warning."""
    per_account = db.sql(f"""
        WITH i AS (
            SELECT *, occurred_at - lag(occurred_at) OVER (PARTITION BY account_id, by_owner ORDER BY occurred_at) gap
            FROM interactions JOIN ground_truth g USING (account_id) WHERE g.pattern = 'stable')
        SELECT account_id,
            median(gap) FILTER (WHERE by_owner) owner_gap,
            max(gap) FILTER (WHERE by_owner) longest_owner_gap,
            count(*) FILTER (WHERE NOT by_owner) * 30.4 / (DATE '{NIGHT}' - min(occurred_at) + 1) asked_per_month,
            count(DISTINCT contact_person) contacts,
            count(*) FILTER (WHERE kind = 'escalation' OR competitor_mentioned) bad_news,
            count(*) FILTER (WHERE NOT by_owner AND kind = 'visit') customer_visits
        FROM i GROUP BY ALL""").fetchall()
    assert len(per_account) >= 60
    for account, owner_gap, longest, asked, contacts, bad_news, customer_visits in per_account:
        assert 25 <= owner_gap <= 60 and longest <= 90, account
        assert 1 <= asked <= 3.5, account
        assert contacts == 1 and bad_news == 0 and customer_visits == 0, account


def test_surveys_come_once_or_twice_a_year_and_stable_accounts_score_well(db):
    surveyed = one(db, "SELECT count(DISTINCT account_id) / (SELECT count(*) FROM accounts) FROM surveys")
    assert 0.55 <= surveyed <= 0.85  # 60% answer, plus the groups and the nps_detractor scenario
    per_year = one(db, f"""
        SELECT avg(n) FROM (SELECT account_id, count(*) n FROM surveys JOIN accounts a USING (account_id)
                            WHERE a.customer_since < DATE '{NIGHT}' - 1200 GROUP BY ALL)""") / 3
    assert 1.0 <= per_year <= 2.0
    stable = db.sql("""
        SELECT min(nps), max(nps), max(previous - nps) FROM (
            SELECT nps, lag(nps) OVER (PARTITION BY account_id ORDER BY answered_at) previous
            FROM surveys JOIN ground_truth g USING (account_id) WHERE g.pattern IN ('stable', 'noise')
                AND g.loyalty_group IS NULL)""").fetchall()[0]
    assert stable[0] >= 7 and stable[1] == 10 and stable[2] < 3
    assert one(db, "SELECT corr(nps, satisfaction) FROM surveys") > 0.8


# --- ground truth: the warning signs -------------------------------------------------------------


@pytest.fixture(scope="module", params=[(200, 7, date(2026, 11, 23)), (300, 11, date(2024, 3, 1))],
                ids=["200-seed7-2026-11-23", "300-seed11-2024-03-01"])
def other_sample(request, tmp_path_factory):
    accounts, seed, night = request.param
    out = tmp_path_factory.mktemp("other")
    summary = generate_sample(out, accounts=accounts, seed=seed, end_date=night)
    con = loaded(out, summary.folder)
    yield con, summary
    con.close()


def check_ground_truth(con: duckdb.DuckDBPyConnection) -> None:
    """The ground truth's `signals` are the engine's warnings on the last night (the generator runs
    the real stages; tests/system/test_catalogue_on_sample.py runs them again through a night)."""
    truth = signals(con)
    rows = con.sql("SELECT account_id, pattern, scenario, loyalty_group FROM ground_truth").fetchall()
    built = [(account, scenario) for account, pattern, scenario, _ in rows if pattern == "warning"]
    # Stable accounts show no sign; noise is a stable account on which a rule fires by chance.
    for account, pattern, scenario, group in rows:
        assert (pattern == "warning") == (scenario is not None), account
        if pattern == "stable":
            assert not truth[account], account
        if pattern == "noise":
            assert truth[account] and group not in ("hostage", "defector", "terrorist"), account
    # At least two accounts built for each rule. The rules weigh each account against its own
    # variability, so a built account's own noise can hide its sign: most, not all, show it.
    per_rule = {rule: sum(scenario == rule for _, scenario in built) for rule in RULES}
    assert min(per_rule.values()) >= 2, per_rule
    shown = {rule: sum(scenario == rule and rule in truth[account] for account, scenario in built) for rule in RULES}
    assert all(shown[rule] >= 0.5 * per_rule[rule] for rule in RULES), (shown, per_rule)
    assert sum(shown.values()) >= 0.85 * len(built), (shown, per_rule)
    alone = sum(truth[account] == {scenario} for account, scenario in built)
    assert alone >= 0.75 * len(built)


def test_signals_are_the_engines_warnings_on_the_night(db):
    check_ground_truth(db)


def test_signals_hold_for_other_seeds_and_nights(other_sample):
    con, _ = other_sample
    check_ground_truth(con)


def test_stable_and_scenario_shares_are_realistic(db):
    shares = dict(db.sql("SELECT pattern, count(*) / 200 FROM ground_truth GROUP BY ALL").fetchall())
    assert 0.3 <= shares["stable"] <= 0.6 and 0.1 <= shares["drifting"] <= 0.25 and 0.03 <= shares["dormant"] <= 0.08
    # Noise, a plain account on which some fixed threshold holds by chance on the night, is common
    # in a book with seasons, bursts, pauses and heavy tails (a fifth to a third of the accounts).
    assert 0.1 <= shares["warning"] <= 0.25 and shares.get("noise", 0) <= 0.35
    groups = dict(db.sql("SELECT loyalty_group, count(*) FROM ground_truth WHERE loyalty_group IS NOT NULL GROUP BY ALL").fetchall())
    assert set(groups) == set(GROUPS) and min(groups.values()) >= 2


def test_loyalty_groups_look_their_part(db):
    """Frequent (>= 6 orders in the last 365 days) or rare, and the latest score of two years."""
    rows = db.sql(f"""
        WITH o AS (SELECT account_id, count(*) n FROM orders WHERE order_date > DATE '{NIGHT}' - 365 GROUP BY ALL),
        s AS (SELECT account_id, nps FROM surveys WHERE answered_at > DATE '{NIGHT}' - INTERVAL 2 YEAR
              QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY answered_at DESC) = 1),
        c AS (SELECT account_id, count(*) n FROM complaints WHERE opened_at > DATE '{NIGHT}' - 365 GROUP BY ALL)
        SELECT g.loyalty_group, coalesce(o.n, 0), s.nps, coalesce(c.n, 0)
        FROM ground_truth g LEFT JOIN o USING (account_id) LEFT JOIN s USING (account_id) LEFT JOIN c USING (account_id)
        WHERE g.loyalty_group IS NOT NULL""").fetchall()
    for group, orders, nps, complaints in rows:
        frequent = orders >= 6
        assert nps is not None, group
        assert {
            "apostle": frequent and nps >= 9,
            "hostage": frequent and nps <= 6 and complaints >= 3,
            "opportunist": not frequent and nps >= 7,
            "defector": not frequent and 4 <= nps <= 6 and complaints < 6,
            "terrorist": not frequent and nps <= 3,
        }[group], (group, orders, nps, complaints)


def test_the_rules_warn_drifting_accounts_far_more_often_than_plain_ones(db):
    """On one night, some sign for about a quarter of the drifting accounts (the rest show theirs
    on other nights of the drift, or are long gone) and for a few percent of the plain ones."""
    truth = signals(db)
    pattern = dict(db.sql("SELECT account_id, pattern FROM ground_truth").fetchall())
    drifting = [bool(truth[a]) for a in truth if pattern[a] == "drifting"]
    plain = [bool(truth[a]) for a in truth if pattern[a] in ("stable", "noise")]
    among_drifting, among_plain = sum(drifting) / len(drifting), sum(plain) / len(plain)
    assert among_drifting > 0.15 and among_drifting > 3 * among_plain, (among_drifting, among_plain)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """1,200 accounts: enough for every trait's share and for owners' portfolios."""
    out = tmp_path_factory.mktemp("book")
    summary = generate_sample(out, accounts=1200, seed=7, end_date=NIGHT)
    con = loaded(out, summary.folder)
    # The accounts not built for a rule or a group, with their traits as a list.
    con.execute("""CREATE VIEW plain AS SELECT g.*, a.customer_since, a.status,
                   string_split(coalesce(g.traits, ''), ' ') AS trait_list
                   FROM ground_truth g JOIN accounts a USING (account_id)
                   WHERE g.scenario IS NULL AND g.loyalty_group IS NULL""")
    yield con, summary
    con.close()


def test_owners_hold_50_to_300_accounts_each_in_a_large_book(book):
    con, summary = book
    owners = con.sql("SELECT owner_email, count(*) FROM accounts GROUP BY ALL").fetchall()
    assert summary.owners == len(owners) == 10  # 1,200 / 120
    assert all(50 <= accounts <= 300 for _, accounts in owners), owners
    assert len({accounts for _, accounts in owners}) > 3  # portfolios differ in size
    assert one(con, "SELECT count(DISTINCT owner_name) FROM accounts") == 10
    assert one(con, "SELECT count(DISTINCT supervisor_email) FROM accounts") == 2  # one per 8 owners
    assert one(con, "SELECT count(*) FROM accounts WHERE owner_email = supervisor_email") == 0


def test_every_trait_is_recorded_at_its_share(book):
    con, summary = book
    plain = one(con, "SELECT count(*) FROM plain")
    stable = one(con, "SELECT count(*) FROM plain WHERE pattern IN ('stable', 'noise')")
    share = {t: one(con, f"SELECT count(*) FROM plain WHERE list_contains(trait_list, '{t}')") for t in TRAITS}
    assert 0.3 <= share["heavy_tailed"] / plain <= 0.4
    assert 0.1 <= share["seasonal"] / plain <= 0.2 and 0.06 <= share["bursty"] / plain <= 0.14
    assert 0.13 <= share["paused"] / stable <= 0.2  # about one stable account in six
    assert 0.04 <= share["dormant"] / 1200 <= 0.06 and share["contract_cut"] > 10
    # Accounts built for a rule or a group have none of these traits (the groups' renewals vary).
    assert {t: n for t, n in summary.traits.items() if t != "contract_cut"} == {t: n for t, n in share.items() if t != "contract_cut"}
    assert one(con, "SELECT count(*) FROM ground_truth WHERE scenario IS NOT NULL AND loyalty_group IS NULL AND traits IS NOT NULL") == 0
    # Dormant is a pattern of its own; pausing happens to stable accounts only; no account is
    # seasonal and bursty at once.
    assert one(con, "SELECT count(*) FROM ground_truth WHERE (pattern = 'dormant') <> coalesce(contains(traits, 'dormant'), false)") == 0
    assert one(con, "SELECT count(*) FROM plain WHERE list_contains(trait_list, 'paused') AND pattern NOT IN ('stable', 'noise')") == 0
    assert one(con, "SELECT count(*) FROM plain WHERE list_has_all(trait_list, ['seasonal', 'bursty'])") == 0


def test_order_rates_span_two_orders_of_magnitude(book):
    """From a few orders a year to several a week, among accounts that were customers all along."""
    con, _ = book
    rates = [row[0] for row in con.sql(f"""
        SELECT count(o.order_id) / 3 FROM plain p LEFT JOIN orders o USING (account_id)
        WHERE p.pattern IN ('stable', 'noise') AND p.customer_since < DATE '{NIGHT}' - 1095
        GROUP BY p.account_id""").fetchall()]
    rates.sort()
    assert len(rates) > 400
    assert rates[len(rates) // 20] <= 4 and rates[-len(rates) // 20] >= 100  # 5th and 95th percentiles
    assert rates[-1] >= 150 and rates[-1] >= 100 * max(rates[0], 1)
    # The ground truth's rate is the account's own: the data agree with it, within noise.
    ratio = one(con, f"""
        SELECT median((SELECT count(*) FROM orders o WHERE o.account_id = p.account_id) / 3 / p.orders_per_year)
        FROM plain p WHERE p.pattern IN ('stable', 'noise') AND p.customer_since < DATE '{NIGHT}' - 1095
            AND p.traits IS NULL""")
    assert 0.8 <= ratio <= 1.25


def test_seasonal_trades_place_most_orders_in_a_few_months(book):
    """The share of an account's orders in its four busiest consecutive months of the year."""
    con, _ = book
    shares = dict(con.sql("""
        WITH m AS (SELECT account_id, month(order_date) AS m, count(*) AS n FROM orders GROUP BY ALL),
        total AS (SELECT account_id, sum(n) AS t FROM m GROUP BY ALL HAVING sum(n) >= 30),
        four AS (SELECT m.account_id, s.s, sum(m.n) AS n FROM total JOIN m USING (account_id), range(1, 13) s(s)
                 WHERE (m.m - s.s + 12) % 12 < 4 GROUP BY ALL)
        SELECT p.seasonal, median(n / t) FROM (
            SELECT account_id, max(n) AS n FROM four GROUP BY ALL) JOIN total USING (account_id)
            JOIN (SELECT account_id, list_contains(trait_list, 'seasonal') AS seasonal FROM plain
                  WHERE NOT list_contains(trait_list, 'bursty')) p USING (account_id)
        GROUP BY ALL""").fetchall())
    assert shares[True] >= 0.65 and shares[False] <= 0.45, shares  # a third of the year holds a third


def test_project_buyers_order_in_bursts_with_long_quiet_gaps(book):
    con, _ = book
    gaps = con.sql("""
        WITH days AS (SELECT DISTINCT account_id, order_date FROM orders),
        gaps AS (SELECT account_id, order_date - lag(order_date) OVER (PARTITION BY account_id ORDER BY order_date) AS gap FROM days)
        SELECT list_contains(p.trait_list, 'bursty') AS bursty, median(gap) AS usual, max(gap) AS longest
        FROM gaps JOIN plain p USING (account_id)
        WHERE gap IS NOT NULL AND p.pattern IN ('stable', 'noise') AND NOT list_contains(p.trait_list, 'paused')
        GROUP BY p.account_id, bursty HAVING count(*) >= 10""").fetchall()
    bursty = [(usual, longest) for is_bursty, usual, longest in gaps if is_bursty]
    others = [(usual, longest) for is_bursty, usual, longest in gaps if not is_bursty]
    assert len(bursty) >= 30
    # Orders a few days apart inside a burst, 45 days or more between bursts: many times the usual gap.
    assert sum(usual <= 10 and longest >= 45 and longest >= 8 * usual for usual, longest in bursty) >= 0.8 * len(bursty)
    assert sum(longest >= 8 * usual for usual, longest in others) < 0.4 * len(others)


def test_paused_accounts_stop_for_45_to_120_days_then_order_again(book):
    con, _ = book
    rows = con.sql(f"""
        SELECT p.account_id, p.paused_from, p.paused_to, p.pattern, p.lost_on,
            count(o.order_id) FILTER (WHERE o.order_date BETWEEN p.paused_from AND p.paused_to) AS during,
            count(o.order_id) FILTER (WHERE o.order_date = p.paused_from - 1) AS last_before,
            count(o.order_id) FILTER (WHERE o.order_date = p.paused_to + 1) AS first_after,
            min(o.order_date) FILTER (WHERE o.order_date > p.paused_to) AS next_order
        FROM plain p JOIN orders o USING (account_id) WHERE list_contains(p.trait_list, 'paused') GROUP BY ALL""").fetchall()
    assert len(rows) > 100
    recovered = 0
    for account, start, end, pattern, lost_on, during, last_before, first_after, next_order in rows:
        gap = (end - start).days + 2  # from the last order before to the first after
        assert 45 <= gap <= 120 and during == 0 and last_before >= 1, account
        # A pause is no loss (a rare buyer may still fall silent for good by chance later on).
        assert pattern in ("stable", "noise") and lost_on != start - timedelta(days=1), account
        if end < NIGHT:
            assert first_after >= 1 and next_order == end + timedelta(days=1), account
            recovered += 1
        else:  # still pausing on the night: the silence so far is shorter than a loss needs
            assert next_order is None and (NIGHT - start).days + 1 < 180, account
    assert recovered >= 0.8 * len(rows)


def test_dormant_accounts_left_long_ago_and_are_still_listed_active(book):
    con, _ = book
    rows = con.sql(f"""
        SELECT g.account_id, a.status, g.lost_how, g.lost_on, max(o.order_date) AS last_order, count(o.order_id) AS orders,
            count(o.order_id) FILTER (WHERE o.order_date > g.lost_on - INTERVAL 1 YEAR) AS year_before
        FROM ground_truth g JOIN accounts a USING (account_id) LEFT JOIN orders o USING (account_id)
        WHERE g.pattern = 'dormant' GROUP BY ALL""").fetchall()
    assert len(rows) == 60
    for account, status, lost_how, lost_on, last_order, orders, year_before in rows:
        # Its last order lies one to two years back, it ordered regularly until then, and nobody
        # closed it: the ground truth says it was lost on that last order.
        assert status == "active" and lost_how == "stopped" and lost_on == last_order, account
        assert NIGHT - timedelta(days=3 * 365) < last_order < NIGHT - timedelta(days=365) and year_before >= 4, account
    for table, column in (("complaints", "opened_at"), ("interactions", "occurred_at"), ("surveys", "answered_at")):
        last_year = f"""SELECT count(*) FROM {table} t JOIN ground_truth g USING (account_id)
                        WHERE g.pattern = 'dormant' AND t.{column} > DATE '{NIGHT}' - 365"""
        assert one(con, last_year) == 0, table  # nor anything else in the last year


def test_order_values_are_heavy_tailed(book):
    """The spread of log(amount) per account (with 20 orders or more), and the biggest orders' weight."""
    con, _ = book
    spread = dict(con.sql("""
        SELECT list_contains(p.trait_list, 'heavy_tailed'), median(sd) FROM (
            SELECT account_id, stddev(ln(amount)) AS sd FROM orders WHERE amount > 0 GROUP BY ALL HAVING count(*) >= 20)
        JOIN plain p USING (account_id) GROUP BY ALL""").fetchall())
    assert spread[True] >= 1.1 and spread[False] <= 0.6, spread
    # Across the heavy-tailed accounts, their biggest 5 % of orders carry over a third of the revenue.
    top = one(con, """
        SELECT sum(amount) FILTER (WHERE rank <= 0.05) / sum(amount) FROM (
            SELECT o.amount, percent_rank() OVER (PARTITION BY account_id ORDER BY amount DESC) AS rank
            FROM orders o JOIN plain p USING (account_id) WHERE list_contains(p.trait_list, 'heavy_tailed'))""")
    assert top > 0.33


def test_renewals_move_contract_values_up_and_down_without_a_loss(book):
    """Stable accounts renegotiate: some renewals are worth 20 % less, some 20 % more, and the
    trait contract_cut names exactly the accounts with such a cut."""
    con, _ = book
    moves = con.sql("""
        SELECT p.account_id, list_contains(p.trait_list, 'contract_cut') AS cut_trait,
            count(*) FILTER (WHERE c.change <= 0.8) AS cuts, count(*) FILTER (WHERE c.change >= 1.2) AS rises
        FROM (SELECT account_id, annual_value / lag(annual_value) OVER (PARTITION BY account_id ORDER BY start_date) AS change
              FROM contracts) c JOIN plain p USING (account_id)
        WHERE p.pattern IN ('stable', 'noise') GROUP BY ALL""").fetchall()
    assert sum(cuts > 0 for _, _, cuts, _ in moves) >= 15 and sum(rises > 0 for *_, rises in moves) >= 30
    assert all(cut_trait == (cuts > 0) for _, cut_trait, cuts, _ in moves)


def test_most_accounts_complain_rarely(book):
    con, _ = book
    per_year = [row[0] for row in con.sql(f"""
        SELECT count(c.complaint_id) / 3 FROM plain p LEFT JOIN complaints c USING (account_id)
        WHERE p.pattern IN ('stable', 'noise') AND p.customer_since < DATE '{NIGHT}' - 1095 GROUP BY p.account_id""").fetchall()]
    assert sum(n <= 2 for n in per_year) >= 0.65 * len(per_year)  # most: 0-2 a year
    assert sum(n == 0 for n in per_year) >= 0.04 * len(per_year) and sum(n >= 5 for n in per_year) >= 10


def test_lost_on_is_what_the_backtest_reads_in_the_data(book, other_sample):
    """account_fates (docs/backtest.md) on the night's orders finds exactly the ground truth's
    losses, wherever the data can tell: a stop once no_order_days have passed since the last
    order (before that, the data may see none yet, or an earlier shrink), and every shrink."""
    for con, summary in (book, other_sample):
        account_fates(con, LostSettings(), summary.end_date)
        night, silence = f"DATE '{summary.end_date}'", LostSettings().no_order_days
        disagree = one(con, f"""
            SELECT count(*) FROM ground_truth g LEFT JOIN account_fates f USING (account_id) WHERE NOT coalesce(
                CASE WHEN g.lost_how = 'stopped' AND g.lost_on + {silence} <= {night}
                     THEN f.lost_how = 'stopped' AND f.lost_on = g.lost_on
                     WHEN g.lost_how = 'stopped' THEN f.lost_on IS NULL OR f.lost_how = 'shrank'
                     WHEN g.lost_how = 'shrank' THEN f.lost_how = 'shrank' AND f.lost_on = g.lost_on
                     ELSE f.lost_on IS NULL END, false)""")
        assert disagree == 0
        # Drifting and dormant accounts are all lost by stopping; the other accounts only by the
        # definition's chance verdicts (revenue halved by heavy tails or bursts, a rare buyer's silence).
        assert one(con, "SELECT count(*) FROM ground_truth WHERE pattern IN ('drifting', 'dormant') AND lost_how IS DISTINCT FROM 'stopped'") == 0
        assert one(con, "SELECT count(*) FROM ground_truth WHERE pattern = 'drifting' AND lost_on > " + night) > 0


# --- several nights ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    out = tmp_path_factory.mktemp("nights")
    summary = generate_sample(out, accounts=40, seed=5, end_date=date(2025, 11, 23), nights=6)  # a Sunday
    return out, summary


def test_nights_are_the_last_business_days_up_to_the_end_date(nights):
    out, summary = nights
    expected = ["2025-11-14", "2025-11-17", "2025-11-18", "2025-11-19", "2025-11-20", "2025-11-21"]
    assert [f.name for f in summary.folders] == expected
    assert sorted(p.name for p in out.iterdir()) == expected + ["ground_truth.csv"]
    assert summary.folder == out / "2025-11-21" and summary.end_date == date(2025, 11, 21)
    for folder in summary.folders:
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.csv" for t in TABLES)


def test_each_night_holds_what_was_known_that_night(nights):
    out, summary = nights
    con = duckdb.connect()
    for folder in summary.folders:
        for table in TABLES:
            load(con, table, folder / f"{table}.csv", name=f"{table}_{folder.name.replace('-', '_')}")
    for folder in summary.folders:
        night, suffix = date.fromisoformat(folder.name), folder.name.replace("-", "_")
        for table, column in [*EVENT_DATES.items(), ("complaints", "closed_at"), ("accounts", "customer_since")]:
            assert one(con, f"SELECT max({column}) FROM {table}_{suffix}") <= night, (folder.name, table, column)
        for table in ("orders", "interactions"):  # busy tables reach right up to the night
            assert one(con, f"SELECT max({EVENT_DATES[table]}) FROM {table}_{suffix}") >= night - timedelta(days=3)
    # An earlier night's rows are all there the next night: the same ids, and unchanged except
    # what changes with time (a complaint closed since, an account closed since).
    for earlier, later in zip(summary.folders, summary.folders[1:]):
        a, b = earlier.name.replace("-", "_"), later.name.replace("-", "_")
        for table, key in KEYS.items():
            assert one(con, f"SELECT count(*) FROM {table}_{a} ANTI JOIN {table}_{b} USING ({key})") == 0, table
            if table in ("orders", "contracts", "interactions", "surveys"):
                assert one(con, f"SELECT count(*) FROM (FROM {table}_{a} EXCEPT FROM {table}_{b})") == 0, table
        assert one(con, f"SELECT count(*) FROM orders_{b}") > one(con, f"SELECT count(*) FROM orders_{a}")
        changed = f"""SELECT count(*) FROM complaints_{a} x JOIN complaints_{b} y USING (complaint_id)
                      WHERE x.closed_at IS DISTINCT FROM y.closed_at AND x.closed_at IS NOT NULL"""
        assert one(con, changed) == 0
    con.close()


def test_the_last_night_is_the_same_with_or_without_earlier_ones(nights, tmp_path):
    out, summary = nights
    single = generate_sample(tmp_path, accounts=40, seed=5, end_date=date(2025, 11, 21))
    assert files(single.folder) == files(summary.folder)
    assert (tmp_path / "ground_truth.csv").read_bytes() == (out / "ground_truth.csv").read_bytes()
