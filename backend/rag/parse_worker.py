"""The parse worker: a separate process that turns one uploaded file into text, under hard limits.

Started by `parsing.DocumentParser` for each upload. Parsers of untrusted files have had infinite
loops and memory blow-ups on crafted input (pypdf among them), so they never run in the server:
this process caps its own address space and CPU time before it imports any parser, gets killed at
PARSE_TIMEOUT_S by the server, and may not write files. Protocol: one JSON request on stdin, one JSON
reply on stdout (`{"ok": true, "document": ...}` or `{"ok": false, "reason", "message"}`).
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.rag.document_errors import ParseRefusal, too_long_message
from backend.rag.file_types import SQLITE_MAGIC
from backend.rag.parsed_document import ParsedDocument

MAX_REQUEST_BYTES = 64 * 1024
MAX_OPEN_FILES = 64

ParseFunction = Callable[[Path, str, dict[str, Any]], ParsedDocument]


def apply_limits(memory_mb: int, cpu_s: int) -> None:
    """Caps for this process only: address space, CPU seconds, no files written, no core dumps."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))


def check_sqlite(path: Path) -> ParsedDocument:
    """Open read-only, run SQLite's integrity check, list the tables; the database is queried, not embedded."""
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise ParseRefusal("unsupported", "The file is not an SQLite database.")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            verdict = connection.execute("PRAGMA integrity_check(1)").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise ParseRefusal("corrupt", "The SQLite database failed its integrity check.")
            tables = [
                str(row[0]) for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise ParseRefusal("corrupt", "The SQLite database is corrupt or unreadable.") from error
    if not tables:
        raise ParseRefusal("no_text", "The SQLite database has no tables.")
    return ParsedDocument(kind="sqlite", text="", tables=tables)


def parse_file(path: Path, kind: str, options: dict[str, Any]) -> ParsedDocument:
    max_chars = int(options["max_chars"])
    group_chars = int(options["group_chars"])
    if kind == "sqlite":
        return check_sqlite(path)
    if kind == "pdf":
        from backend.rag.extract_office import parse_pdf

        return parse_pdf(path, max_chars)
    if kind == "docx":
        from backend.rag.extract_office import parse_docx

        return parse_docx(path, max_chars, group_chars)
    from backend.rag import extract_text

    data = path.read_bytes()
    if kind in ("text", "markdown"):
        document = extract_text.parse_plain(data, "markdown" if kind == "markdown" else "text")
    elif kind == "json":
        document = extract_text.parse_json(data)
    elif kind == "csv":
        document = extract_text.parse_csv(data, group_chars)
    else:
        raise ParseRefusal("unsupported", f"No parser for documents of kind {kind!r}.")
    if len(document.text) > max_chars:
        raise ParseRefusal("too_long", too_long_message(max_chars))
    return document


def run(request: dict[str, Any], parse: ParseFunction) -> dict[str, Any]:
    try:
        document = parse(Path(request["path"]), str(request["kind"]), request)
    except ParseRefusal as refusal:
        return {"ok": False, "reason": refusal.reason, "message": refusal.message}
    except MemoryError:
        return {"ok": False, "reason": "resources", "message": "Parsing the file needed more memory than allowed."}
    except RecursionError:
        return {"ok": False, "reason": "unsafe", "message": "The file is nested too deeply to parse."}
    except Exception:  # a parser's own failure on a malformed file; the server logs stderr
        traceback.print_exc(limit=5)
        return {"ok": False, "reason": "corrupt", "message": "The file is corrupt or could not be parsed."}
    return {"ok": True, "document": document.to_json()}


def main(parse: ParseFunction = parse_file) -> None:
    request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES))
    apply_limits(int(request["memory_mb"]), int(request["cpu_s"]))
    reply = run(request, parse)
    sys.stdout.write(json.dumps(reply, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
