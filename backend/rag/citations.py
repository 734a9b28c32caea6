"""Citations that can be checked: how a source is named (`[report.pdf p.3]`) and whether a quote is in it.

Pages are 1-based as printed on the page, never 0-based; a chunk that runs over a page break cites
both ends (`pp.3-4`). A quote is verified against the cited chunk's text itself, after normalising
what PDF extraction and models change freely: Unicode forms, case and runs of whitespace.
"""

from __future__ import annotations

import re
import unicodedata

from backend.rag.ports import ChunkRecord

_WHITESPACE = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00ad": None})
MIN_QUOTE_CHARS = 3
"""Shorter quotes occur almost anywhere and prove nothing."""


def normalise(text: str) -> str:
    """NFKC (ligatures such as `ﬁ` become `fi`), typographic quotes made plain, casefolded, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _WHITESPACE.sub(" ", folded).strip()


def quote_in_chunk(quote: str, chunk_text: str) -> bool:
    """True when `quote` occurs in `chunk_text`, ignoring case, Unicode forms and whitespace differences."""
    needle = normalise(quote).strip(" \"'")
    return len(needle) >= MIN_QUOTE_CHARS and needle in normalise(chunk_text)


def page_label(record: ChunkRecord) -> str | None:
    """`p.3`, `pp.3-4` for a chunk crossing a page break, or None for formats without pages."""
    if record.page_start is None:
        return None
    end = record.page_end if record.page_end is not None else record.page_start
    return f"p.{record.page_start}" if end == record.page_start else f"pp.{record.page_start}-{end}"


def source_label(record: ChunkRecord) -> str:
    """`[report.pdf p.3]`, `[report.pdf pp.3-4]` or `[notes.txt]`: how answers cite a source."""
    pages = page_label(record)
    return f"[{record.filename} {pages}]" if pages else f"[{record.filename}]"


def citation_title(record: ChunkRecord) -> str:
    """`report.pdf pp.3-4, chunk 7`: file, 1-based pages and the chunk's index in its document."""
    pages = page_label(record)
    where = f"{record.filename} {pages}" if pages else record.filename
    return f"{where}, chunk {record.chunk_index}"
