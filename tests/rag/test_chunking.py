"""Chunks: exact character spans, 1-based pages (first, last, and chunks that cross a page), CSV headers kept."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from backend.rag.chunking import PageLocator, chunk_document
from backend.rag.extract_text import grouped_rows, spans_of
from backend.rag.parsed_document import ParsedDocument
from backend.rag.parsing import DocumentParser, ParseLimits
from tests.rag import sample_files


def _pdf_like(page_texts: list[str]) -> ParsedDocument:
    text, pages = spans_of(page_texts, "\n\n")
    return ParsedDocument(kind="pdf", text=text, pages=pages, sections=[(0, len(text))])


def _page_of(document: ParsedDocument, offset: int) -> int:
    return next(number for number, (start, end) in enumerate(document.pages, start=1) if start <= offset < end + 2)


def test_every_chunk_is_its_exact_span_of_the_document_text_with_the_pages_it_touches() -> None:
    # Short pages merge into chunks that cross a page; long ones are split within the page.
    sizes = {1: 40, 2: 70, 3: 260, 4: 30, 5: 45, 6: 180}
    pages = [" ".join(f"p{number}w{word}" for word in range(sizes[number])) for number in sorted(sizes)]
    document = _pdf_like(pages)
    chunks = chunk_document(document, "file-x", "x.pdf", 1000, 200)
    assert [chunk.chunk_index for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.chunk_id for chunk in chunks] == [f"file-x:{i}" for i in range(len(chunks))]
    for chunk in chunks:
        assert document.text[chunk.char_start:chunk.char_end] == chunk.text
        assert len(chunk.text) <= 1000
        assert chunk.page_start == _page_of(document, chunk.char_start)
        assert chunk.page_end == _page_of(document, chunk.char_end - 1)
        first_word, last_word = chunk.text.split()[0], chunk.text.split()[-1]
        assert first_word.startswith(f"p{chunk.page_start}w") and last_word.startswith(f"p{chunk.page_end}w")
    assert chunks[0].page_start == 1 and chunks[0].char_start == 0
    assert chunks[-1].page_end == 6 and chunks[-1].char_end == len(document.text)
    crossing = [chunk for chunk in chunks if chunk.page_end != chunk.page_start]
    assert crossing and all(chunk.page_end == chunk.page_start + 1 for chunk in crossing)
    for chunk in chunks:  # where each later page begins inside the chunk, so a quote is cited with its own page
        assert len(chunk.page_breaks) == (chunk.page_end or 0) - (chunk.page_start or 0)
        for page, offset in enumerate(chunk.page_breaks, start=(chunk.page_start or 0) + 1):
            assert chunk.text[offset:].startswith(f"p{page}w0 ")
    for previous, following in itertools.pairwise(chunks):
        assert following.char_start > previous.char_start
        if previous.page_end == following.page_start:  # within a page the splitter overlaps consecutive chunks
            assert following.char_start < previous.char_end


def test_a_one_page_document_has_page_one_everywhere_and_empty_pages_are_skipped() -> None:
    single = chunk_document(_pdf_like(["only page " * 300]), "f", "a.pdf", 1000, 200)
    assert {(chunk.page_start, chunk.page_end) for chunk in single} == {(1, 1)}
    with_blank = _pdf_like(["first page text", "", "third page text"])
    chunks = chunk_document(with_blank, "f", "b.pdf", 1000, 200)
    assert [(c.text, c.page_start, c.page_end) for c in chunks] == [
        ("first page text\n\n\n\nthird page text", 1, 3)
    ]
    assert PageLocator(with_blank.pages).page_of(len("first page text\n\n\n\n")) == 3


def test_a_real_pdf_question_lands_on_its_page(tmp_path: Path) -> None:
    path = tmp_path / "facts.pdf"
    path.write_bytes(sample_files.pdf_bytes())
    parser = DocumentParser(ParseLimits(timeout_s=20, memory_mb=1024, max_chars=100_000, group_chars=1000), 1)
    document = asyncio.run(parser.parse(path, "pdf"))
    chunks = chunk_document(document, "file-pdf", "facts.pdf", 1000, 200)
    for page, fact in sample_files.FACTS.items():
        holding = [chunk for chunk in chunks if fact in chunk.text]
        assert holding and all(chunk.page_start == page for chunk in holding)
    assert chunks[-1].page_end == 4 and chunks[0].page_start == 1


def test_csv_chunks_are_the_row_groups_each_with_the_header() -> None:
    rows = [f"row{n},value{n}" for n in range(200)]
    document = grouped_rows("csv", "name,value", rows, 1000)
    chunks = chunk_document(document, "f", "t.csv", 1000, 200)
    assert len(chunks) == len(document.sections) > 1
    assert all(chunk.text.startswith("name,value\nrow") for chunk in chunks)
    assert [line for chunk in chunks for line in chunk.text.splitlines()[1:]] == rows
    assert all(chunk.page_start is None and chunk.page_end is None for chunk in chunks)


def test_a_row_longer_than_a_chunk_is_split_rather_than_dropped() -> None:
    document = grouped_rows("csv", "h", ["x" * 2500], 1000)
    chunks = chunk_document(document, "f", "t.csv", 1000, 200)
    assert len(chunks) >= 3 and all(len(chunk.text) <= 1000 for chunk in chunks)
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(document.text)


def test_markdown_is_split_at_headings_first() -> None:
    sections = [f"## Section {n}\n\n" + f"Sentence of section {n}. " * 30 for n in range(4)]
    text = "\n\n".join(sections)
    document = ParsedDocument(kind="markdown", text=text, sections=[(0, len(text))])
    chunks = chunk_document(document, "f", "notes.md", 1000, 200)
    assert [chunk.text.split("\n")[0] for chunk in chunks] == [f"## Section {n}" for n in range(4)]
