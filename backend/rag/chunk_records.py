"""ChunkRecord to and from the JSON the stores persist beside their indexes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from backend.rag.ports import ChunkRecord


def record_to_json(record: ChunkRecord) -> dict[str, Any]:
    return asdict(record)


def record_from_json(value: dict[str, Any]) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=str(value["chunk_id"]), file_id=str(value["file_id"]), filename=str(value["filename"]),
        chunk_index=int(value["chunk_index"]), text=str(value["text"]),
        char_start=int(value["char_start"]), char_end=int(value["char_end"]),
        page_start=None if value.get("page_start") is None else int(value["page_start"]),
        page_end=None if value.get("page_end") is None else int(value["page_end"]),
        page_breaks=tuple(int(offset) for offset in value.get("page_breaks") or ()),
    )
