"""Embedders: the bundled all-MiniLM-L6-v2 (real, offline, off the event loop) and Ollama's /api/embed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backend.config import load_settings
from backend.rag.embedder_ollama import OllamaEmbedder
from backend.rag.embedder_sentence_transformers import (
    SMALL_CALL,
    EmbedderUnavailable,
    SentenceTransformerEmbedder,
    bundled_model_dir,
)
from backend.rag.factory import RagConfigError, build_embedder, build_vector_store
from backend.rag.ports import Embedder
from tests.conftest import free_port
from tests.fakes.ollama_server import FakeOllama, fake_embedding

ROOT = Path(__file__).resolve().parents[2]


# --- sentence-transformers


async def test_vectors_are_normalised_float32_of_the_models_dimensions(embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dimensions) == ("all-MiniLM-L6-v2", 384)

    vectors = await embedder.embed(["The invoice is due in 30 days.", "Le chat dort.", "x"])

    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_similar_meanings_are_closer_than_unrelated_texts(embedder: SentenceTransformerEmbedder) -> None:
    query, paraphrase, unrelated = await embedder.embed(
        ["When must the invoice be paid?", "Payment of the invoice is due within 30 days.",
         "Penguins live in Antarctica."]
    )

    assert float(query @ paraphrase) > 0.5 > float(query @ unrelated)


async def test_batching_does_not_change_the_vectors(embedder: SentenceTransformerEmbedder) -> None:
    texts = [f"Sentence number {i} about topic {i % 3}." for i in range(7)]
    small_batches = SentenceTransformerEmbedder(embedder._model, batch_size=2)

    one_by_one = np.stack([(await embedder.embed([text]))[0] for text in texts])
    batched = await small_batches.embed(texts)

    assert np.allclose(batched, one_by_one, atol=1e-5)
    await small_batches.aclose()


async def test_a_question_is_embedded_on_one_torch_thread_and_a_batch_on_all(
    embedder: SentenceTransformerEmbedder,
) -> None:
    import torch

    def threads_now() -> int:  # torch's count in the embedder's own thread
        return int(embedder._executor.submit(torch.get_num_threads).result())

    everything = torch.get_num_threads()
    await embedder.embed(["Which is better for a beginner, violin or piano?"])
    assert threads_now() == 1  # its second thread would only spin against the model's
    await embedder.embed([f"chunk {i} of an uploaded document" for i in range(SMALL_CALL + 1)])
    assert threads_now() == everything


async def test_empty_input_gives_an_empty_matrix(embedder: SentenceTransformerEmbedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_tokens_are_counted_with_special_tokens_and_cut_at_the_models_limit(
    embedder: SentenceTransformerEmbedder,
) -> None:
    assert embedder.count_tokens(["hello world"]) == 4  # [CLS] hello world [SEP]
    assert embedder.count_tokens(["hello world", "hello"]) == 7
    assert embedder.count_tokens(["word " * 1000]) == embedder.max_tokens == 256
    assert embedder.count_tokens([]) == 0


async def test_encoding_runs_off_the_event_loop(embedder: SentenceTransformerEmbedder) -> None:
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    await embedder.embed(["a sentence of some length to embed, repeated " * 8] * 64)
    elapsed = time.monotonic() - started
    done = True
    await task

    assert elapsed > 0.1
    assert ticks >= elapsed / 0.005 * 0.3  # the loop kept turning while the model ran


async def test_a_model_other_than_the_bundled_one_is_refused_naming_the_choices() -> None:
    with pytest.raises(EmbedderUnavailable) as caught:
        await SentenceTransformerEmbedder.load("text-embedding-3-small")
    assert str(caught.value) == (
        "Invalid setting EMBEDDING_MODEL: 'text-embedding-3-small'; EMBEDDING_BACKEND=sentence_transformers "
        "offers all-MiniLM-L6-v2 (bundled), or use EMBEDDING_BACKEND=ollama"
    )


def test_the_model_loads_offline_without_the_network_or_the_hub_cache(tmp_path: Path) -> None:
    """A fresh process with an empty HF cache, HF_HUB_OFFLINE unset and every non-loopback connect refused."""
    probe = """
import asyncio, json, os, socket
attempts = []
real = socket.socket.connect
def guard(sock, address):
    attempts.append(repr(address))
    raise OSError("no network")
socket.socket.connect = guard
from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder
async def main():
    embedder = await SentenceTransformerEmbedder.load()
    vectors = await embedder.embed(["offline works"])
    await embedder.aclose()
    return vectors.shape
shape = asyncio.run(main())
print(json.dumps({"shape": list(shape), "attempts": attempts, "offline": os.environ.get("HF_HUB_OFFLINE")}))
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HOME=str(tmp_path), HF_HUB_OFFLINE="0")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"shape": [1, 384], "attempts": [], "offline": "1"}
    assert not (tmp_path / "hf").exists()  # nothing cached, so nothing was fetched
    assert bundled_model_dir().name == "model"


async def test_the_factory_builds_the_bundled_embedder_by_default(tmp_path: Path) -> None:
    embedder = await build_embedder(load_settings(data_dir=tmp_path))
    try:
        assert (type(embedder).__name__, embedder.model_id, embedder.dimensions) == (
            "SentenceTransformerEmbedder", "all-MiniLM-L6-v2", 384
        )
    finally:
        await embedder.aclose()


# --- Ollama


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


async def test_ollama_embedder_learns_dimensions_and_normalises(fake_ollama: FakeOllama) -> None:
    embedder = await OllamaEmbedder.connect(fake_ollama.url, "nomic-embed-text", timeout_s=5, batch_size=2)
    try:
        assert isinstance(embedder, Embedder)
        assert embedder.dimensions == 8
        texts = ["alpha", "beta", "gamma"]

        vectors = await embedder.embed(texts)

        expected = np.asarray([fake_embedding(text, 8) for text in texts], dtype=np.float32)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        assert vectors.dtype == np.float32 and np.allclose(vectors, expected, atol=1e-6)
        embeds = [request["body"] for request in fake_ollama.requests if request["path"] == "/api/embed"]
        assert [body["input"] for body in embeds] == [["dimensions probe"], ["alpha", "beta"], ["gamma"]]
        assert all(body["model"] == "nomic-embed-text" and body["truncate"] is True for body in embeds)
        assert (await embedder.embed([])).shape == (0, 8)
    finally:
        await embedder.aclose()


async def test_ollama_without_the_model_stops_start_up_clearly(fake_ollama: FakeOllama) -> None:
    with pytest.raises(EmbedderUnavailable) as caught:
        await OllamaEmbedder.connect(fake_ollama.url, "missing-model", timeout_s=5)
    assert str(caught.value) == (
        f"EMBEDDING_BACKEND=ollama: Ollama at {fake_ollama.url} refused embedding model 'missing-model': "
        'model "missing-model" not found, try pulling it first'
    )


async def test_ollama_down_stops_start_up_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EmbedderUnavailable) as caught:
        await OllamaEmbedder.connect(url, "nomic-embed-text", timeout_s=2)
    assert str(caught.value).startswith(f"EMBEDDING_BACKEND=ollama: Ollama at {url} is not reachable: ")


async def test_the_factory_builds_the_ollama_embedder_from_settings(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, embedding_backend="ollama", embedding_model="nomic-embed-text",
                             ollama_host=fake_ollama.url)
    embedder = await build_embedder(settings)
    try:
        assert (type(embedder).__name__, embedder.model_id, embedder.dimensions) == (
            "OllamaEmbedder", "nomic-embed-text", 8
        )
    finally:
        await embedder.aclose()


def test_an_unknown_adapter_name_is_answered_with_the_valid_ones(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path).model_copy(update={"vector_db_type": "milvus"})
    with pytest.raises(RagConfigError) as caught:
        build_vector_store(settings, 8)
    assert str(caught.value) == "Invalid setting VECTOR_DB_TYPE: 'milvus'; choose one of faiss, chroma"
