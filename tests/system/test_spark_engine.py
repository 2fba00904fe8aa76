"""engine: spark: the shipped rules on a real local Spark session give what DuckDB gives, row by
row: every metric, condition, value and `fired` of every account, for 1, 5 (joined) and 30
(streamed) nights, on the sample with an edge set added (NULLs in every optional column, zero
amounts, a closed account, a single order, Feb 29); a night run with `engine: spark` stores
the same signals and warnings; and `loyalty run` with it writes the same digests and ledger.

One Spark session for the whole test session (tests/conftest.py); slow, and on one xdist worker.
Every value is the same double on both engines, sums included (they are exact, kinds.py), but
`unusual`'s chance, which sums its terms in another order on Spark, with Stirling's series for
the log-gamma, and agrees to about 1e-12: it is compared to 1e-9 (docs/spark.md)."""

from __future__ import annotations

import csv
import json
import math
from datetime import date, timedelta
from decimal import Decimal

import pytest

from loyalty_engine import store
from loyalty_engine.config import ExtractSettings, load_settings
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.extracts.validate import validate_night
from loyalty_engine.night import run_night
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.sample.generator import generate_sample
from loyalty_engine.spark_engine import evaluate_on_spark, read_extracts
from tests.support.builders import ROOT, write_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

NIGHT = date(2028, 2, 29)  # a Tuesday: the sample's last night is Feb 29
EMPTY = ""  # an optional value left out


def _append(path, rows: list[dict]) -> None:
    with path.open(encoding="utf-8") as handle:
        columns = next(csv.reader(handle))
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.DictWriter(handle, fieldnames=columns, lineterminator="\n").writerows({c: row.get(c, EMPTY) for c in columns} for row in rows)


def add_edge_accounts(folder) -> None:
    """Accounts at the edges, beside the sample's: every optional column empty, zero amounts,
    closed, a single order, and rows on Feb 29 (also the night)."""
    account = {"name": "Edge", "owner_email": "edge@example.com", "owner_name": "Edda Edge"}
    _append(folder / "accounts.csv", [
        {"account_id": "E-NULLS", **account},  # status, segment, language, supervisor, since: all empty
        {"account_id": "E-CLOSED", **account, "status": "closed", "segment": "A", "language": "de", "customer_since": "2020-02-29"},
        {"account_id": "E-SINGLE", **account, "status": "active"},
        {"account_id": "E-LEAP", **account, "status": "active", "customer_since": "2024-02-29"},
        {"account_id": "E-ZERO", **account, "status": "active"},
    ])  # fmt: skip
    days = [NIGHT - timedelta(days=d) for d in (0, 1, 29, 30, 59, 89, 90, 91, 120, 200, 365, 366, 400, 455, 700, 730, 731)]
    orders = [{"order_id": f"EO-N{i}", "account_id": "E-NULLS", "order_date": d.isoformat(), "amount": "0", "currency": "EUR"} for i, d in enumerate(days)]
    orders += [{"order_id": f"EO-C{i}", "account_id": "E-CLOSED", "order_date": d.isoformat(), "amount": "10.50", "currency": "EUR"} for i, d in enumerate(days)]
    orders += [{"order_id": "EO-S0", "account_id": "E-SINGLE", "order_date": "2027-06-01", "amount": "99.99", "currency": "EUR"}]
    leap = ["2024-02-29", "2025-02-28", "2026-02-28", "2026-03-01", "2027-02-28", "2027-03-01", "2027-11-30", "2028-01-31", "2028-02-28", "2028-02-29"]
    orders += [{"order_id": f"EO-L{i}", "account_id": "E-LEAP", "order_date": d, "amount": str(100 * (i + 1)), "currency": "EUR"} for i, d in enumerate(leap)]
    orders += [{"order_id": f"EO-Z{i}", "account_id": "E-ZERO", "order_date": d.isoformat(), "amount": "0.00", "currency": "EUR"} for i, d in enumerate(days[::2])]
    _append(folder / "orders.csv", orders)
    _append(folder / "complaints.csv", [
        {"complaint_id": f"EB-{i}", "account_id": account_id, "opened_at": d}
        for i, (account_id, d) in enumerate([("E-NULLS", "2028-02-29"), ("E-NULLS", "2027-12-01"), ("E-LEAP", "2024-02-29"), ("E-LEAP", "2028-02-29")])
    ])  # fmt: skip
    _append(folder / "contracts.csv", [
        {"contract_id": "EV-1", "account_id": "E-NULLS", "start_date": "2024-02-29", "end_date": "2026-02-28"},
        {"contract_id": "EV-2", "account_id": "E-NULLS", "start_date": "2026-03-01", "end_date": "2027-02-28"},
        {"contract_id": "EV-3", "account_id": "E-LEAP", "start_date": "2024-02-29", "end_date": "2026-02-28", "annual_value": "0"},
        {"contract_id": "EV-4", "account_id": "E-LEAP", "start_date": "2026-03-01", "end_date": "2028-02-29", "annual_value": "5000", "previous_contract_id": "EV-3"},
        {"contract_id": "EV-5", "account_id": "E-LEAP", "start_date": "2028-02-29", "end_date": "2029-02-28"},
    ])  # fmt: skip
    people = ["Anna", EMPTY, "Bert", EMPTY, EMPTY, "Anna", EMPTY]  # the latest ones without a name
    _append(folder / "interactions.csv", [
        {"interaction_id": f"EI-{a}{i}", "account_id": a, "occurred_at": (NIGHT - timedelta(days=20 * (len(people) - i))).isoformat(),
         "kind": "call", "contact_person": person, "by_owner": EMPTY if i % 2 else "true", "competitor_mentioned": EMPTY}
        for a in ("E-NULLS", "E-LEAP") for i, person in enumerate(people)
    ])  # fmt: skip
    _append(folder / "surveys.csv", [
        {"survey_id": "ES-1", "account_id": "E-NULLS", "answered_at": "2027-02-28", "nps": "9"},
        {"survey_id": "ES-2", "account_id": "E-NULLS", "answered_at": "2028-02-29", "nps": "3"},
        {"survey_id": "ES-3", "account_id": "E-LEAP", "answered_at": "2028-02-29", "nps": "0", "satisfaction": EMPTY},
    ])  # fmt: skip


@pytest.fixture(scope="module")
def book(tmp_path_factory, spark):
    """The sample (60 accounts) with the edge accounts, staged into DuckDB and read by Spark."""
    root = tmp_path_factory.mktemp("spark") / "extracts"
    summary = generate_sample(root, accounts=60, seed=11, end_date=NIGHT)
    assert summary.end_date == NIGHT
    add_edge_accounts(summary.folder)
    con = store.connect(root.parent / "loyalty.duckdb")
    checks = validate_night(con, stage_extracts(con, ExtractSettings(path=root), NIGHT), NIGHT)
    assert all(check.rows_quarantined == 0 for check in checks), [c for c in checks if c.rows_quarantined]
    assert read_extracts(spark, ExtractSettings(path=root), NIGHT) == set()
    yield con, root
    con.close()


def same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float, Decimal)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize("count", [1, 5, 30], ids=["1 night", "5 nights", "30 nights"])
def test_every_outcome_is_the_same_on_spark(book, spark, count):
    con, _ = book
    ruleset = load_rules(ROOT / "rules")
    nights = [NIGHT - timedelta(days=n) for n in range(count)]
    on_duckdb = con.cursor().sql(compile_rules(ruleset, nights).sql).to_arrow_table()
    _, on_spark = evaluate_on_spark(spark, ruleset, nights)
    assert on_spark.column_names == on_duckdb.column_names
    assert on_spark.num_rows == on_duckdb.num_rows and on_duckdb.num_rows % count == 0 and on_duckdb.num_rows > 50 * count
    differ = [
        (row["account_id"], str(row["night"]), name, row[name], other[name])
        for row, other in zip(on_duckdb.to_pylist(), on_spark.to_pylist())
        for name in on_duckdb.column_names
        if not same(row[name], other[name])
    ]
    assert differ == []
    # Sums are exact (kinds.py), so every value is the same double but `unusual`'s chance, whose
    # log-gamma and sum over k are Spark's own: those agree to 1e-9 (above), not bit for bit.
    unequal = {name for row, other in zip(on_duckdb.to_pylist(), on_spark.to_pylist()) for name in on_duckdb.column_names if row[name] != other[name]}
    assert unequal <= {name for name, metric in ruleset.metrics.items() if metric.kind == "unusual"}


def engine_project(tmp_path, root, engine: str):
    """A project folder reading the book's files, its config naming the engine."""
    folder = tmp_path / engine
    folder.mkdir()
    (folder / "extracts").symlink_to(root)
    config = write_config(folder)
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f"engine: {{kind: {engine}, spark: {{master: 'local[1]'}}}}\n")
    return folder, config


def test_a_night_with_engine_spark_stores_the_same_signals_and_warnings(book, spark, tmp_path):
    _, root = book
    ruleset = load_rules(ROOT / "rules")
    stored = {}
    for engine in ("duckdb", "spark"):
        folder, config = engine_project(tmp_path, root, engine)
        settings = load_settings(config)
        assert settings.engine.kind == engine
        with store.connect(settings.database) as con:
            state = run_night(con, settings, ruleset, [], NIGHT)
            signals = con.execute("SELECT account_id, rule_id, severity, evidence FROM signals ORDER BY ALL").fetchall()
            warnings = con.execute(
                "SELECT account_id, rule_id, severity, state, held_nights, notice, mailed, recipient FROM warning_nights ORDER BY ALL"
            ).fetchall()
        stored[engine] = (state.notices, [(a, r, s, json.loads(e)) for a, r, s, e in signals], warnings)
    (notices, signals, warnings), (spark_notices, spark_signals, spark_warnings) = stored["duckdb"], stored["spark"]
    assert signals and len(spark_signals) == len(signals) and spark_notices == notices and spark_warnings == warnings
    for (account, rule, severity, evidence), other in zip(signals, spark_signals):
        assert other[:3] == (account, rule, severity)
        assert other[3].keys() == evidence.keys() and all(same(evidence[k], other[3][k]) for k in evidence), (account, rule)



def test_spark_keeps_out_the_rows_duckdbs_checks_keep_out(spark, tmp_path):
    """The contract's checks as Spark SQL: the same rows kept out, the same values cleared."""
    from tests.support.builders import write_extract

    good = {"name": "A", "owner_email": "anna@example.com", "owner_name": "Anna", "status": "active"}
    folder = write_extract(
        tmp_path / "extracts",
        NIGHT,
        accounts=[{"account_id": "A1", **good}, {"account_id": "A2", **good, "owner_email": "not an address", "status": "Closed"}],
        orders=[
            {"order_id": "O1", "account_id": "A1", "order_date": "2028-02-29", "amount": "10.5", "currency": "EUR"},
            {"order_id": "O2", "account_id": "A1", "order_date": "29.02.2028", "amount": "0", "currency": "EUR"},
            {"order_id": "O3", "account_id": "A1", "order_date": "2028-03-01", "amount": "1", "currency": "EUR"},  # after the night
            {"order_id": "O4", "account_id": "A1", "order_date": "2028-02-01", "amount": "-1", "currency": "EUR"},  # negative
            {"order_id": "O5", "account_id": "NOPE", "order_date": "2028-02-01", "amount": "1", "currency": "EUR"},  # no such account
            {"order_id": "O6", "account_id": "A2", "order_date": "2028-02-30", "amount": "1", "currency": "EUR"},  # no such day
            {"order_id": "O7", "account_id": "A2", "order_date": "2028-02-01", "amount": "1", "currency": "EUR"},
            {"order_id": "O7", "account_id": "A2", "order_date": "2028-02-02", "amount": "2", "currency": "EUR"},  # duplicate id
            {"order_id": "O8", "account_id": "A2", "order_date": "2028-02-02", "amount": "", "currency": "eur"},
        ],
        complaints=[{"complaint_id": "B1", "account_id": "A1", "opened_at": "2028-02-10", "closed_at": "2028-02-01"}],  # closed before opened
        contracts=[{"contract_id": "V1", "account_id": "A1", "start_date": "2028-01-01", "end_date": "2029-01-01", "annual_value": "-5"}],
    )
    extracts = ExtractSettings(path=folder.parent)
    with store.connect(tmp_path / "loyalty.duckdb") as con:
        validate_night(con, stage_extracts(con, extracts, NIGHT), NIGHT)
        read_extracts(spark, extracts, NIGHT)
        for table in ("accounts", "orders", "complaints", "contracts"):
            on_duckdb = con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            on_spark = [tuple(row) for row in spark.sql(f"SELECT * FROM {table} ORDER BY 1").collect()]
            assert on_spark == on_duckdb, table


@pytest.mark.usefixtures("prefect_harness")
def test_loyalty_run_with_engine_spark_gives_duckdbs_warnings_digests_and_ledger(book, spark, tmp_path):
    """`loyalty run` whole (lock, pre-flight, the Prefect flow, digests to the outbox) on the same
    files with each engine. The flow's `start_spark` gets this test session's Spark session back
    from `getOrCreate` (a process has one), as a long-running process would: no second JVM."""
    from loyalty_engine import api

    _, root = book
    runs = {}
    for engine in ("duckdb", "spark"):
        folder, config = engine_project(tmp_path, root, engine)
        for view in TABLES_READ:  # the flow must read the night's files into the session again
            spark.catalog.dropTempView(view)
        summary = api.run(load_settings(config), NIGHT)
        assert all(spark.catalog.tableExists(view) for view in TABLES_READ) is (engine == "spark")
        outbox = {path.name: path.read_bytes() for path in sorted((folder / "outbox" / NIGHT.isoformat()).glob("*.eml"))}
        with store.connect(folder / "data" / "loyalty.duckdb") as con:
            warnings = con.execute("SELECT * EXCLUDE (evidence) FROM warning_nights ORDER BY ALL").fetchall()
            evidence = con.execute("SELECT account_id, rule_id, evidence FROM warning_nights ORDER BY ALL").fetchall()
            ledger = con.execute("SELECT * EXCLUDE (updated_at) FROM deliveries ORDER BY ALL").fetchall()
        runs[engine] = (summary.warnings, summary.notices, warnings, outbox, ledger, evidence)
    on_duckdb, on_spark = runs["duckdb"], runs["spark"]
    assert on_duckdb[3] and on_duckdb[4] and any(on_duckdb[0].values())  # the night mailed digests
    assert on_spark[:5] == on_duckdb[:5]  # warnings, digests and ledger, byte for byte
    for (account, rule, stored), (_, _, other) in zip(on_duckdb[5], on_spark[5], strict=True):
        a, b = json.loads(stored), json.loads(other)
        assert a.keys() == b.keys() and all(same(a[k], b[k]) for k in a), (account, rule)


TABLES_READ = ("accounts", "orders", "complaints", "contracts", "interactions", "surveys")
