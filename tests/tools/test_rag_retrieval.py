"""rag_retrieval: unavailable without a retriever; with one, only the requesting user's passages, cited."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.auth.models import User
from backend.config import load_settings
from backend.rag.retriever_port import DocumentRetriever, RetrievedChunk
from backend.tools.base import Tool, ToolContext
from backend.tools.rag_retrieval import RagRetrievalArgs, RagRetrievalTool
from backend.tools.registry import ToolRegistry


class ScriptedRetriever:
    """Implements the port over a fixed per-user corpus, recording who asked."""

    def __init__(self, corpus: dict[str, list[RetrievedChunk]]) -> None:
        self.corpus = corpus
        self.asked: list[tuple[str, str, int]] = []

    async def search(self, username: str, query: str, top_k: int) -> list[RetrievedChunk]:
        self.asked.append((username, query, top_k))
        return list(self.corpus.get(username, []))


CORPUS = {
    "alice": [
        RetrievedChunk(text="Invoices are due in 30 days.", filename="terms.pdf", score=0.42, page=3),
        RetrievedChunk(text="Late fees are 2% per month.", filename="terms.pdf", score=0.91, page=4),
        RetrievedChunk(text="Our office is in Lyon.", filename="notes.txt", score=0.10),
    ],
    "bob": [RetrievedChunk(text="Bob's secret plan.", filename="plan.md", score=0.99)],
}


def context(tmp_path: Path, username: str) -> ToolContext:
    return ToolContext(user=User(username), settings=load_settings(data_dir=tmp_path))


def test_without_a_retriever_the_tool_is_unavailable_with_the_reason() -> None:
    tool = RagRetrievalTool()

    assert isinstance(tool, Tool)
    status = tool.availability()
    assert (status.available, status.reason) == (False, "document retrieval lands with the RAG issue")


async def test_registry_refuses_to_run_it_without_a_retriever(tmp_path: Path) -> None:
    registry = ToolRegistry(timeout_s=5)
    registry.register(RagRetrievalTool())

    result = await registry.invoke("rag_retrieval", {"query": "fees"}, context(tmp_path, "alice"))

    assert not result.ok
    assert result.text == "Tool 'rag_retrieval' is unavailable: document retrieval lands with the RAG issue"


async def test_best_passages_come_first_with_file_page_and_score_as_sources(tmp_path: Path) -> None:
    retriever = ScriptedRetriever(CORPUS)
    assert isinstance(retriever, DocumentRetriever)
    tool = RagRetrievalTool(retriever)

    result = await tool.run(RagRetrievalArgs(query="late fees", top_k=2), context(tmp_path, "alice"))

    assert result.ok
    assert retriever.asked == [("alice", "late fees", 2)]
    assert result.text == (
        "[1] terms.pdf, page 4 (score 0.910)\nLate fees are 2% per month.\n\n"
        "[2] terms.pdf, page 3 (score 0.420)\nInvoices are due in 30 days."
    )
    assert [(s.title, s.metadata) for s in result.sources] == [
        ("terms.pdf, page 4", {"filename": "terms.pdf", "page": 4, "score": 0.91}),
        ("terms.pdf, page 3", {"filename": "terms.pdf", "page": 3, "score": 0.42}),
    ]


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


@pytest.mark.parametrize("arguments", [{"query": "  "}, {"query": "x", "top_k": 0}, {"query": "x", "top_k": 21}])
def test_query_and_top_k_are_bounded(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RagRetrievalArgs.model_validate(arguments)
