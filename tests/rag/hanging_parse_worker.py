"""Parse workers that misbehave on purpose, run through the real worker protocol and limits."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from backend.rag import parse_worker
from backend.rag.parsed_document import ParsedDocument


def _hang(path: Path, kind: str, options: dict[str, Any]) -> ParsedDocument:
    while True:  # what a parser stuck on a crafted file does
        time.sleep(0.05)


def _allocate(path: Path, kind: str, options: dict[str, Any]) -> ParsedDocument:
    hoard = [bytearray(64 * 1024 * 1024) for _ in range(256)]  # 16 GB, far past the cap
    return ParsedDocument(kind="text", text=str(len(hoard)))


def _environment(path: Path, kind: str, options: dict[str, Any]) -> ParsedDocument:
    text = "\n".join(sorted(f"{key}={value}" for key, value in os.environ.items()))
    return ParsedDocument(kind="text", text=text, sections=[(0, len(text))])


def main() -> None:
    behaviour = {"hang": _hang, "allocate": _allocate, "environment": _environment}
    parse_worker.main(parse=lambda path, kind, options: behaviour[path.name.split(".")[0]](path, kind, options))
