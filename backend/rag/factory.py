"""The one place that builds the RAG adapters from settings: embedder, vector store, keyword index, retriever.

As in `backend/llm/factory.py`: a dict keyed by the setting's value, each adapter's library imported
inside its builder, and an unknown value answered with the valid ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from backend.config import Settings
from backend.rag.ports import DocumentRetriever, Embedder, KeywordIndex, VectorStore
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

logger = logging.getLogger(__name__)

CHROMA_FOLDER = "chroma"


class RagConfigError(SystemExit):
    """A RAG adapter that cannot be built from the settings stops start-up with a clear line."""


@dataclass
class RagComponents:
    """Built once by the composition root; the document service and `rag_retrieval` use these."""

    embedder: Embedder
    vector_store: VectorStore
    keyword_index: KeywordIndex
    retriever: DocumentRetriever

    async def aclose(self) -> None:
        await self.vector_store.aclose()
        await self.embedder.aclose()


async def _sentence_transformers(settings: Settings) -> Embedder:
    from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder

    return await SentenceTransformerEmbedder.load(settings.embedding_model, settings.embedding_batch_size)


async def _ollama(settings: Settings) -> Embedder:
    from backend.rag.embedder_ollama import OllamaEmbedder

    return await OllamaEmbedder.connect(
        settings.ollama_host, settings.embedding_model, settings.request_timeout_s, settings.embedding_batch_size
    )


EMBEDDERS: dict[str, Callable[[Settings], Awaitable[Embedder]]] = {
    "sentence_transformers": _sentence_transformers,
    "ollama": _ollama,
}


def _faiss(settings: Settings, dimensions: int) -> VectorStore:
    from backend.rag.vector_faiss import FaissVectorStore

    return FaissVectorStore(DataLayout(settings.data_dir), JsonStore(settings.data_dir), dimensions)


def _chroma(settings: Settings, dimensions: int) -> VectorStore:
    from backend.rag.vector_chroma import ChromaVectorStore

    if settings.chroma_host:
        try:
            return ChromaVectorStore.remote(settings.chroma_host, settings.chroma_port, dimensions)
        except Exception as error:  # chromadb raises plain ValueError/ConnectError when the server is absent
            raise RagConfigError(
                f"Invalid setting CHROMA_HOST: no Chroma server answers at {settings.chroma_host}:"
                f"{settings.chroma_port} ({type(error).__name__})"
            ) from None
    return ChromaVectorStore.embedded(settings.data_dir / CHROMA_FOLDER, dimensions)


VECTOR_STORES: dict[str, Callable[[Settings, int], VectorStore]] = {
    "faiss": _faiss,
    "chroma": _chroma,
}


async def build_embedder(settings: Settings) -> Embedder:
    try:
        builder = EMBEDDERS[settings.embedding_backend]
    except KeyError:
        raise RagConfigError(
            f"Invalid setting EMBEDDING_BACKEND: {settings.embedding_backend!r}; choose one of {', '.join(EMBEDDERS)}"
        ) from None
    return await builder(settings)


def build_vector_store(settings: Settings, dimensions: int) -> VectorStore:
    try:
        builder = VECTOR_STORES[settings.vector_db_type]
    except KeyError:
        raise RagConfigError(
            f"Invalid setting VECTOR_DB_TYPE: {settings.vector_db_type!r}; choose one of {', '.join(VECTOR_STORES)}"
        ) from None
    return builder(settings, dimensions)


def build_keyword_index(settings: Settings) -> KeywordIndex:
    from backend.rag.keyword_bm25 import Bm25KeywordIndex

    return Bm25KeywordIndex(DataLayout(settings.data_dir), JsonStore(settings.data_dir))


async def build_rag_components(settings: Settings) -> RagComponents:
    """Loads the embedding model (off the event loop) and opens the stores; nothing is downloaded."""
    from backend.rag.retriever import HybridRetriever

    embedder = await build_embedder(settings)
    try:
        vector_store = build_vector_store(settings, embedder.dimensions)
    except BaseException:
        await embedder.aclose()
        raise
    keyword_index = build_keyword_index(settings)
    retriever = HybridRetriever(
        embedder, vector_store, keyword_index, min_score=settings.rag_min_score, hybrid=settings.rag_hybrid
    )
    logger.info(
        "RAG: embedder %s (%s, %d dimensions), vector store %s, hybrid %s",
        embedder.model_id, settings.embedding_backend, embedder.dimensions, vector_store.name, settings.rag_hybrid,
    )
    return RagComponents(embedder, vector_store, keyword_index, retriever)
