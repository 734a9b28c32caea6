"""Text-like formats for the parse worker: TXT and Markdown (any encoding), JSON as key paths, CSV in row groups.

Runs in the worker process (see `parse_worker.py`), under its time and memory limits.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from backend.rag.document_errors import ParseRefusal
from backend.rag.parsed_document import DocumentKind, ParsedDocument, Span

_BOMS = [
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
]
PREFERRED_ENCODINGS = ("cp1252", "latin_1", "iso8859_15", "cp1250", "cp1251", "shift_jis", "gb2312", "euc_kr")
MAX_JSON_DEPTH = 64
SNIFF_CHARS = 20_000


def decode_text(data: bytes, what: str) -> str:
    """The bytes as text: a BOM's encoding, else UTF-8, else what charset-normalizer finds; binary is refused."""
    if not data.strip():
        raise ParseRefusal("empty", f"The {what} file has no content.")
    text: str | None = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as error:
                raise ParseRefusal("corrupt", f"The {what} file is not valid {encoding.upper()}.") from error
            break
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _guess_encoding(data, what)
    if "\x00" in text:
        raise ParseRefusal("unsupported", f"The {what} file holds binary data (NUL bytes), not text.")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _guess_encoding(data: bytes, what: str) -> str:
    """charset-normalizer's least chaotic decodings; among equally good ones, the most widespread encoding.

    Short Western text decodes without chaos as cp1250 and cp1252 alike (detection cannot tell them
    apart), and cp1252 is by far the likelier one for a file that is not UTF-8.
    """
    from charset_normalizer import from_bytes

    candidates = list(from_bytes(data))
    if not candidates:
        raise ParseRefusal("unsupported", f"The {what} file is not text in any encoding that could be detected.")
    least = min(match.chaos for match in candidates)
    tied = [match for match in candidates if match.chaos <= least + 0.01]
    for preferred in PREFERRED_ENCODINGS:
        for match in tied:
            if preferred in match.could_be_from_charset:
                return str(match)
    return str(tied[0])


def parse_plain(data: bytes, kind: DocumentKind) -> ParsedDocument:
    text = decode_text(data, "Markdown" if kind == "markdown" else "text")
    if not text.strip():
        raise ParseRefusal("no_text", "The file holds only whitespace.")
    return ParsedDocument(kind=kind, text=text, sections=[(0, len(text))])


def parse_json(data: bytes) -> ParsedDocument:
    """One line per leaf, `path: value` (`orders[0].customer.city: Lyon`), so a chunk says where its values sit."""
    text = decode_text(data, "JSON")
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise ParseRefusal("unsafe", "The JSON is nested too deeply.") from error
    except ValueError as error:
        raise ParseRefusal("unsupported", f"The file is not valid JSON ({error}).") from error
    lines = flatten_json(value)
    flat = "\n".join(lines)
    if not flat.strip():
        raise ParseRefusal("no_text", "The JSON holds no values.")
    return ParsedDocument(kind="json", text=flat, sections=[(0, len(flat))])


def _key_path(parent: str, key: str) -> str:
    if key and key.replace("_", "a").replace("-", "a").isalnum():
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key, ensure_ascii=False)}]"


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def flatten_json(value: Any) -> list[str]:
    """Leaves in document order; an iterative walk, so depth is bounded by MAX_JSON_DEPTH, not the C stack."""
    lines: list[str] = []
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        path, node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ParseRefusal("unsafe", f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
        if isinstance(node, dict) and node:
            stack.extend((_key_path(path, str(key)), child, depth + 1) for key, child in reversed(node.items()))
        elif isinstance(node, list) and node:
            stack.extend((f"{path}[{index}]", child, depth + 1) for index, child in reversed(list(enumerate(node))))
        else:
            shown = _scalar(node) if not isinstance(node, dict | list) else ("{}" if isinstance(node, dict) else "[]")
            lines.append(f"{path or '$'}: {shown}")
    return lines


def parse_csv(data: bytes, group_chars: int) -> ParsedDocument:
    """Rows in groups of at most `group_chars` characters, each group starting with the header row.

    The document text is the groups one after the other (a blank line between), so every chunk is a
    span of it and still says which column each value belongs to.
    """
    text = decode_text(data, "CSV")
    sample = text[:SNIFF_CHARS]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        if any(mark in sample for mark in ",;\t|"):
            raise ParseRefusal("unsupported", "The file is not a CSV: no consistent delimiter was found.") from None
        dialect = csv.excel  # one column: nothing to sniff
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), dialect) if any(c.strip() for c in row)]
    except csv.Error as error:
        raise ParseRefusal("corrupt", f"The CSV could not be read ({error}).") from error
    if not rows:
        raise ParseRefusal("no_text", "The CSV has no rows.")
    header, body = _csv_line(rows[0]), [_csv_line(row) for row in rows[1:]]
    return grouped_rows("csv", header, body, group_chars)


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cell.replace("\n", " ") for cell in row)
    return out.getvalue()


def grouped_rows(kind: DocumentKind, header: str, rows: list[str], group_chars: int) -> ParsedDocument:
    parts: list[str] = []
    sections: list[Span] = []
    position = 0
    for group in row_groups(header, rows, group_chars):
        if parts:
            parts.append("\n\n")
            position += 2
        parts.append(group)
        sections.append((position, position + len(group)))
        position += len(group)
    text = "".join(parts)
    return ParsedDocument(kind=kind, text=text, sections=sections)


def row_groups(header: str, rows: list[str], group_chars: int) -> list[str]:
    """`header\\nrow\\nrow...` blocks of at most `group_chars` characters (a single longer row stands alone)."""
    if not rows:
        return [header]
    groups: list[str] = []
    current: list[str] = []
    size = len(header)
    for row in rows:
        if current and size + 1 + len(row) > group_chars:
            groups.append("\n".join([header, *current]))
            current, size = [], len(header)
        current.append(row)
        size += 1 + len(row)
    groups.append("\n".join([header, *current]))
    return groups


def spans_of(parts: list[str], separator: str) -> tuple[str, list[Span]]:
    """Join `parts` with `separator` and return where each part lies in the result."""
    spans, position = [], 0
    for index, part in enumerate(parts):
        if index:
            position += len(separator)
        spans.append((position, position + len(part)))
        position += len(part)
    return separator.join(parts), spans
