"""Chunking a parsed document: RecursiveCharacterTextSplitter within each section, with spans and pages.

Every chunk keeps its character span in the document text (`text[char_start:char_end]` is the chunk,
exactly) and, for a PDF, the 1-based pages that span touches, so a chunk that runs from the end of one
page into the next says so (`page_start` 3, `page_end` 4).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from backend.rag.parsed_document import ParsedDocument, Span
from backend.rag.ports import ChunkRecord


class PageLocator:
    """Maps a character offset of the document text to its 1-based page."""

    def __init__(self, pages: Sequence[Span]) -> None:
        self._starts = [start for start, _ in pages]

    def page_of(self, offset: int) -> int:
        # The last page starting at or before the offset; separators between pages belong to the earlier one.
        return max(1, bisect.bisect_right(self._starts, offset))


def make_splitter(document: ParsedDocument, chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    if document.kind == "markdown":
        return RecursiveCharacterTextSplitter.from_language(
            Language.MARKDOWN, chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )
    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def locate_pieces(section: str, pieces: Sequence[str], chunk_overlap: int) -> list[Span]:
    """Where each piece the splitter returned starts and ends in `section` (pieces come in order)."""
    spans: list[Span] = []
    previous_start, previous_end = -1, 0
    for piece in pieces:
        start = section.find(piece, max(previous_start + 1, previous_end - chunk_overlap))
        if start < 0:
            start = section.find(piece, previous_start + 1)
        if start < 0:
            raise ValueError("the splitter returned text that is not in the document")
        spans.append((start, start + len(piece)))
        previous_start, previous_end = start, start + len(piece)
    return spans


def chunk_document(
    document: ParsedDocument, file_id: str, filename: str, chunk_size: int, chunk_overlap: int
) -> list[ChunkRecord]:
    splitter = make_splitter(document, chunk_size, chunk_overlap)
    locator = PageLocator(document.pages) if document.pages else None
    sections = document.sections or [(0, len(document.text))]
    records: list[ChunkRecord] = []
    for section_start, section_end in sections:
        section = document.text[section_start:section_end]
        pieces = [piece for piece in splitter.split_text(section) if piece.strip()]
        for start, end in locate_pieces(section, pieces, chunk_overlap):
            char_start, char_end = section_start + start, section_start + end
            index = len(records)
            page_start = locator.page_of(char_start) if locator else None
            page_end = locator.page_of(char_end - 1) if locator else None
            breaks = () if page_start is None or page_end is None else tuple(
                document.pages[page - 1][0] - char_start for page in range(page_start + 1, page_end + 1)
            )
            records.append(ChunkRecord(
                chunk_id=f"{file_id}:{index}", file_id=file_id, filename=filename, chunk_index=index,
                text=document.text[char_start:char_end], char_start=char_start, char_end=char_end,
                page_start=page_start, page_end=page_end, page_breaks=breaks,
            ))
    return records
