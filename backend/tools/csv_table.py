"""CSV text read as a table, the same way for every tool: its dialect, its header row, and what a cell holds.

`sql_query` (CSV files become tables) and `data_analysis` (CSV text becomes statistics) both read through
here, so one cell is one value to both: a number to one is a number to the other.

What a number is: a plain decimal, as a spreadsheet would take it: an optional sign, ASCII digits with at
most one decimal point, an optional exponent (`42`, `-3.5`, `.5`, `+1e3`), surrounding spaces ignored, and
finite as a 64-bit float. Everything else is text, notably what only Python's `float()` would accept
(`1_000`, `nan`, `inf`, `Infinity`, non-ASCII digits such as `٣`), thousands separators (`1,000`, whose
comma is ambiguous between locales), hexadecimal (`0x1F`) and numbers beyond the float range (`1e999`),
which would poison every sum they entered. Integers of up to 18 digits stay exact integers (they fit
SQLite's 64-bit INTEGER); longer ones are floats, as in JSON.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator

SNIFF_CHARS = 20_000
"""The dialect is guessed from the start only: the sniffer's regular expressions slow with their input."""
DELIMITERS = ",;\t|"
"""The delimiters real exports use; letting the sniffer pick any character lets it pick a letter."""
EXACT_INTEGER_DIGITS = 18
"""Every integer of 18 digits fits in 64 bits; some of 19 do not."""

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")

CellValue = int | float | str | None
"""A blank cell is None, a number an int or float, anything else its text without surrounding spaces."""


class InvalidCsv(ValueError):
    """CSV text that cannot be read as a table; the message says what and on which line."""


def cell_value(cell: str | None) -> CellValue:
    """What one cell holds, by the one rule every tool follows (the module docstring says why)."""
    text = (cell or "").strip()
    if not text:
        return None
    if not _NUMBER.fullmatch(text):
        return text
    if _INTEGER.fullmatch(text) and len(text.lstrip("+-")) <= EXACT_INTEGER_DIGITS:
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else text


def sniff_dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """The dialect of the text's first lines; plain comma-separated when they give no clear answer."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only: a cut row would mislead the count of delimiters
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


class CsvTable:
    """The rows of one CSV text: blank rows are skipped, and the first other row is the header.

    Rows are read lazily, so a large text is never held twice; `line` is where the reader stands, for
    messages about the row just read.
    """

    def __init__(self, text: str) -> None:
        text = text.removeprefix("\ufeff")  # a byte-order mark pasted with the text is not part of the header
        self._reader = csv.reader(io.StringIO(text, newline=""), sniff_dialect(text))
        self._rows = self._non_blank_rows()
        header = next(self._rows, None)
        if header is None:
            raise InvalidCsv("empty CSV: expected a header row")
        self.header: list[str] = header

    @property
    def line(self) -> int:
        return self._reader.line_num

    def rows(self) -> Iterator[list[str]]:
        """The data rows after the header, each as read (cells not yet typed: see `cell_value`)."""
        return self._rows

    def _non_blank_rows(self) -> Iterator[list[str]]:
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise InvalidCsv(f"invalid CSV on line {self._reader.line_num}: {error}") from None
            if any(cell.strip() for cell in row):
                yield row
