"""CSV dialects of German ERPs, from fixture files written as real bytes (tests/fixtures/extracts/).

Each folder is the same night in another dialect: SAP (Windows-1252, ';', CRLF), DATEV
(Latin-1), Excel (UTF-8 with BOM) and a comma file with quoted values spanning lines. All load
with no settings at all; the typed values, the quarantine and the line numbers are the same.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loyalty_engine import store
from loyalty_engine.config import CsvSettings, ExtractSettings, TableSettings
from loyalty_engine.errors import ExtractError
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import NIGHT, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "extracts"
DIALECTS = ["sap_cp1252_semicolon", "datev_latin1", "excel_utf8_bom", "quoted_multiline"]
PREMIUM = {"datev_latin1": 'Größe & Söhne "Premium" KG, Nord'}  # Latin-1 has no „“


def load(extracts: ExtractSettings, db, night: date = NIGHT):
    with store.connect(db) as con:
        staged = stage_extracts(con, extracts, night)
        checks = {c.table: c for c in validate_night(con, staged, night)}
    return staged, checks


def rows(db, sql: str) -> list[tuple]:
    with duckdb.connect(str(db)) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_loads_with_no_settings(tmp_path, dialect):
    db = tmp_path / "db.duckdb"
    staged, checks = load(ExtractSettings(path=FIXTURES / dialect), db)
    german = dialect != "quoted_multiline"
    assert (staged["orders"].delimiter, staged["orders"].decimal) == ((";", ",") if german else (",", "."))
    assert staged["accounts"].encoding == {"sap_cp1252_semicolon": "cp1252", "datev_latin1": "cp1252"}.get(dialect, "utf-8")

    assert rows(db, "SELECT account_id, name, owner_name FROM accounts ORDER BY 1") == [
        ("A1", "Müller Metallbau GmbH", "Anna Weiß"),
        ("A2", PREMIUM.get(dialect, "Größe & Söhne „Premium“ KG, Nord"), 'Jörg "JJ" Straße'),
        ("A3", "Bäckerei Straße; Filiale Nord", "Anna Weiß"),
    ]
    expected_orders = [
        ("O1", date(2026, 10, 31), 1234.56),
        ("O2", date(2026, 11, 1), 99.9),
        ("O3", date(2026, 11, 2), 1_000_000.0),
        ("O4", date(2026, 11, 15), 0.5),
        ("O7", date(2026, 11, 20), 7.0),
    ] + ([("O9", date(2026, 11, 22), 4.25)] if not german else [])
    assert rows(db, "SELECT order_id, order_date, amount FROM orders ORDER BY 1") == expected_orders
    assert rows(db, "SELECT category FROM complaints") == [
        ("Lieferung verspätet",) if dialect == "datev_latin1" else ("Lieferung „verspätet“, 50 € Gutschrift",)
    ]
    assert rows(db, "SELECT start_date, end_date, annual_value, term_months FROM contracts") == [
        (date(2026, 1, 1), date(2026, 12, 31), 12000.0, 12.0)
    ]

    # Lines are the file's own: in quoted_multiline, O1 and O4 span two lines each.
    d = ";" if german else ","
    amount = "12,00" if german else "12.00"
    broken = [("O5", 4 if german else 5, f"O5{d}A1{d}{'16.11.2026' if german else '2026-11-16'}{d}{amount}{d}EUR{d}x{d}surplus")]
    bad_date = 6 if german else 7
    if not german:
        broken.append(("O8", 11, 'O8,A1,2026-11-21,3,EUR,"kaputt\nzweizeilig",surplus'))
    assert rows(db, "SELECT line, row_key, column_name, check_name, value, row_kept_out FROM quarantine ORDER BY line") == sorted(
        [(line, None, "*", "csv_too_many_columns", raw, True) for _, line, raw in broken]
        + [(bad_date, "O6", "order_date", "is_date", "32.11.2026" if german else "2026-11-32", True)]
    )
    assert (checks["orders"].rows_loaded, checks["orders"].rows_quarantined) == (len(expected_orders) + 1 + len(broken), 1 + len(broken))
    assert rows(db, "SELECT rows_loaded, rows_quarantined FROM loads WHERE table_name = 'orders'") == [
        (checks["orders"].rows_loaded, checks["orders"].rows_quarantined)
    ]


def test_line_numbers_after_quoted_line_breaks_and_broken_records(tmp_path):
    """Every record keeps the line it starts on, whatever spans lines or is rejected before it."""
    with store.connect(tmp_path / "db.duckdb") as con:
        stage_extracts(con, FIXTURES / "quoted_multiline", NIGHT)
        staged = con.execute("SELECT _line, order_id FROM stage_orders ORDER BY 1").fetchall()
        rejected = con.execute("SELECT line FROM stage_orders_rejects ORDER BY 1").fetchall()
        accounts = con.execute("SELECT _line, account_id FROM stage_accounts ORDER BY 1").fetchall()
    assert staged == [(2, "O1"), (4, "O2"), (6, "O3"), (7, "O6"), (8, "O4"), (10, "O7"), (13, "O9")]
    assert rejected == [(5,), (11,)]
    assert accounts == [(2, "A1"), (4, "A2"), (5, "A3")]


def test_per_table_settings_are_merged_over_the_defaults(tmp_path):
    """Defaults ';' + cp1252 for every table; orders come as Latin-1 and contracts with a decimal point."""
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "sap_cp1252_semicolon", folder)
    orders = (folder / "orders.csv").read_bytes().decode("cp1252")
    (folder / "orders.csv").write_bytes(orders.replace("Lieferung an Tor 3", "Straße \x96 Tor 3").encode("latin-1"))
    (folder / "contracts.csv").write_bytes(
        b"contract_id;account_id;start_date;end_date;annual_value\r\nK1;A1;01/01/2026;12/31/2026;12000.50\r\n"
    )
    extracts = ExtractSettings(
        path=folder,
        csv=CsvSettings(delimiter=";", encoding="cp1252"),
        tables={
            "orders": TableSettings(csv=CsvSettings(encoding="latin-1")),
            "contracts": TableSettings(csv=CsvSettings(decimal=".", date_format="%m/%d/%Y")),
        },
    )
    db = tmp_path / "db.duckdb"
    staged, checks = load(extracts, db)
    dialects = {name: (s.delimiter, s.encoding, s.decimal, s.date_format) for name, s in staged.items()}
    assert dialects == {
        "accounts": (";", "cp1252", ",", None),
        "orders": (";", "latin-1", ",", None),  # the delimiter still from the defaults
        "complaints": (";", "cp1252", ",", None),
        "contracts": (";", "cp1252", ".", "%m/%d/%Y"),
    }
    assert rows(db, "SELECT start_date, end_date, annual_value FROM contracts") == [(date(2026, 1, 1), date(2026, 12, 31), 12000.5)]
    assert rows(db, "SELECT amount FROM orders WHERE order_id = 'O1'") == [(1234.56,)]
    assert checks["orders"].rows_quarantined == 2
    assert rows(db, "SELECT name FROM accounts WHERE account_id = 'A2'") == [("Größe & Söhne „Premium“ KG, Nord",)]


def test_decimal_comma_reads_only_real_thousands_groups(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "excel_utf8_bom", folder)
    (folder / "orders.csv").write_text(
        "order_id;account_id;order_date;amount;currency\n"
        "P1;A1;2026-11-01;1.234.567,8;EUR\n"
        "P2;A1;01.11.2026;-0,5;EUR\n"
        "P3;A1;1.11.2026;1.5;EUR\n"  # a decimal point in a decimal-comma file: not 15
        "P4;A1;01.11.26;10;EUR\n",  # two-digit year: not the year 26
        encoding="utf-8",
    )
    db = tmp_path / "db.duckdb"
    load(ExtractSettings(path=folder), db)
    assert rows(db, "SELECT order_id, order_date, amount FROM orders ORDER BY 1") == [
        ("P1", date(2026, 11, 1), 1234567.8),
    ]
    assert rows(db, "SELECT line, column_name, check_name, value FROM quarantine WHERE table_name = 'orders' ORDER BY 1") == [
        (3, "amount", "amount_never_negative", "-0,5"),
        (4, "amount", "is_number", "1.5"),
        (5, "order_date", "is_date", "01.11.26"),
    ]


def test_a_bom_means_utf8_and_a_bad_byte_after_it_is_named(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "excel_utf8_bom", folder)
    data = (folder / "accounts.csv").read_bytes()
    (folder / "accounts.csv").write_bytes(data.replace("Straße; Filiale".encode(), "Straße; Filiale".encode("cp1252")))
    with pytest.raises(ExtractError, match=r"accounts.csv:4: byte 0xDF is not UTF-8 \(set extracts.csv.encoding"):
        load(ExtractSettings(path=folder, csv=CsvSettings(encoding="cp1252")), tmp_path / "db.duckdb")


def test_configured_utf8_names_the_first_line_that_is_not(tmp_path):
    with pytest.raises(ExtractError) as error:
        load(ExtractSettings(path=FIXTURES / "sap_cp1252_semicolon", csv=CsvSettings(encoding="utf-8")), tmp_path / "db.duckdb")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{FIXTURES / 'sap_cp1252_semicolon' / 'accounts.csv'}:2: byte 0xFC is not UTF-8")
    assert "complaints.csv:2: byte 0x84 is not UTF-8" in " ".join(p.detail for p in error.value.problems)


def test_an_unterminated_quote_stops_the_night_with_its_line(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "quoted_multiline", folder)
    text = (folder / "orders.csv").read_text(encoding="utf-8")
    (folder / "orders.csv").write_text(text.replace('O7,A2,2026-11-20,7,EUR,letzte', 'O7,A2,"2026-11-20,7,EUR,letzte'), encoding="utf-8")
    with pytest.raises(ExtractError, match=r"orders.csv:10: a quoted value is not closed where its line ends"):
        load(ExtractSettings(path=folder), tmp_path / "db.duckdb")


def test_a_stray_quote_inside_a_line_costs_that_line_only(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "quoted_multiline", folder)
    text = (folder / "orders.csv").read_text(encoding="utf-8")
    (folder / "orders.csv").write_text(text.replace('O7,A2,2026-11-20,7,EUR,letzte', 'O7,A2,"2026-11-20"x,7,EUR,letzte'), encoding="utf-8")
    load(ExtractSettings(path=folder), tmp_path / "db.duckdb")
    assert ("csv_unquoted_value", 10, 'O7,A2,"2026-11-20"x,7,EUR,letzte') in rows(
        tmp_path / "db.duckdb", "SELECT check_name, line, value FROM quarantine"
    )


def test_a_bad_date_format_setting_is_named(tmp_path):
    with pytest.raises(ExtractError, match=r"extracts.csv.date_format '%d.%m.%Q' is not a strptime format"):
        load(ExtractSettings(path=FIXTURES / "quoted_multiline", csv=CsvSettings(date_format="%d.%m.%Q")), tmp_path / "db.duckdb")


def test_utf16_is_named(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "quoted_multiline", folder)
    (folder / "accounts.csv").write_bytes((folder / "accounts.csv").read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(ExtractError, match=r"accounts.csv:1: the file is UTF-16; export it as UTF-8 or Windows-1252"):
        load(ExtractSettings(path=folder), tmp_path / "db.duckdb")


def test_mixed_line_ends_load_and_a_lone_cr_is_named(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "quoted_multiline", folder)
    text = (folder / "orders.csv").read_text(encoding="utf-8")
    # Lines appended by another tool: CRLF after LF. DuckDB alone refuses the whole file.
    (folder / "orders.csv").write_text(text + "O10,A1,2026-11-22,1,EUR,\r\nO11,A1,2026-11-22,2,EUR,\r\n", encoding="utf-8")
    load(ExtractSettings(path=folder), tmp_path / "db.duckdb")
    with store.connect(tmp_path / "db.duckdb") as con:
        assert con.execute("SELECT count(*) FROM orders WHERE order_id IN ('O10', 'O11')").fetchone() == (2,)
    (folder / "orders.csv").write_text(text + "O10,A1,2026-11-22,1,EUR,a\rb\n", encoding="utf-8")
    with pytest.raises(ExtractError, match=r"orders.csv:14: a carriage return \(CR\) inside a line, outside quotes"):
        load(ExtractSettings(path=folder), tmp_path / "db.duckdb")


def test_parquet_with_other_but_compatible_types_loads(tmp_path):
    """int32 or int64, float32 or decimal amounts, timestamps (with or without zone) where dates are meant."""
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "quoted_multiline", folder)
    (folder / "orders.csv").unlink()
    (folder / "contracts.csv").unlink()
    pq.write_table(
        pa.table({
            "order_id": pa.array([1, 2, 3], pa.int32()),
            "account_id": pa.array(["A1", "A2", "A3"]),
            "order_date": pa.array([datetime(2026, 10, 31, 14, 5), datetime(2026, 11, 1), datetime(2026, 11, 2)], pa.timestamp("ms")),
            "amount": pa.array([Decimal("1234.56"), Decimal("0.50"), Decimal("-1.00")], pa.decimal128(10, 2)),
            "currency": pa.array(["EUR"] * 3),
        }),
        folder / "orders.parquet",
    )
    pq.write_table(
        pa.table({
            "contract_id": pa.array([7], pa.int64()),
            "account_id": pa.array(["A1"]),
            "start_date": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC")),
            "end_date": pa.array([date(2026, 12, 31)], pa.date32()),
            "annual_value": pa.array([12000.5], pa.float32()),
        }),
        folder / "contracts.parquet",
    )
    db = tmp_path / "db.duckdb"
    staged, checks = load(ExtractSettings(path=folder), db)
    assert staged["orders"].types == {
        "order_id": "INTEGER", "account_id": "VARCHAR", "order_date": "TIMESTAMP", "amount": "DECIMAL(10,2)", "currency": "VARCHAR",
    }
    assert rows(db, "SELECT order_id, order_date, amount FROM orders ORDER BY 1") == [
        ("1", date(2026, 10, 31), 1234.56), ("2", date(2026, 11, 1), 0.5),
    ]
    assert rows(db, "SELECT line, row_key, check_name, value FROM quarantine WHERE table_name = 'orders'") == [
        (3, "3", "amount_never_negative", "-1.00")
    ]
    assert rows(db, "SELECT contract_id, start_date, end_date, annual_value, term_months FROM contracts") == [
        ("7", date(2026, 1, 1), date(2026, 12, 31), 12000.5, 12.0)
    ]


def test_a_byte_the_configured_encoding_lacks_is_named(tmp_path):
    folder = tmp_path / "extracts"
    shutil.copytree(FIXTURES / "sap_cp1252_semicolon", folder)
    data = (folder / "orders.csv").read_bytes()
    (folder / "orders.csv").write_bytes(data.replace(b"letzte", b"letzte \x81"))
    with pytest.raises(ExtractError, match=r"orders.csv:8: byte 0x81 is not Windows-1252 \(cp1252\) text, as extracts.csv.encoding says"):
        load(ExtractSettings(path=folder, csv=CsvSettings(encoding="cp1252")), tmp_path / "db.duckdb")
