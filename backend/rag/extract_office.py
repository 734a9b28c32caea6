"""PDF (pypdf, page by page) and DOCX (python-docx, paragraphs and tables) for the parse worker.

A DOCX is a zip of XML files, so it is checked before python-docx opens it: entry count, total
uncompressed size and compression ratio (zip bombs), and no DTD in any XML part (entity expansion,
external entities). Runs in the worker process, under its time and memory limits.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from backend.rag.document_errors import ParseRefusal, too_long_message
from backend.rag.extract_text import row_groups, spans_of
from backend.rag.parsed_document import ParsedDocument

PAGE_SEPARATOR = "\n\n"
MAX_PDF_PAGES = 5000
MAX_ZIP_ENTRIES = 1000
MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
RATIO_CHECKED_FROM_BYTES = 1024 * 1024
"""Small parts may compress very well legitimately; a bomb needs size to do harm."""
XML_SCAN_CHUNK = 64 * 1024
_DTD_MARKERS = (b"<!doctype", b"<!entity")


def _check_length(total: int, max_chars: int) -> None:
    if total > max_chars:
        raise ParseRefusal("too_long", too_long_message(max_chars))


def parse_pdf(path: Path, max_chars: int) -> ParsedDocument:
    from pypdf import PdfReader

    try:
        reader = PdfReader(path, strict=False)
        encrypted = reader.is_encrypted
    except Exception as error:
        raise ParseRefusal("corrupt", "The PDF is corrupt or unreadable.") from error
    if encrypted:
        raise ParseRefusal("encrypted", "The PDF is encrypted (password-protected); upload an unprotected copy.")
    try:
        count = len(reader.pages)
    except Exception as error:
        raise ParseRefusal("corrupt", "The PDF's page tree is corrupt.") from error
    if count == 0:
        raise ParseRefusal("corrupt", "The PDF has no pages.")
    if count > MAX_PDF_PAGES:
        raise ParseRefusal("too_long", f"The PDF has {count} pages; at most {MAX_PDF_PAGES} are accepted.")
    texts: list[str] = []
    total = 0
    for number in range(count):
        try:
            extracted = reader.pages[number].extract_text() or ""
        except Exception as error:
            raise ParseRefusal("corrupt", f"Page {number + 1} of the PDF could not be read.") from error
        page_text = extracted.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").strip()
        total += len(page_text) + len(PAGE_SEPARATOR)
        _check_length(total, max_chars)
        texts.append(page_text)
    text, pages = spans_of(texts, PAGE_SEPARATOR)
    if not text.strip():
        raise ParseRefusal("no_text", "The PDF has no extractable text (scanned pages? OCR is not supported).")
    return ParsedDocument(kind="pdf", text=text, pages=pages, sections=[(0, len(text))])


def check_docx(path: Path) -> None:
    """Refuse a DOCX that could exhaust the parser before python-docx reads a byte of its XML."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ParseRefusal("corrupt", "The DOCX is not a valid zip archive.") from error
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise ParseRefusal("unsafe", f"The DOCX has {len(entries)} zip entries; at most {MAX_ZIP_ENTRIES}.")
        if "word/document.xml" not in {entry.filename for entry in entries}:
            raise ParseRefusal(
                "unsupported", "The file is a zip archive but not a Word document (no word/document.xml)."
            )
        total = sum(entry.file_size for entry in entries)
        if total > MAX_UNCOMPRESSED_BYTES:
            raise ParseRefusal(
                "unsafe", f"The DOCX would unpack to {total:,} bytes; at most {MAX_UNCOMPRESSED_BYTES:,} (zip bomb?)."
            )
        for entry in entries:
            if entry.flag_bits & 0x1:
                raise ParseRefusal("encrypted", "The DOCX has encrypted parts.")
            ratio = entry.file_size / max(entry.compress_size, 1)
            if entry.file_size >= RATIO_CHECKED_FROM_BYTES and ratio > MAX_COMPRESSION_RATIO:
                raise ParseRefusal(
                    "unsafe", f"A part of the DOCX is compressed {ratio:.0f}:1 (more than {MAX_COMPRESSION_RATIO}:1: "
                    "a zip bomb?).",
                )
        for entry in entries:
            if entry.filename.lower().endswith((".xml", ".rels")):
                _check_xml_part(archive, entry)


def _check_xml_part(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    try:
        with archive.open(entry) as part:
            head = part.read(4)
            if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00", b"<\x00", b"\x00<")):
                raise ParseRefusal("unsafe", f"The DOCX part {entry.filename} is not UTF-8 XML.")
            tail = head.lower()
            while True:
                block = part.read(XML_SCAN_CHUNK)
                window = tail + block.lower()
                if any(marker in window for marker in _DTD_MARKERS):
                    raise ParseRefusal(
                        "unsafe", f"The DOCX part {entry.filename} declares a DTD or entities, which are refused."
                    )
                if not block:
                    return
                tail = window[-16:]
    except ParseRefusal:
        raise
    except Exception as error:  # bad CRC, truncated data, an unsupported compression method
        raise ParseRefusal("corrupt", f"The DOCX part {entry.filename} is corrupt or could not be unpacked.") from error


def parse_docx(path: Path, max_chars: int, group_chars: int) -> ParsedDocument:
    """Paragraphs (headings as `#` lines) and tables (Markdown rows under their header) in document order."""
    check_docx(path)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        blocks: list[str] = []
        paragraphs: list[str] = []
        total = 0
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                if paragraphs:
                    blocks.append("\n\n".join(paragraphs))
                    paragraphs = []
                rendered = _table_groups(item, group_chars)
                blocks.extend(rendered)
                total += sum(len(group) + 2 for group in rendered)
            else:
                line = _paragraph_line(item)
                if line:
                    paragraphs.append(line)
                    total += len(line) + 2
            _check_length(total, max_chars)
        if paragraphs:
            blocks.append("\n\n".join(paragraphs))
    except ParseRefusal:
        raise
    except Exception as error:
        raise ParseRefusal("corrupt", "The DOCX is corrupt or not a Word document python-docx can read.") from error
    text, sections = spans_of(blocks, "\n\n")
    if not text.strip():
        raise ParseRefusal("no_text", "The DOCX has no text.")
    return ParsedDocument(kind="docx", text=text, sections=sections)


def _paragraph_line(paragraph: Any) -> str:
    text = str(paragraph.text).strip()
    style = str(getattr(paragraph.style, "name", "") or "")
    if text and style.startswith("Heading "):
        level = style.removeprefix("Heading ").strip()
        if level.isdigit() and 1 <= int(level) <= 6:
            return f"{'#' * int(level)} {text}"
    return text


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table_groups(table: Any, group_chars: int) -> list[str]:
    """The table as Markdown, split into row groups that each repeat the header row."""
    rows = [[_cell(cell.text) for cell in row.cells] for row in table.rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    header = line(rows[0]) + "\n" + line(["---"] * width)
    return row_groups(header, [line(row) for row in rows[1:]], group_chars)
