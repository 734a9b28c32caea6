"""What one user's SQL database is made of: the shared sample, their SQLite files and their CSVs.

CSVs become tables of a cache database under the user's cache folder, never inside their files
folder. The cache file is named by a fingerprint of the CSVs (path, size, mtime), built under a
temporary name and renamed into place, so concurrent queries never see a half-built file and a
changed CSV simply yields a new fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backend.storage.layout import SAMPLES_DIR, DataLayout
from backend.storage.user_folders import UserFolders
from backend.tools.csv_table import CellValue, CsvTable, InvalidCsv, cell_value

logger = logging.getLogger(__name__)

SAMPLE_DB = SAMPLES_DIR / "sample.sqlite"
SQLITE_SUFFIXES = {".sqlite", ".sqlite3", ".db"}
MAX_CSV_BYTES = 50 * 1024 * 1024
MAX_ATTACHED = 8
"""SQLite attaches at most 10 databases; the sample takes one, and one stays spare."""
RESERVED_SCHEMAS = {"main", "temp", "sample"}


@dataclass(frozen=True)
class Attachment:
    schema: str
    path: Path


@dataclass
class UserDatabase:
    """The files one query opens: `main` (CSV tables, or none) plus attached read-only databases."""

    main: Path | None
    attachments: list[Attachment]
    notes: list[str] = field(default_factory=list)
    """Files left out and why, shown to the user so nothing is skipped silently."""


def identifier(stem: str, taken: set[str]) -> str:
    """A plain SQL identifier from a file or column name, unique among `taken`."""
    name = re.sub(r"\W+", "_", stem, flags=re.ASCII).strip("_").lower() or "t"
    if name[0].isdigit():
        name = f"t_{name}"
    candidate, suffix = name, 2
    while candidate in taken:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def read_only_uri(path: Path) -> str:
    """`immutable` as well as `mode=ro`: SQLite then never writes -wal/-shm files beside the user's file."""
    return f"{path.resolve().as_uri()}?mode=ro&immutable=1"


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def gather(data_dir: Path, username: str) -> UserDatabase:
    """Find the user's files and make sure the CSV cache matches them (blocking: call off the loop)."""
    folders = UserFolders(DataLayout(data_dir))
    files_dir = folders.path(username, "files")
    notes: list[str] = []
    attachments = [Attachment("sample", SAMPLE_DB)] if SAMPLE_DB.is_file() else []
    if not attachments:
        notes.append("the sample database is missing")
    files = sorted(p for p in files_dir.rglob("*") if p.is_file()) if files_dir.is_dir() else []
    taken = set(RESERVED_SCHEMAS)
    for path in (p for p in files if p.suffix.lower() in SQLITE_SUFFIXES):
        if len(attachments) >= MAX_ATTACHED:
            notes.append(f"{path.name}: left out, at most {MAX_ATTACHED - 1} database files are opened")
        elif not _is_sqlite(path):
            notes.append(f"{path.name}: left out, not an SQLite database")
        else:
            attachments.append(Attachment(identifier(path.stem, taken), path))
    csvs = [p for p in files if p.suffix.lower() == ".csv"]
    main = csv_cache(folders.create(username, "cache", "sql"), csvs, notes) if csvs else None
    return UserDatabase(main=main, attachments=attachments, notes=notes)


def fingerprint(csvs: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in csvs:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def csv_cache(cache_dir: Path, csvs: list[Path], notes: list[str]) -> Path | None:
    """The cache database for exactly these CSVs, built in `cache_dir` if missing; stale ones are removed.

    What was left out while building is kept beside it (`.notes.json`), so a cached answer reports it too.
    """
    stem = f"csv-{fingerprint(csvs)}"
    target, notes_file = cache_dir / f"{stem}.sqlite", cache_dir / f"{stem}.notes.json"
    if target.is_file() and notes_file.is_file():
        notes.extend(json.loads(notes_file.read_text(encoding="utf-8")))
    else:
        built: list[str] = []
        _build_atomically(target, lambda path: build_csv_database(path, csvs, built))
        _build_atomically(notes_file, lambda path: _write_json(path, built))
        notes.extend(built)
    for stale in cache_dir.glob("csv-*"):
        if stale not in (target, notes_file):
            stale.unlink(missing_ok=True)  # a query still reading it keeps its open file
    return target


def _write_json(path: Path, value: list[str]) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def _build_atomically(target: Path, write: Callable[[Path], None]) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".building-")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def build_csv_database(target: Path, csvs: list[Path], notes: list[str]) -> None:
    db = sqlite3.connect(target)
    try:
        taken = set(RESERVED_SCHEMAS)
        for path in csvs:
            if path.stat().st_size > MAX_CSV_BYTES:
                notes.append(f"{path.name}: left out, larger than {MAX_CSV_BYTES // 2**20} MB")
                continue
            try:
                header, rows = read_csv(path)
            except (InvalidCsv, UnicodeDecodeError) as error:
                notes.append(f"{path.name}: left out, {error}")
                continue
            table = identifier(path.stem, taken)
            longer = _create_table(db, table, header, rows)
            if longer:
                notes.append(
                    f"{path.name}: {longer} row(s) had more cells than the header; the extra cells were dropped"
                )
        db.commit()
    finally:
        db.close()


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of one CSV file, read by `csv_table` as `data_analysis` reads CSV text."""
    table = CsvTable(path.read_text(encoding="utf-8-sig"))
    return table.header, list(table.rows())


def _column_type(values: Iterable[CellValue]) -> str:
    """INTEGER when every present cell is an integer, REAL when every one is a number, else TEXT.

    The cells are typed by `csv_table.cell_value`, so `nan`, `inf` or `1_000` make a column TEXT here just
    as they count as text in `data_analysis`.
    """
    kinds = {type(value) for value in values if value is not None}
    if kinds == {int}:
        return "INTEGER"
    if kinds and kinds <= {int, float}:
        return "REAL"
    return "TEXT"


def _stored(cell: str, kind: str) -> CellValue:
    """A TEXT column keeps the text as written (`007` stays `007`); a numeric one gets the typed value."""
    return (cell.strip() or None) if kind == "TEXT" else cell_value(cell)


def _create_table(db: sqlite3.Connection, table: str, header: list[str], rows: list[list[str]]) -> int:
    """Create and fill one table; returns how many rows had more cells than the header."""
    taken: set[str] = set()
    columns = [identifier(name or f"column_{i}", taken) for i, name in enumerate(header, start=1)]
    width = len(columns)
    cells = [(row + [""] * width)[:width] for row in rows]
    types = [_column_type(cell_value(row[i]) for row in cells) for i in range(width)]
    spec = ", ".join(f'"{name}" {kind}' for name, kind in zip(columns, types, strict=True))
    db.execute(f'CREATE TABLE "{table}" ({spec})')
    placeholders = ", ".join("?" for _ in columns)
    db.executemany(
        f'INSERT INTO "{table}" VALUES ({placeholders})',
        ([_stored(cell, kind) for cell, kind in zip(row, types, strict=True)] for row in cells),
    )
    return sum(1 for row in rows if len(row) > width)
