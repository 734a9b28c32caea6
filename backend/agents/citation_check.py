"""Document citations an answer may keep: `"quoted sentence" [report.pdf p.3]`, verified against the cited chunk.

A small model invents quotes and pages freely, so every citation is checked against the chunks that
`rag_retrieval` returned: the file must be one of them, the page inside the chunk's pages, and the
quoted span in the chunk's own text (compared as `backend/rag/citations.py` does on the RAG branch:
Unicode forms, typographic quotes, case and runs of whitespace do not count). A citation that fails is
removed; `[2]`, the number of a retrieved source, is rewritten as that source's label.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.rag.ports import ScoredChunk

MIN_QUOTE_CHARS = 8
"""Shorter quotes occur almost anywhere and prove nothing."""
_WHITESPACE = re.compile(r"\s+")
_PLAIN_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00ad": None})
_LABEL = re.compile(r"\[(?P<label>[^\[\]\n]{1,300})\]")
_QUOTE_BEFORE = re.compile(r"[\"\u201c](?P<quote>[^\"\u201c\u201d\n]{1,2000})[\"\u201d]\s*[,:;]?\s*$")
_PAGES = re.compile(r"^(?P<file>.+?)(?:,?\s+(?:pp?\.|pages?\s+)\s*(?P<start>\d+)(?:\s*[-\u2013]\s*(?P<end>\d+))?)?$")


def normalise(text: str) -> str:
    """NFKC, plain quotes, casefolded, whitespace collapsed: what extraction and models change freely."""
    folded = unicodedata.normalize("NFKC", text).translate(_PLAIN_QUOTES).casefold()
    return _WHITESPACE.sub(" ", folded).strip()


@dataclass(frozen=True)
class CitedChunk:
    """One retrieved passage, as an answer may cite it."""

    number: int | None
    """The source number `rag_retrieval` gave it (`[1]`), if any."""
    filename: str
    text: str
    page_start: int | None = None
    page_end: int | None = None
    page_breaks: tuple[int, ...] = ()
    """Where the later pages of a chunk crossing a page break begin in `text`."""

    def label_for(self, quote: str) -> str:
        """The label of the one page `quote` is on (`[report.pdf p.4]`), else the chunk's label."""
        if self.page_start is None or not self.page_breaks:
            return self.label
        at = self.text.find(quote)
        if at < 0:
            at = self.text.casefold().find(quote.casefold())
        if at < 0:
            return self.label
        page = self.page_start + sum(1 for start in self.page_breaks if start <= at)
        return f"[{self.filename} p.{page}]"

    @property
    def label(self) -> str:
        """`[report.pdf p.3]`, `[report.pdf pp.3-4]` or `[notes.txt]` (as the RAG branch's `source_label`)."""
        if self.page_start is None:
            return f"[{self.filename}]"
        end = self.page_end if self.page_end is not None else self.page_start
        pages = f"p.{self.page_start}" if end == self.page_start else f"pp.{self.page_start}-{end}"
        return f"[{self.filename} {pages}]"

    def holds(self, quote: str) -> bool:
        needle = normalise(quote).strip(" \"'.,;:")
        return len(needle) >= MIN_QUOTE_CHARS and needle in normalise(self.text)

    def covers(self, start: int | None, end: int | None) -> bool:
        if start is None:
            return True
        if self.page_start is None:
            return False
        last = self.page_end if self.page_end is not None else self.page_start
        return self.page_start <= start and (end if end is not None else start) <= last

    @classmethod
    def from_scored(cls, number: int | None, scored: ScoredChunk) -> CitedChunk:
        record = scored.record
        return cls(number, record.filename, record.text, record.page_start, record.page_end, record.page_breaks)

    @classmethod
    def from_tool_data(cls, index: int, item: Mapping[str, Any]) -> CitedChunk | None:
        """One entry of `rag_retrieval`'s `data`: `page` (this branch) or `page_start`/`page_end` (RAG branch)."""
        filename, text = item.get("filename"), item.get("text")
        if not isinstance(filename, str) or not isinstance(text, str):
            return None
        start = item.get("page_start", item.get("page"))
        end = item.get("page_end", start)
        number = item.get("source", index)
        breaks = item.get("page_breaks") or ()
        return cls(
            number if isinstance(number, int) else index, filename, text,
            start if isinstance(start, int) else None, end if isinstance(end, int) else None,
            tuple(offset for offset in breaks if isinstance(offset, int)) if isinstance(breaks, list | tuple) else (),
        )


def chunks_of(data: Any) -> list[CitedChunk]:
    """The citable chunks in a `rag_retrieval` result's `data` (a list of dicts); anything else gives none."""
    if not isinstance(data, list):
        return []
    found = (CitedChunk.from_tool_data(i, item) for i, item in enumerate(data, 1) if isinstance(item, Mapping))
    return [chunk for chunk in found if chunk is not None]


@dataclass(frozen=True)
class CitationReport:
    answer: str
    """The answer with failed citations removed and source numbers written as labels."""
    verified: tuple[str, ...]
    """Labels whose quoted span was found in the cited chunk."""
    removed: tuple[str, ...]


def _parse_label(label: str) -> tuple[str, int | None, int | None] | None:
    match = _PAGES.match(label.strip())
    if match is None:
        return None
    start = int(match["start"]) if match["start"] else None
    end = int(match["end"]) if match["end"] else start
    return match["file"].strip().casefold(), start, end


def verify(answer: str, chunks: Sequence[CitedChunk]) -> CitationReport:
    """Check every `[label]` of the answer that names a retrieved file or source number."""
    if not chunks:
        return CitationReport(answer, (), ())
    by_number = {chunk.number: chunk for chunk in chunks if chunk.number is not None}
    files = {chunk.filename.casefold() for chunk in chunks}
    verified: list[str] = []
    removed: list[str] = []
    out: list[str] = []
    position = 0
    for match in _LABEL.finditer(answer):
        label = match["label"].strip()
        candidates: Iterable[CitedChunk]
        if label.isdigit():
            if int(label) not in by_number:
                continue  # not one of ours (a web result's number, a footnote): left as written
            candidates, shown = [by_number[int(label)]], by_number[int(label)].label
        else:
            parsed = _parse_label(label)
            if parsed is None or parsed[0] not in files:
                continue  # not a document citation
            name, start, end = parsed
            candidates = [c for c in chunks if c.filename.casefold() == name and c.covers(start, end)]
            shown = match.group()
        quoted = _QUOTE_BEFORE.search(answer, position, match.start())
        quote = quoted["quote"] if quoted else None
        supported = [c for c in candidates if quote is not None and c.holds(quote)]
        out.append(answer[position:match.start()])
        if supported and quote is not None:
            # Written as the server knows it: the file and the one page the quote is on.
            exact = supported[0].label_for(quote.strip(" \"'.,;:"))
            out.append(exact)
            verified.append(exact)
        elif quote is None and list(candidates):
            out.append(shown)  # a bare reference to a retrieved chunk: kept, but it proves nothing
        else:
            removed.append(match.group())
            # Drop the space before the removed label so "... text [x.pdf p.9]." reads "... text."
            if out and out[-1].endswith(" "):
                out[-1] = out[-1].rstrip(" ")
        position = match.end()
    out.append(answer[position:])
    return CitationReport("".join(out), tuple(verified), tuple(removed))
