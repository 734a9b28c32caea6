"""csv_table: the one CSV reader of sql_query and data_analysis, and the one rule for what a cell holds."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path

import pytest

from backend.tools.csv_table import SNIFF_CHARS, CellValue, CsvTable, InvalidCsv, cell_value, sniff_dialect
from backend.tools.data_analysis import analyse
from backend.tools.sql.sources import build_csv_database


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("+5", 5),
        (" 12 ", 12),
        ("007", 7),
        ("-3.5", -3.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("+1e3", 1000.0),
        ("2.5E-3", 0.0025),
        ("123456789012345678", 123456789012345678),
        ("12345678901234567890", 1.2345678901234567e19),
        ("1e308", 1e308),
        ("", None),
        ("   ", None),
        (None, None),
        ("1_000", "1_000"),
        ("nan", "nan"),
        ("NaN", "NaN"),
        ("inf", "inf"),
        ("-Infinity", "-Infinity"),
        ("1e999", "1e999"),
        ("9" * 400, "9" * 400),
        ("1,000", "1,000"),
        ("0x1F", "0x1F"),
        ("٣", "٣"),
        ("1.2.3", "1.2.3"),
        (".", "."),
        ("-", "-"),
        ("e5", "e5"),
        ("12 kg", "12 kg"),
        ("  Paris ", "Paris"),
    ],
)
def test_a_number_is_a_plain_finite_decimal_and_anything_else_is_text(cell: str | None, value: CellValue) -> None:
    typed = cell_value(cell)

    assert typed == value
    assert type(typed) is type(value)


@pytest.mark.parametrize(("text", "delimiter"), [("a,b\n1,2\n", ","), ("a;b\n1;2\n", ";"), ("a\tb\n1\t2\n", "\t"),
                                                 ("a|b\n1|2\n", "|")])
def test_the_usual_delimiters_are_recognised(text: str, delimiter: str) -> None:
    assert sniff_dialect(text).delimiter == delimiter
    assert CsvTable(text).header == ["a", "b"]


def test_a_letter_is_never_taken_for_the_delimiter() -> None:
    assert sniff_dialect("name\nxax\nyay\n").delimiter == ","


def test_the_dialect_comes_from_the_start_of_the_text_only() -> None:
    """The sniffer slows with the square of its input; `"a", ` repeated is its worst case."""
    text = 'x' + '"a", ' * 400_000
    started = time.monotonic()
    sniff_dialect(text)
    elapsed = time.monotonic() - started

    assert len(text) > 100 * SNIFF_CHARS
    assert elapsed < 2, f"sniffing took {elapsed:.1f} s"


def test_blank_rows_and_a_byte_order_mark_are_skipped_before_the_header() -> None:
    table = CsvTable("\ufeff\n  \ncity,temp\n\nParis,12\n,\nLyon,15\n")

    assert table.header == ["city", "temp"]
    assert list(table.rows()) == [["Paris", "12"], ["Lyon", "15"]]


@pytest.mark.parametrize("text", ["", "\n\n", " , \n"])
def test_text_without_a_header_row_is_refused(text: str) -> None:
    with pytest.raises(InvalidCsv, match=r"^empty CSV: expected a header row$"):
        CsvTable(text)


def test_a_malformed_row_is_refused_naming_its_line() -> None:
    table = CsvTable("a,b\n1,2\n3," + "x" * (csv.field_size_limit() + 1) + "\n")

    with pytest.raises(InvalidCsv, match=r"^invalid CSV on line 3: field larger than field limit"):
        list(table.rows())


AGREEMENT_CELLS = {
    "integer": "42",
    "signed": "-7",
    "padded": " 12 ",
    "decimal": "-3.5",
    "exponent": "+1e3",
    "long_integer": "12345678901234567890",
    "underscored": "1_000",
    "nan": "nan",
    "inf": "inf",
    "infinity": "-Infinity",
    "beyond_float": "1e999",
    "thousands": "1,000",
    "hexadecimal": "0x1F",
    "arabic_digit": "٣",
    "word": "Paris",
}


def test_the_same_cell_is_typed_the_same_by_sql_query_and_data_analysis(tmp_path: Path) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AGREEMENT_CELLS)
    writer.writerows([list(AGREEMENT_CELLS.values())] * 2)
    path = tmp_path / "cells.csv"
    path.write_text(out.getvalue(), encoding="utf-8")

    notes: list[str] = []
    build_csv_database(tmp_path / "cells.sqlite", [path], notes)
    with sqlite3.connect(tmp_path / "cells.sqlite") as db:
        sql_types = {name: kind for _, name, kind, *_ in db.execute('PRAGMA table_info("cells")')}
        sql_values = dict(zip(sql_types, db.execute('SELECT * FROM "cells" LIMIT 1').fetchone(), strict=True))
    fields = analyse(out.getvalue(), "csv")["fields"]

    assert notes == []
    for column, cell in AGREEMENT_CELLS.items():
        expected = cell_value(cell)
        numeric = not isinstance(expected, str)
        assert (sql_types[column] != "TEXT") is numeric, column
        assert fields[column]["type"] == ("numeric" if numeric else "text"), column
        assert sql_values[column] == expected, column
        if numeric:
            # data_analysis shows 12 significant digits
            assert fields[column]["numeric"]["min"] == pytest.approx(expected, rel=1e-11), column
        else:
            assert fields[column]["top_values"] == [{"value": expected, "count": 2}], column
