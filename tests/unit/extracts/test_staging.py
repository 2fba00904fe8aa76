"""Loading and validating extracts: bad rows and broken lines go to quarantine, a broken extract stops the night."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from loyalty_engine import store
from loyalty_engine.errors import ExtractError
from loyalty_engine.extracts.staging import extract_folder, newest_extract_date, stage_extracts
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import NIGHT, write_extract, write_table

ACCOUNTS = [
    {"account_id": "A1", "name": "Müller Metallbau GmbH", "owner_email": "anna@example.com", "owner_name": "Anna", "status": "active"},
    {"account_id": "A2", "name": "Bäckerei Größ KG", "owner_email": "anna@example.com", "owner_name": "Anna", "status": ""},
]


def order(order_id, account_id="A1", order_date="2026-11-01", amount="10.50", currency="EUR"):
    return {"order_id": order_id, "account_id": account_id, "order_date": order_date, "amount": amount, "currency": currency}


def load(tmp_path, night=NIGHT):
    with store.connect(tmp_path / "db.duckdb") as con:
        return validate_night(con, stage_extracts(con, tmp_path / "extracts", night), night)


def quarantine(tmp_path) -> set[tuple]:
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        return set(con.execute("SELECT table_name, line, row_key, column_name, check_name, value FROM quarantine").fetchall())


def test_bad_rows_go_to_quarantine_and_the_good_ones_go_on(tmp_path):
    write_extract(
        tmp_path / "extracts",
        accounts=ACCOUNTS,
        orders=[
            order("O1"),
            order("O2", amount="-5"),                  # negative amount
            order("O3", account_id="A9"),              # unknown account
            order("O4", order_date="2026-11-24"),      # after the business date
            order("O5", order_date="2026-13-01"),      # malformed date
            order("O6"), order("O6"),                  # duplicate id: both rows
            order("O7", amount="zehn"),                # not a number
            order("O8", order_date="2026-10-01 14:05:00"),  # a timestamp is a date too
            order("O9", order_date="20261002"),             # so is SAP's compact form
        ],
        complaints=[{"complaint_id": "C1", "account_id": "A1", "opened_at": "2026-03-05", "closed_at": "2026-03-01"}],
        contracts=[{"contract_id": "K1", "account_id": "A2", "start_date": "2026-01-01", "end_date": "2025-12-31"}],
    )
    checks = {c.table: c for c in load(tmp_path)}
    assert (checks["orders"].rows_loaded, checks["orders"].rows_quarantined) == (10, 7)
    assert str(checks["orders"].reasons[0]) == "2 × order_id unique (first: line 7, 'O6')"
    assert checks["orders"].newest.isoformat() == "2026-11-01"
    assert (checks["accounts"].rows_loaded, checks["accounts"].rows_quarantined) == (2, 0)
    assert quarantine(tmp_path) == {
        ("orders", 3, "O2", "amount", "amount_never_negative", "-5"),
        ("orders", 4, "O3", "account_id", "account_exists", "A9"),
        ("orders", 5, "O4", "order_date", "not_after_business_date", "2026-11-24"),
        ("orders", 6, "O5", "order_date", "is_date", "2026-13-01"),
        ("orders", 7, "O6", "order_id", "unique", "O6"),
        ("orders", 8, "O6", "order_id", "unique", "O6"),
        ("orders", 9, "O7", "amount", "is_number", "zehn"),
        ("complaints", 2, "C1", "closed_at", "closed_not_before_opened", "2026-03-01"),
        ("contracts", 2, "K1", "end_date", "end_after_start", "2025-12-31"),
    }
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        assert con.execute("SELECT order_id, order_date::VARCHAR, amount FROM orders ORDER BY 1").fetchall() == [
            ("O1", "2026-11-01", 10.5),
            ("O8", "2026-10-01", 10.5),
            ("O9", "2026-10-02", 10.5),
        ]


def test_a_blank_account_line_does_not_switch_off_the_account_check(tmp_path):
    write_extract(tmp_path / "extracts", accounts=ACCOUNTS + [{}], orders=[order("O1", account_id="NOPE")])
    checks = {c.table: c for c in load(tmp_path)}
    assert checks["orders"].rows_quarantined == 1
    assert ("orders", 2, "O1", "account_id", "account_exists", "NOPE") in quarantine(tmp_path)


def test_a_bad_optional_value_is_cleared_and_the_account_stays(tmp_path):
    accounts = [
        {**ACCOUNTS[0], "status": "Active"},                     # a code in capitals is the same code
        {**ACCOUNTS[1], "status": "weird"},                      # not a status: cleared, account kept
    ]
    write_extract(tmp_path / "extracts", accounts=accounts, orders=[order("O1", account_id="A2")])
    checks = {c.table: c for c in load(tmp_path)}
    assert checks["accounts"].rows_quarantined == 0 and checks["orders"].rows_quarantined == 0
    assert str(checks["accounts"].reasons[0]) == "1 × status status_is_active_or_closed (first: line 3, 'weird', value cleared)"
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        assert con.execute("SELECT account_id, status FROM accounts ORDER BY 1").fetchall() == [("A1", "active"), ("A2", None)]


def test_a_required_value_left_empty_is_quarantined_once(tmp_path):
    write_extract(tmp_path / "extracts", accounts=ACCOUNTS, orders=[order("O1", order_date="", amount="")])
    load(tmp_path)
    assert quarantine(tmp_path) == {
        ("orders", 2, "O1", "order_date", "not_nullable", None),
        ("orders", 2, "O1", "amount", "not_nullable", None),
    }


def test_loading_a_night_again_replaces_it(tmp_path):
    write_extract(tmp_path / "extracts", accounts=ACCOUNTS, orders=[order("O1"), order("O2", amount="-1")])
    load(tmp_path)
    load(tmp_path)
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM loads WHERE table_name = 'orders'").fetchone() == (1,)


def test_missing_required_column_names_file_and_column_and_changes_nothing(tmp_path):
    write_extract(tmp_path / "extracts", accounts=ACCOUNTS, orders=[order("O1")])
    load(tmp_path)
    folder = tmp_path / "extracts" / NIGHT.isoformat()
    write_table(folder, "orders", [order("O9")], columns=["order_id", "account_id", "order_date", "currency"])
    with pytest.raises(ExtractError) as error:
        load(tmp_path)
    assert str(error.value).startswith(f"{folder / 'orders.csv'}: missing required column 'amount'")
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:  # the earlier load stands
        assert con.execute("SELECT order_id FROM orders").fetchall() == [("O1",)]


def test_missing_table_file_is_named(tmp_path):
    folder = write_extract(tmp_path / "extracts", accounts=ACCOUNTS)
    (folder / "contracts.csv").unlink()
    with pytest.raises(ExtractError, match=r"missing required table contracts \(contracts.csv or contracts.parquet\)"):
        load(tmp_path)


def test_a_broken_csv_line_is_quarantined_and_the_night_goes_on(tmp_path):
    folder = write_extract(tmp_path / "extracts", accounts=ACCOUNTS, orders=[order("O1")])
    with (folder / "orders.csv").open("a", encoding="utf-8") as handle:
        handle.write("O2,A1,2026-11-01,10,EUR,surplus\r\n")  # one field too many
        handle.write("O3,A1,2026-11-01\r\n")                  # two too few
        handle.write("O4,A1,2026-11-02,12,EUR\r\n")           # good again: keeps its own line
    checks = {c.table: c for c in load(tmp_path)}
    assert (checks["orders"].rows_loaded, checks["orders"].rows_quarantined) == (4, 2)
    assert {row for row in quarantine(tmp_path) if row[0] == "orders"} == {
        ("orders", 3, None, "*", "csv_too_many_columns", "O2,A1,2026-11-01,10,EUR,surplus"),
        ("orders", 4, None, "amount", "csv_missing_columns", "O3,A1,2026-11-01"),
    }
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        assert con.execute("SELECT order_id FROM orders ORDER BY 1").fetchall() == [("O1",), ("O4",)]


def test_an_empty_file_is_named_and_header_only_semicolon_bom_files_load(tmp_path):
    folder = write_extract(tmp_path / "extracts", accounts=ACCOUNTS)
    (folder / "contracts.csv").write_bytes("\ufeffcontract_id;account_id;start_date;end_date\nK1;A1;2026-01-01;2026-12-31\n".encode())
    (folder / "complaints.csv").write_bytes(b"")
    with pytest.raises(ExtractError, match=r"complaints.csv: the file is empty \(a table without rows still needs its header line\)"):
        load(tmp_path)
    (folder / "complaints.csv").write_text("complaint_id,account_id,opened_at\n", encoding="utf-8")
    checks = {c.table: c for c in load(tmp_path)}
    assert (checks["contracts"].rows_loaded, checks["complaints"].rows_loaded, checks["orders"].rows_loaded) == (1, 0, 0)


def test_a_file_that_is_not_utf8_is_read_as_windows_1252(tmp_path):
    folder = write_extract(tmp_path / "extracts", accounts=ACCOUNTS)
    text = (folder / "accounts.csv").read_text(encoding="utf-8")
    (folder / "accounts.csv").write_bytes(text.encode("cp1252"))
    checks = {c.table: c for c in load(tmp_path)}
    assert (checks["accounts"].rows_loaded, checks["accounts"].rows_quarantined) == (2, 0)
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        assert con.execute("SELECT name FROM accounts ORDER BY 1").fetchall() == [("Bäckerei Größ KG",), ("Müller Metallbau GmbH",)]


def test_a_byte_the_encoding_cannot_decode_stops_the_night_with_its_line(tmp_path):
    folder = write_extract(tmp_path / "extracts", accounts=ACCOUNTS)
    text = (folder / "accounts.csv").read_text(encoding="utf-8")
    (folder / "accounts.csv").write_bytes(text.encode("cp1252").replace(b"Gr\xf6\xdf", b"Gr\x81"))  # 0x81: not in cp1252
    with pytest.raises(ExtractError, match=r"accounts.csv:3: byte 0x81 is neither UTF-8 nor Windows-1252 \(cp1252\) text"):
        load(tmp_path)


def test_parquet_and_flat_folder_and_extra_columns(tmp_path):
    flat = tmp_path / "extracts"
    write_extract(tmp_path / "unused", accounts=ACCOUNTS)
    for table in ("accounts", "complaints", "contracts"):
        flat.mkdir(exist_ok=True)
        (tmp_path / "unused" / NIGHT.isoformat() / f"{table}.csv").rename(flat / f"{table}.csv")
    pl.DataFrame(
        {"order_id": ["O1", "O2"], "account_id": ["A1", "A2"], "order_date": [NIGHT, NIGHT],
         "amount": [1.5, -2.0], "currency": ["EUR", "EUR"], "warehouse": ["Nord", "Süd"]}
    ).write_parquet(flat / "orders.parquet")
    assert extract_folder(flat, NIGHT) == flat and newest_extract_date(flat) is None
    (flat / "2026-02-30").mkdir()
    assert newest_extract_date(flat) is None
    checks = {c.table: c for c in load(tmp_path)}
    assert (checks["orders"].rows_loaded, checks["orders"].rows_quarantined) == (2, 1)
    assert ("orders", 2, "O2", "amount", "amount_never_negative", "-2.0") in quarantine(tmp_path)


def test_parquet_ids_stored_as_floats_match_integer_ids(tmp_path):
    folder = write_extract(tmp_path / "extracts", accounts=[{**ACCOUNTS[0], "account_id": "17"}])
    (folder / "orders.csv").unlink()
    pl.DataFrame(
        {"order_id": [1.0, 2.0], "account_id": [17.0, None], "order_date": [NIGHT, NIGHT],
         "amount": [1.5, 2.0], "currency": ["EUR", "EUR"]}
    ).write_parquet(folder / "orders.parquet")
    checks = {c.table: c for c in load(tmp_path)}
    assert checks["orders"].rows_quarantined == 1  # only the order without an account
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        assert con.execute("SELECT order_id, account_id FROM orders").fetchall() == [("1", "17")]


@pytest.mark.parametrize("tail, cut", [("O2,A1,2026-11", True), ('O2,A1,2026-11-01,"10', True), ("O2,A1,2026-11-01,10.50,EUR", False)])
def test_a_last_line_without_line_end_and_too_few_fields_is_a_cut_off_file(tmp_path, tail, cut):
    write_extract(tmp_path / "extracts", accounts=ACCOUNTS, orders=[order("O1")])
    orders = next((tmp_path / "extracts").rglob("orders.csv"))
    text = orders.read_text(encoding="utf-8")
    orders.write_text(text + tail, encoding="utf-8")  # the transfer broke off in the middle of a line
    line = text.count("\n") + 1
    if not cut:  # a complete last record without a line end is fine
        assert next(c for c in load(tmp_path) if c.table == "orders").rows_loaded == 2
        return
    with pytest.raises(ExtractError) as error:
        load(tmp_path)
    [problem] = error.value.problems
    assert (problem.table, problem.check) == ("orders", "readable")
    assert problem.detail.startswith(f"{orders}:{line}: orders.csv looks cut off at line {line} (its last line has no line end and ")
