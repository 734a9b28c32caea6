"""`rag_retrieval`: the most relevant passages of the requesting user's own documents, cited by file and page."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from backend.rag.retriever_port import DocumentRetriever, RetrievedChunk
from backend.tools.base import Availability, Source, ToolContext, ToolResult

NO_RETRIEVER = "document retrieval lands with the RAG issue"
EXCERPT_CHARS = 1200
"""Per passage in the model's text; long chunks are cut so top_k of them fit a small context."""


class RagRetrievalArgs(BaseModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] = Field(
        description="What to look for in the user's uploaded documents, in plain words."
    )
    top_k: int = Field(4, ge=1, le=20, description="How many passages to return, 1 to 20.")


class RagRetrievalTool:
    name = "rag_retrieval"
    description = (
        "Search the user's own uploaded documents (PDF, text, notes) and return the most relevant passages "
        "with file name and page. Use it when the question is about the user's files or documents."
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
        chunks = await self._retriever.search(context.user.username, args.query, args.top_k)
        chunks = sorted(chunks, key=lambda chunk: chunk.score, reverse=True)[: args.top_k]
        if not chunks:
            return ToolResult(ok=True, text=f"No passage of your documents matches '{args.query}'.", data=[])
        return ToolResult(
            ok=True,
            text="\n\n".join(_numbered(index, chunk) for index, chunk in enumerate(chunks, start=1)),
            data=[
                {"filename": c.filename, "page": c.page, "score": c.score, "text": c.text} for c in chunks
            ],
            sources=[_source(chunk) for chunk in chunks],
        )


def _where(chunk: RetrievedChunk) -> str:
    return chunk.filename if chunk.page is None else f"{chunk.filename}, page {chunk.page}"


def _numbered(index: int, chunk: RetrievedChunk) -> str:
    text = chunk.text.strip()
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1].rstrip() + "…"
    return f"[{index}] {_where(chunk)} (score {chunk.score:.3f})\n{text}"


def _source(chunk: RetrievedChunk) -> Source:
    return Source(
        title=_where(chunk),
        snippet=chunk.text.strip()[:300],
        metadata={"filename": chunk.filename, "page": chunk.page, "score": chunk.score},
    )
