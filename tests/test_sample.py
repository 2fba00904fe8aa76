"""The sample generator: reproducible files that keep the data contract and look like a real order book."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from loyalty_engine.sample import generate_sample

NIGHT = date(2025, 11, 20)
TABLES = ("accounts", "orders", "complaints", "contracts")
COLUMNS = {
    "accounts": [
        "account_id", "name", "owner_email", "owner_name", "status", "segment", "language",
        "supervisor_email", "customer_since",
    ],
    "orders": ["order_id", "account_id", "order_date", "amount", "currency"],
    "complaints": ["complaint_id", "account_id", "opened_at", "closed_at", "category", "severity"],
    "contracts": ["contract_id", "account_id", "start_date", "end_date", "annual_value", "previous_contract_id"],
    "ground_truth": ["account_id", "pattern", "drift_started_on", "lost_on"],
}
DATES = {
    "accounts": ["customer_since"],
    "orders": ["order_date"],
    "complaints": ["opened_at", "closed_at"],
    "contracts": ["start_date", "end_date"],
    "ground_truth": ["drift_started_on", "lost_on"],
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("extracts")
    return out, generate_sample(out, accounts=200, seed=7, end_date=NIGHT)


@pytest.fixture(scope="module")
def db(sample):
    """The sample's CSVs loaded into DuckDB, dates read strictly as YYYY-MM-DD."""
    out, summary = sample
    con = duckdb.connect()
    files = {table: summary.folder / f"{table}.csv" for table in TABLES} | {"ground_truth": out / "ground_truth.csv"}
    for table, path in files.items():
        types = {column: "DATE" for column in DATES[table]}
        con.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv(?, header = true, delim = ',', "
            f"dateformat = '%Y-%m-%d', types = {types!r})",
            [str(path)],
        )
    yield con
    con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchall()[0][0]


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- reproducible -------------------------------------------------------------------------------


def test_same_arguments_give_identical_files_and_another_seed_does_not(tmp_path):
    generate_sample(tmp_path / "a", accounts=60, seed=3, end_date=NIGHT)
    generate_sample(tmp_path / "b", accounts=60, seed=3, end_date=NIGHT)
    generate_sample(tmp_path / "c", accounts=60, seed=4, end_date=NIGHT)
    first, again, other = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert sorted(first) == ["2025-11-20/accounts.csv", "2025-11-20/complaints.csv", "2025-11-20/contracts.csv",
                             "2025-11-20/orders.csv", "ground_truth.csv"]
    assert first == again
    assert first["2025-11-20/orders.csv"] != other["2025-11-20/orders.csv"]


def test_summary_says_what_was_written(sample, db):
    out, summary = sample
    assert summary.folder == out / "2025-11-20" and summary.end_date == NIGHT
    assert summary.rows == {table: one(db, f"SELECT count(*) FROM {table}") for table in TABLES}
    assert summary.drifting == one(db, "SELECT count(*) FROM ground_truth WHERE pattern = 'drifting'")
    assert summary.lost == one(db, f"SELECT count(*) FROM ground_truth WHERE lost_on <= DATE '{NIGHT}'")
    assert summary.rows["orders"] > 10_000


def test_end_date_defaults_to_today_and_no_leftover_files(tmp_path):
    summary = generate_sample(tmp_path, accounts=3)
    assert summary.end_date == date.today() and summary.folder == tmp_path / date.today().isoformat()
    assert not [p for p in tmp_path.rglob(".*")]  # the half-written files were renamed into place


def test_at_least_one_account():
    with pytest.raises(ValueError, match="at least 1"):
        generate_sample(Path("unused"), accounts=0)


# --- the data contract ---------------------------------------------------------------------------


def test_columns_are_exactly_the_contracts_in_order(sample):
    out, summary = sample
    for table, columns in COLUMNS.items():
        path = out / "ground_truth.csv" if table == "ground_truth" else summary.folder / f"{table}.csv"
        assert path.read_bytes()[:3] != b"\xef\xbb\xbf"  # UTF-8 without BOM
        assert path.read_text(encoding="utf-8").splitlines()[0].split(",") == columns


def test_ids_are_unique_and_every_reference_exists(db):
    for table, key in [("accounts", "account_id"), ("orders", "order_id"), ("complaints", "complaint_id"),
                       ("contracts", "contract_id"), ("ground_truth", "account_id")]:
        assert one(db, f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0, table
        assert one(db, f"SELECT count(*) FILTER (WHERE {key} IS NULL) FROM {table}") == 0, table
    for table in ("orders", "complaints", "contracts", "ground_truth"):
        orphans = f"SELECT count(*) FROM {table} t ANTI JOIN accounts a USING (account_id)"
        assert one(db, orphans) == 0, table
    assert one(db, "SELECT count(*) FROM ground_truth") == one(db, "SELECT count(*) FROM accounts")
    assert one(db, "SELECT min(account_id) FROM accounts") == "K-00001"
    assert one(db, "SELECT min(order_id) FROM orders") == "O-0000001"


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
    }
    for problem, sql in checks.items():
        assert one(db, sql) == 0, problem
    assert 0 < one(db, "SELECT count(*) FROM complaints WHERE closed_at IS NULL") < 50  # a few still open


def test_no_date_after_the_night_except_contract_ends_and_losses(db):
    night = f"DATE '{NIGHT}'"
    for table, column in [("accounts", "customer_since"), ("orders", "order_date"), ("complaints", "opened_at"),
                          ("complaints", "closed_at"), ("contracts", "start_date"),
                          ("ground_truth", "drift_started_on")]:
        assert one(db, f"SELECT max({column}) FROM {table}") <= NIGHT, (table, column)
    assert one(db, f"SELECT count(*) FROM contracts WHERE end_date > {night}") > 0
    assert one(db, f"SELECT count(*) FROM ground_truth WHERE lost_on > {night}") > 0
    assert one(db, "SELECT min(order_date) FROM orders") > NIGHT - timedelta(days=3 * 366)


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
    owners = db.sql("SELECT owner_email, count(*) FROM accounts GROUP BY ALL").fetchall()
    assert 5 <= len(owners) <= 8
    assert sum(1 for _, accounts in owners if accounts >= 15) >= 4
    assert one(db, "SELECT count(DISTINCT supervisor_email) FROM accounts") == 2
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
    assert one(db, "SELECT count(*) FROM ground_truth WHERE pattern = 'stable' "
                   "AND (drift_started_on IS NOT NULL OR lost_on IS NOT NULL)") == 0
    assert one(db, "SELECT count(*) FROM ground_truth WHERE pattern = 'drifting' AND NOT "
                   "(drift_started_on < lost_on AND lost_on - drift_started_on BETWEEN 110 AND 310)") == 0


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
    # Per day, too: the last 90 days run at well under the rate of the year before the drift.
    slower = [last_90 * 365 / 90 < 0.75 * year_before for _, last_90, year_before in rows]
    assert sum(slower) >= 0.9 * len(rows)


def test_nothing_happens_after_the_loss_and_complaints_stop_at_the_drift(db):
    after_loss = "SELECT count(*) FROM orders JOIN ground_truth g USING (account_id) WHERE order_date >= g.lost_on"
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
        WHERE g.lost_on <= DATE '{NIGHT}' - 60 GROUP BY ALL""").fetchall()
    closed = dict(statuses)
    assert closed["closed"] > 2 * closed.get("active", 0)
    closed_but_not_lost = f"""
        SELECT count(*) FROM accounts a JOIN ground_truth g USING (account_id)
        WHERE a.status = 'closed' AND (g.lost_on IS NULL OR g.lost_on > DATE '{NIGHT}' - 60)"""
    assert one(db, closed_but_not_lost) == 0


def test_the_shipped_warning_rules_find_drifting_accounts(db):
    """The three rules' conditions as of the night: they fire, far more often for drifting accounts."""
    night = f"DATE '{NIGHT}'"
    fired = db.sql(f"""
        WITH o AS (
            SELECT account_id,
                count(*) FILTER (WHERE order_date BETWEEN {night} - 89 AND {night}) recent,
                count(*) FILTER (WHERE order_date BETWEEN {night} - 454 AND {night} - 90) baseline,
                count(*) FILTER (WHERE order_date BETWEEN {night} - 364 AND {night}) last_year
            FROM orders GROUP BY ALL),
        c AS (
            SELECT account_id,
                count(*) FILTER (WHERE opened_at BETWEEN {night} - 89 AND {night}) recent,
                count(*) FILTER (WHERE opened_at BETWEEN {night} - 454 AND {night} - 90) baseline
            FROM complaints GROUP BY ALL),
        ranked AS (
            SELECT account_id, round(date_diff('day', start_date, end_date) / 30.4375) AS months,
                row_number() OVER (PARTITION BY account_id ORDER BY start_date DESC) position
            FROM contracts WHERE start_date <= {night}),
        k AS (
            SELECT account_id, max(months) FILTER (WHERE position = 1) latest,
                max(months) FILTER (WHERE position = 2) previous
            FROM ranked GROUP BY ALL)
        SELECT g.pattern,
            count(*) watched,
            count(*) FILTER (WHERE o.baseline >= 6 AND o.recent < 0.5 * o.baseline * 90 / 365) falling,
            count(*) FILTER (WHERE c.baseline >= 3 AND coalesce(c.recent, 0) = 0 AND o.last_year > 0) silent,
            count(*) FILTER (WHERE k.latest <= 0.75 * k.previous) shorter
        FROM accounts a JOIN ground_truth g USING (account_id)
        LEFT JOIN o USING (account_id) LEFT JOIN c USING (account_id) LEFT JOIN k USING (account_id)
        WHERE a.status <> 'closed'
        GROUP BY g.pattern""").fetchall()
    counts = {pattern: rest for pattern, *rest in fired}
    drifting, stable = counts["drifting"], counts["stable"]
    for rule in (1, 2, 3):
        assert 3 <= drifting[rule] + stable[rule] <= 40, (rule, drifting, stable)
        # A drifting account is far likelier to be flagged than a stable one ...
        assert drifting[rule] / drifting[0] > 5 * stable[rule] / stable[0], (rule, drifting, stable)
    # ... while stable noise still causes some false alarms.
    assert sum(stable[1:]) > 0
