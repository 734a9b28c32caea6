"""Citations: 1-based page labels (first, last, crossing pages) and quotes checked against the cited chunk."""

from __future__ import annotations

import pytest

from backend.rag.citations import citation_title, page_label, quote_in_chunk, source_label
from backend.rag.ports import ChunkRecord


def chunk(page_start: int | None, page_end: int | None, filename: str = "report.pdf") -> ChunkRecord:
    return ChunkRecord("f:4", "f", filename, 4, "text", 0, 4, page_start=page_start, page_end=page_end)


@pytest.mark.parametrize(("pages", "label", "source"), [
    ((1, 1), "p.1", "[report.pdf p.1]"),
    ((12, 12), "p.12", "[report.pdf p.12]"),
    ((3, 4), "pp.3-4", "[report.pdf pp.3-4]"),
    ((5, None), "p.5", "[report.pdf p.5]"),
    ((None, None), None, "[report.pdf]"),
])
def test_pages_are_cited_one_based_and_a_chunk_crossing_pages_cites_both(
    pages: tuple[int | None, int | None], label: str | None, source: str
) -> None:
    record = chunk(*pages)
    assert page_label(record) == label
    assert source_label(record) == source


def test_a_citation_title_names_file_pages_and_chunk() -> None:
    assert citation_title(chunk(3, 4)) == "report.pdf pp.3-4, chunk 4"
    assert citation_title(chunk(None, None, "notes.md")) == "notes.md, chunk 4"


TEXT = "Late payments incur a fee of\n2 %  per month.  The ﬁnal notice is sent after “sixty” days."


@pytest.mark.parametrize("quote", [
    "late payments incur a fee of 2 % per month",
    "LATE PAYMENTS   incur",
    '"The final notice is sent"',
    'after "sixty" days.',
])
def test_a_quote_that_occurs_in_the_chunk_is_verified_despite_case_whitespace_and_typography(quote: str) -> None:
    assert quote_in_chunk(quote, TEXT)


@pytest.mark.parametrize("quote", [
    "late payments incur a fee of 3 % per month",  # a changed number
    "fee of 2 % per year",
    "the final notice is sent after sixty days and a second one",  # runs past the chunk
    "of",  # too short to prove anything
    "   ",
])
def test_a_quote_that_is_not_in_the_chunk_is_refused(quote: str) -> None:
    assert not quote_in_chunk(quote, TEXT)
