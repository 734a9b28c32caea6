"""rag_retrieval: unavailable without a retriever; with one, only the asking user's passages, as numbered sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.auth.models import User
from backend.config import load_settings
from backend.rag.ports import ChunkRecord, DocumentRetriever, ScoredChunk
from backend.tools.base import Tool, ToolContext
from backend.tools.rag_retrieval import RagRetrievalArgs, RagRetrievalTool
from backend.tools.registry import ToolRegistry


class ScriptedRetriever:
    """Implements the port over a fixed per-user corpus, recording who asked."""

    def __init__(self, corpus: dict[str, list[ScoredChunk]]) -> None:
        self.corpus = corpus
        self.asked: list[tuple[str, str, int]] = []

    async def search(self, username: str, query: str, top_k: int) -> list[ScoredChunk]:
        self.asked.append((username, query, top_k))
        return list(self.corpus.get(username, []))


def chunk(file_id: str, filename: str, index: int, text: str, score: float,
          pages: tuple[int, int] | None = None, start: int = 0) -> ScoredChunk:
    return ScoredChunk(
        ChunkRecord(
            chunk_id=f"{file_id}:{index}", file_id=file_id, filename=filename, chunk_index=index, text=text,
            char_start=start, char_end=start + len(text),
            page_start=pages[0] if pages else None, page_end=pages[1] if pages else None,
        ),
        score,
    )


CORPUS = {
    "alice": [
        chunk("f1", "terms.pdf", 2, "Invoices are due in 30 days.", 0.42, (3, 3), 1800),
        chunk("f1", "terms.pdf", 3, "Late fees are 2% per month.", 0.91, (3, 4), 2600),
        chunk("f2", "notes.txt", 0, "Our office is in Lyon.", 0.10),
    ],
    "bob": [chunk("f9", "plan.md", 0, "Bob's secret plan.", 0.99)],
}


def context(tmp_path: Path, username: str, **settings: object) -> ToolContext:
    return ToolContext(user=User(username), settings=load_settings(data_dir=tmp_path, **settings))


def test_without_a_retriever_the_tool_is_unavailable_with_the_reason() -> None:
    tool = RagRetrievalTool()

    assert isinstance(tool, Tool)
    status = tool.availability()
    assert (status.available, status.reason) == (False, "document retrieval is not configured on this server")


async def test_registry_refuses_to_run_it_without_a_retriever(tmp_path: Path) -> None:
    registry = ToolRegistry(timeout_s=5)
    registry.register(RagRetrievalTool())

    result = await registry.invoke("rag_retrieval", {"query": "fees"}, context(tmp_path, "alice"))

    assert not result.ok
    assert result.text == "Tool 'rag_retrieval' is unavailable: document retrieval is not configured on this server"


async def test_best_passages_come_first_as_numbered_sources_naming_file_pages_and_chunk(tmp_path: Path) -> None:
    retriever = ScriptedRetriever(CORPUS)
    assert isinstance(retriever, DocumentRetriever)
    tool = RagRetrievalTool(retriever)

    result = await tool.run(RagRetrievalArgs(query="late fees", top_k=2), context(tmp_path, "alice"))

    assert result.ok
    assert retriever.asked == [("alice", "late fees", 2)]
    assert result.text == (
        "[1] terms.pdf pp.3-4, chunk 3 (score 0.910)\nLate fees are 2% per month.\n\n"
        "[2] terms.pdf p.3, chunk 2 (score 0.420)\nInvoices are due in 30 days."
    )
    assert [(s.title, s.metadata) for s in result.sources] == [
        ("[1] terms.pdf pp.3-4, chunk 3", {
            "source": 1, "file_id": "f1", "filename": "terms.pdf", "chunk_id": "f1:3", "chunk_index": 3,
            "page_start": 3, "page_end": 4, "page_breaks": [], "char_start": 2600, "char_end": 2627, "score": 0.91,
        }),
        ("[2] terms.pdf p.3, chunk 2", {
            "source": 2, "file_id": "f1", "filename": "terms.pdf", "chunk_id": "f1:2", "chunk_index": 2,
            "page_start": 3, "page_end": 3, "page_breaks": [], "char_start": 1800, "char_end": 1828, "score": 0.42,
        }),
    ]
    assert [(item["source"], item["text"]) for item in result.data] == [
        (1, "Late fees are 2% per month."), (2, "Invoices are due in 30 days."),
    ]


async def test_without_top_k_the_server_setting_rag_top_k_applies(tmp_path: Path) -> None:
    retriever = ScriptedRetriever(CORPUS)
    tool = RagRetrievalTool(retriever)

    result = await tool.run(RagRetrievalArgs(query="office"), context(tmp_path, "alice", rag_top_k=1))

    assert retriever.asked == [("alice", "office", 1)]
    assert result.text.startswith("[1] terms.pdf pp.3-4, chunk 3")
    assert len(result.sources) == 1


async def test_a_document_without_pages_is_cited_by_file_and_chunk(tmp_path: Path) -> None:
    tool = RagRetrievalTool(ScriptedRetriever({"alice": [CORPUS["alice"][2]]}))

    result = await tool.run(RagRetrievalArgs(query="office"), context(tmp_path, "alice"))

    assert result.text == "[1] notes.txt, chunk 0 (score 0.100)\nOur office is in Lyon."
    assert result.sources[0].metadata["page_start"] is None


async def test_each_user_searches_only_their_own_documents(tmp_path: Path) -> None:
    retriever = ScriptedRetriever(CORPUS)
    tool = RagRetrievalTool(retriever)

    result = await tool.run(RagRetrievalArgs(query="plan"), context(tmp_path, "alice"))

    assert retriever.asked[0][0] == "alice"
    assert "Bob" not in result.text
    assert {s.metadata["filename"] for s in result.sources} == {"terms.pdf", "notes.txt"}


async def test_no_match_is_a_successful_empty_answer(tmp_path: Path) -> None:
    tool = RagRetrievalTool(ScriptedRetriever({}))

    result = await tool.run(RagRetrievalArgs(query="anything"), context(tmp_path, "carol"))

    assert result.ok
    assert result.text == "No passage of your documents matches 'anything'."
    assert result.sources == []


@pytest.mark.parametrize("arguments", [{"query": "  "}, {"query": "x", "top_k": 0}, {"query": "x", "top_k": 21},
                                       {"query": "x" * 1001}])
def test_query_and_top_k_are_bounded(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RagRetrievalArgs.model_validate(arguments)
