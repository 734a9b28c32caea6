"""Which kind of document a file is: decided by its content (magic bytes), which must agree with its name.

Only the first bytes are looked at here, in the server; the deeper checks (the zip really is a Word
document, the JSON parses, the CSV is sniffable, the text decodes) run in the parse worker.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from backend.rag.document_errors import UnsupportedFileType
from backend.rag.parsed_document import DocumentKind

KIND_BY_SUFFIX: dict[str, DocumentKind] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".json": "json",
    ".csv": "csv",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
}
HEAD_BYTES = 16
SQLITE_MAGIC = b"SQLite format 3\x00"
_BINARY_MAGIC: list[tuple[bytes, str]] = [
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a zip archive (DOCX is one)"),
    (SQLITE_MAGIC, "an SQLite database"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
    (b"\xd0\xcf\x11\xe0", "an OLE file: an old .doc/.xls or a password-protected Office document"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
]
_EXPECTED_MAGIC: dict[DocumentKind, bytes] = {"pdf": b"%PDF-", "docx": b"PK\x03\x04", "sqlite": SQLITE_MAGIC}
MAX_FILENAME_CHARS = 128


def supported_suffixes() -> str:
    return ", ".join(sorted(KIND_BY_SUFFIX))


def kind_from_name(filename: str) -> DocumentKind:
    suffix = PurePosixPath(filename).suffix.lower()
    kind = KIND_BY_SUFFIX.get(suffix)
    if kind is None:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise UnsupportedFileType(
            f"Files with {shown} are not supported; upload one of: {supported_suffixes()}.", param="file"
        )
    return kind


def content_description(head: bytes) -> str | None:
    """What the first bytes say the file is, when they match a known binary format."""
    for magic, description in _BINARY_MAGIC:
        if head.startswith(magic):
            return description
    return None


def detect_kind(head: bytes, filename: str) -> DocumentKind:
    """The kind named by the extension, once the content agrees with it; `UnsupportedFileType` otherwise."""
    kind = kind_from_name(filename)
    expected = _EXPECTED_MAGIC.get(kind)
    found = content_description(head)
    if expected is not None:
        if not head.startswith(expected):
            what = found or "not that format"
            raise UnsupportedFileType(
                f"'{filename}' is named as a {kind.upper()} file but its content is {what}.", param="file"
            )
    elif found is not None:
        raise UnsupportedFileType(
            f"'{filename}' is named as a {kind} file but its content is {found}.", param="file"
        )
    return kind


def sanitise_filename(raw: str | None) -> str:
    """A name safe on any file system and in the data layout: letters, digits, '_', '.', '-', at most 128 chars.

    Any folder part is dropped (`../../etc/passwd` -> `passwd`), accents are folded (`Résumé` -> `Resume`),
    everything else becomes `_`; the extension is kept, lower-cased, so the type check still sees it.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", folded).strip("._-")
    path = PurePosixPath(cleaned or "document")
    suffix = path.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,10}", path.suffix.lower()) else ""
    stem = (path.stem if suffix else path.name).strip("._-") or "document"
    stem = stem[: MAX_FILENAME_CHARS - len(suffix)]
    return f"{stem}{suffix}"
