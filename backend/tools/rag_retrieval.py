"""`rag_retrieval`: the most relevant passages of the requesting user's own documents, cited by file and page."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from backend.rag.citations import citation_title
from backend.rag.ports import DocumentRetriever, ScoredChunk
from backend.tools.base import Availability, Source, ToolContext, ToolResult

NO_RETRIEVER = "document retrieval is not configured on this server"
EXCERPT_CHARS = 1200
"""Per passage in the model's text; long chunks are cut so top_k of them fit a small context."""


class RagRetrievalArgs(BaseModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] = Field(
        description="What to look for in the user's uploaded documents, in plain words."
    )
    top_k: int | None = Field(
        None, ge=1, le=20, description="How many passages to return, 1 to 20; default: the server's RAG_TOP_K."
    )


class RagRetrievalTool:
    name = "rag_retrieval"
    description = (
        "Search the user's own uploaded documents (PDF, Word, text, notes, CSV, JSON) and return the most relevant "
        "passages as numbered sources with file name, page and chunk. Use it when the question is about the "
        "user's files or documents; cite the sources you use by their number."
    )
    args_model = RagRetrievalArgs

    def __init__(self, retriever: DocumentRetriever | None = None) -> None:
        self._retriever = retriever

    def availability(self) -> Availability:
        if self._retriever is None:
            return Availability(False, NO_RETRIEVER)
        return Availability(True)

    async def run(self, args: RagRetrievalArgs, context: ToolContext) -> ToolResult:
        if self._retriever is None:
            return ToolResult.failure(f"rag_retrieval is unavailable: {NO_RETRIEVER}")
        top_k = args.top_k or context.settings.rag_top_k
        # The retriever is scoped by the username: no other user's chunk can come back.
        chunks = await self._retriever.search(context.user.username, args.query, top_k)
        chunks = sorted(chunks, key=lambda chunk: chunk.score, reverse=True)[:top_k]
        if not chunks:
            return ToolResult(ok=True, text=f"No passage of your documents matches '{args.query}'.", data=[])
        return ToolResult(
            ok=True,
            text="\n\n".join(_numbered(number, chunk) for number, chunk in enumerate(chunks, start=1)),
            data=[{"source": number, **_metadata(chunk), "text": chunk.record.text}
                  for number, chunk in enumerate(chunks, start=1)],
            sources=[_source(number, chunk) for number, chunk in enumerate(chunks, start=1)],
        )


def _metadata(chunk: ScoredChunk) -> dict[str, Any]:
    record = chunk.record
    return {
        "file_id": record.file_id, "filename": record.filename, "chunk_id": record.chunk_id,
        "chunk_index": record.chunk_index, "page_start": record.page_start, "page_end": record.page_end,
        "page_breaks": list(record.page_breaks),
        "char_start": record.char_start, "char_end": record.char_end, "score": chunk.score,
    }


def _numbered(number: int, chunk: ScoredChunk) -> str:
    text = chunk.record.text.strip()
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1].rstrip() + "…"
    return f"[{number}] {citation_title(chunk.record)} (score {chunk.score:.3f})\n{text}"


def _source(number: int, chunk: ScoredChunk) -> Source:
    return Source(
        title=f"[{number}] {citation_title(chunk.record)}",
        snippet=chunk.record.text.strip()[:300],
        metadata={"source": number, **_metadata(chunk)},
    )
