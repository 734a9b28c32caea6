"""What parsing yields: the document's text, where each page lies in it, and the sections chunks may not cross.

Shared by the parse worker (which builds it) and the server (which chunks it); it crosses the process
boundary as JSON, so it is plain data with a round trip through `to_json`/`from_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DocumentKind = Literal["pdf", "docx", "text", "markdown", "json", "csv", "sqlite"]
Span = tuple[int, int]


@dataclass(frozen=True)
class ParsedDocument:
    kind: DocumentKind
    text: str
    pages: list[Span] = field(default_factory=list)
    """`text[start:end]` of page 1, 2, ... (PDF only); pages are joined by a blank line."""
    sections: list[Span] = field(default_factory=list)
    """Spans chunked independently (a CSV row group, a DOCX table's rows); no chunk crosses one."""
    tables: list[str] = field(default_factory=list)
    """SQLite: the tables it holds (it is queried with sql_query, not embedded)."""

    @property
    def page_count(self) -> int | None:
        return len(self.pages) if self.kind == "pdf" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "text": self.text, "pages": self.pages, "sections": self.sections,
            "tables": self.tables,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ParsedDocument:
        text = str(value["text"])
        pages = [_span(item, len(text)) for item in value.get("pages", [])]
        sections = [_span(item, len(text)) for item in value.get("sections", [])]
        return cls(
            kind=value["kind"], text=text, pages=pages, sections=sections,
            tables=[str(name) for name in value.get("tables", [])],
        )


def _span(item: Any, length: int) -> Span:
    start, end = int(item[0]), int(item[1])
    if not 0 <= start <= end <= length:
        raise ValueError(f"span {start}..{end} outside a text of {length} characters")
    return start, end
