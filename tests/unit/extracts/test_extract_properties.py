"""Properties of the CSV loader and the validator, on generated files (hypothesis).

Whatever the rows hold (delimiters, quotes, line breaks, umlauts, control characters, empty
cells, too many or too few fields), loading never crashes, and every record of the file is
either a clean row or quarantined with a reason: none lost, none counted twice, each at the
line it starts on. Files with broken quoting (raw lines) either load under the same counts or
stop with one line naming the file and line.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_engine import store
from loyalty_engine.config import CsvSettings, ExtractSettings
from loyalty_engine.errors import ExtractError
from loyalty_engine.extracts.staging import ExtractProblems, stage_extracts
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import NIGHT, write_extract

COLUMNS = ["order_id", "account_id", "order_date", "amount", "currency"]
# 50 examples each keep the suite fast; LOYALTY_PROPERTY_EXAMPLES=1000 searches harder.
SETTINGS = settings(
    max_examples=int(os.environ.get("LOYALTY_PROPERTY_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text a cell may hold: the dialect's specials, umlauts and Windows-1252's extras, controls.
SPECIAL = [",", ";", '"', "\n", "\r\n", "\r", " ", "\t", "\x00", "\x01", "\x1b", "\x7f", "ä", "Ö", "ß", "€", "„", "“", "é"]
cell_text = st.lists(st.sampled_from(SPECIAL) | st.text("abcXYZ019.-", min_size=1, max_size=4), max_size=5).map("".join)
# Values that pass, so that clean rows are generated too.
good = {
    "order_id": st.sampled_from(["O1", "O2", "O3", "Ö4"]),
    "account_id": st.sampled_from(["A1", "A1", "A9"]),
    "order_date": st.sampled_from(["2026-11-01", "31.10.2026", "20261102", "2026-13-01"]),
    "amount": st.sampled_from(["10", "1.234,56", "12.50", "-1", "0"]),
    "currency": st.sampled_from(["EUR", "eur", "CHF"]),
}
good_row = st.tuples(*(good[c] for c in COLUMNS)).map(list)
any_row = st.lists(st.one_of(cell_text, st.sampled_from(["", "A1", "2026-11-01"])), min_size=1, max_size=7)
rows = st.lists(st.one_of(good_row, any_row), max_size=12)
dialects = st.tuples(st.sampled_from([",", ";"]), st.sampled_from(["\n", "\r\n"]), st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))


def write_orders(folder: Path, records: list[list[str]], delimiter: str, newline: str, encoding: str) -> list[int]:
    """The orders file as an exporter would write it: proper quoting (csv module; '\\r' and
    '\\n' always quoted). Returns the line each record starts on."""
    text, lines, line = [], [], 2
    for record in [COLUMNS] + records:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(record)
        written = buffer.getvalue()[:-2] + newline
        text.append(written)
        if record is not COLUMNS:
            lines.append(line)
            line += written.count("\n")
    data = "".join(text)
    if encoding == "cp1252":
        data = data.encode("cp1252", errors="replace").decode("cp1252")  # é € „ “ all exist; just in case
    (folder / "orders.csv").write_bytes(data.encode(encoding))
    return lines


def night_folder(root: Path) -> Path:
    return write_extract(root, accounts=[{"account_id": "A1", "name": "Müller", "owner_email": "a@example.com", "owner_name": "A"}])


def counts(db: Path) -> tuple[int, int, int, int, list[int]]:
    with duckdb.connect(str(db)) as con:
        clean = con.execute("SELECT count(*) FROM orders").fetchone()[0]
        loaded, quarantined = con.execute("SELECT rows_loaded, rows_quarantined FROM loads WHERE table_name = 'orders'").fetchone()
        kept_out = con.execute("SELECT count(DISTINCT line) FROM quarantine WHERE table_name = 'orders' AND row_kept_out").fetchone()[0]
        no_reason = con.execute("SELECT count(*) FROM quarantine WHERE check_name IS NULL OR check_name = '' OR column_name IS NULL").fetchone()[0]
        assert no_reason == 0
        lines = [row[0] for row in con.execute("SELECT DISTINCT line FROM quarantine WHERE table_name = 'orders' ORDER BY 1").fetchall()]
    assert kept_out == quarantined
    return clean, loaded, quarantined, kept_out, lines


@pytest.mark.slow  # many examples, each a DuckDB load
@SETTINGS
@given(records=rows, dialect=dialects)
def test_every_record_is_clean_or_quarantined_once_at_its_line(records, dialect):
    delimiter, newline, encoding = dialect
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = night_folder(root / "extracts")
        starts = write_orders(folder, records, delimiter, newline, encoding)
        db = root / "db.duckdb"
        with store.connect(db) as con:
            staged = stage_extracts(con, ExtractSettings(path=root / "extracts"), NIGHT)
            good_lines = [r[0] for r in con.execute("SELECT _line FROM stage_orders").fetchall()]
            broken_lines = [r[0] for r in con.execute("SELECT line FROM stage_orders_rejects").fetchall()]
            validate_night(con, staged, NIGHT)
        # Every record is staged or rejected, at the line it starts on; none twice.
        assert sorted(good_lines + broken_lines) == starts
        clean, loaded, quarantined, _, lines = counts(db)
        assert loaded == len(records)
        assert clean + quarantined == len(records)
        assert set(broken_lines) <= set(lines) <= set(starts)


garbage_line = st.lists(st.sampled_from(['"', ",", ";", " ", "\r", "a", "ß", "€", "1", "2026-11-01", "EUR", "A1"]), max_size=12).map("".join)


@pytest.mark.slow  # many examples, each a DuckDB load
@SETTINGS
@given(lines=st.lists(garbage_line, max_size=10), newline=st.sampled_from(["\n", "\r\n"]), delimiter=st.sampled_from([",", ";"]))
def test_raw_lines_load_with_consistent_counts_or_stop_naming_file_and_line(lines, newline, delimiter):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = night_folder(root / "extracts")
        text = newline.join([delimiter.join(COLUMNS)] + lines) + newline
        (folder / "orders.csv").write_bytes(text.encode("cp1252"))
        physical = text.count("\n")
        db = root / "db.duckdb"
        with store.connect(db) as con:
            try:
                staged = stage_extracts(con, ExtractSettings(path=root / "extracts", csv=CsvSettings()), NIGHT)
            except ExtractProblems as error:
                for problem in error.problems:
                    assert "\n" not in problem.detail
                    assert problem.check == "readable" and problem.detail.startswith(f"{folder / 'orders.csv'}:")
                    line = problem.detail.split(":")[1]
                    assert line.isdigit() and 2 <= int(line) <= physical
                return
            good_lines = [r[0] for r in con.execute("SELECT _line FROM stage_orders").fetchall()]
            broken_lines = [r[0] for r in con.execute("SELECT line FROM stage_orders_rejects").fetchall()]
            validate_night(con, staged, NIGHT)
        all_lines = good_lines + broken_lines
        assert len(set(all_lines)) == len(all_lines)  # no record counted twice
        assert all(2 <= line <= physical for line in all_lines)
        clean, loaded, quarantined, _, quarantined_lines = counts(db)
        assert loaded == len(all_lines)
        assert clean + quarantined == loaded
        assert set(quarantined_lines) <= set(all_lines)


def test_the_generator_writes_what_it_says(tmp_path):
    """The line bookkeeping of write_orders, checked once by hand."""
    starts = write_orders(tmp_path, [["O1", "a\nb", "x"], ["O2"], ["O3", "c\r\nd\ne"]], ",", "\r\n", "utf-8")
    assert starts == [2, 4, 5]
    assert (tmp_path / "orders.csv").read_bytes().count(b"\n") == 7
    assert not isinstance(ExtractError, type(None))
