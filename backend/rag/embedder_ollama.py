"""EMBEDDING_BACKEND=ollama: embeddings from Ollama's /api/embed through the official `ollama` client."""

from __future__ import annotations

import math
from collections.abc import Sequence

import httpx
import numpy as np
import ollama

from backend.llm.port import BackendUnavailable
from backend.rag.embedder_sentence_transformers import EmbedderUnavailable
from backend.rag.ports import Vectors
from backend.redaction import display_url

PROBE_TEXT = "dimensions probe"
CHARS_PER_TOKEN = 4
"""Ollama tokenises on its side and reports one total per call; `count_tokens` estimates from characters."""


def _normalised(rows: Sequence[Sequence[float]], dimensions: int | None) -> Vectors:
    vectors = np.asarray(rows, dtype=np.float32)
    if vectors.ndim != 2 or (dimensions is not None and vectors.shape[1] != dimensions):
        raise BackendUnavailable(f"Ollama returned embeddings of shape {vectors.shape}, expected (n, {dimensions})")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.where(norms == 0, 1, norms), dtype=np.float32)


class OllamaEmbedder:
    """Implements the Embedder port over Ollama; vectors are L2-normalised here whatever the model returns."""

    name = "ollama"

    def __init__(self, host: str, model_id: str, timeout_s: float, batch_size: int = 32) -> None:
        self._client = ollama.AsyncClient(host=host, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)))
        self._shown_url = display_url(host)
        self.model_id = model_id
        self.batch_size = batch_size
        self.dimensions = 0

    @classmethod
    async def connect(cls, host: str, model_id: str, timeout_s: float, batch_size: int = 32) -> OllamaEmbedder:
        """Learns the model's dimensions with one probe; a missing model or server stops start-up clearly."""
        embedder = cls(host, model_id, timeout_s, batch_size)
        try:
            probe = await embedder._call([PROBE_TEXT])
        except BackendUnavailable as error:
            await embedder.aclose()
            raise EmbedderUnavailable(f"EMBEDDING_BACKEND=ollama: {error}") from None
        embedder.dimensions = int(probe.shape[1])
        return embedder

    async def _call(self, texts: list[str]) -> Vectors:
        try:
            response = await self._client.embed(model=self.model_id, input=texts, truncate=True)
        except ollama.ResponseError as error:
            raise BackendUnavailable(
                f"Ollama at {self._shown_url} refused embedding model '{self.model_id}': {error.error}"
            ) from None
        except (ConnectionError, httpx.TransportError) as error:
            raise BackendUnavailable(f"Ollama at {self._shown_url} is not reachable: {error}") from None
        if len(response.embeddings) != len(texts):
            raise BackendUnavailable(f"Ollama returned {len(response.embeddings)} embeddings for {len(texts)} texts")
        return _normalised(response.embeddings, self.dimensions or None)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        parts = [
            await self._call(list(texts[start : start + self.batch_size]))
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) for text in texts)

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
