"""The /v1/embeddings service without HTTP: input checked and bounded before any work, per-user shares."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder
from backend.rag.embeddings_service import TOKEN_IDS_REFUSED, EmbeddingLimits, EmbeddingsService, PayloadTooLarge
from backend.service_errors import InvalidInput, NotFound, TooManyRequests

LIMITS = EmbeddingLimits(max_inputs=4, max_input_chars=50, max_total_chars=120, per_user=1)


@pytest.fixture
def service(embedder: SentenceTransformerEmbedder) -> EmbeddingsService:
    return EmbeddingsService(embedder, LIMITS)


async def test_a_string_and_a_list_embed_the_same_way_with_tokens_counted(
    service: EmbeddingsService, embedder: SentenceTransformerEmbedder
) -> None:
    one = await service.create("alice", "hello world", "all-MiniLM-L6-v2")
    two = await service.create("alice", ["hello world", "hello"], "all-MiniLM-L6-v2", dimensions=384)

    assert (one.vectors.shape, one.prompt_tokens, one.model) == ((1, 384), 4, "all-MiniLM-L6-v2")
    assert (two.vectors.shape, two.prompt_tokens) == ((2, 384), 7)
    assert np.array_equal(two.vectors[0], one.vectors[0])
    assert np.allclose(one.vectors, await embedder.embed(["hello world"]), atol=1e-6)


@pytest.mark.parametrize("raw", [[1, 2, 3], [[101, 7592, 102]], [[1], [2]]])
def test_token_ids_are_refused_telling_langchain_users_what_to_set(service: EmbeddingsService, raw: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.texts_of(raw)  # type: ignore[arg-type]
    assert (caught.value.message, caught.value.code, caught.value.param) == (
        TOKEN_IDS_REFUSED, "token_ids_not_supported", "input"
    )
    assert "check_embedding_ctx_length=False" in TOKEN_IDS_REFUSED


@pytest.mark.parametrize(("raw", "message", "code"), [
    ([], "'input' must not be empty.", "invalid_value"),
    ("", "'input[0]' is an empty string.", "invalid_value"),
    (["ok", ""], "'input[1]' is an empty string.", "invalid_value"),
    (["ok", 5], "'input' must be a string or a list of strings.", "invalid_value"),
    (["a"] * 5, "'input' has 5 items; at most 4 per request (EMBEDDINGS_MAX_INPUTS).", "too_many_inputs"),
    (["x" * 51], "'input[0]' has 51 characters; at most 50 (EMBEDDINGS_MAX_INPUT_CHARS).", "input_too_long"),
])
def test_bad_or_oversized_input_is_refused_before_embedding(
    service: EmbeddingsService, raw: object, message: str, code: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.texts_of(raw)  # type: ignore[arg-type]
    assert (caught.value.message, caught.value.code) == (message, code)


def test_too_many_characters_in_all_is_a_413(service: EmbeddingsService) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        service.texts_of(["x" * 50, "y" * 50, "z" * 21])
    assert caught.value.status == 413
    assert caught.value.message == (
        "'input' has 121 characters in all; at most 120 per request (EMBEDDINGS_MAX_TOTAL_CHARS)."
    )
    assert service.texts_of(["x" * 50, "y" * 50, "z" * 20]) == ["x" * 50, "y" * 50, "z" * 20]


def test_another_model_is_404_and_other_dimensions_are_400(service: EmbeddingsService) -> None:
    with pytest.raises(NotFound) as missing:
        service.check_model("text-embedding-3-small", None)
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")
    assert missing.value.message == (
        "The embedding model 'text-embedding-3-small' does not exist; this server embeds with 'all-MiniLM-L6-v2'."
    )
    with pytest.raises(InvalidInput) as shortened:
        service.check_model("all-MiniLM-L6-v2", 256)
    assert (shortened.value.param, shortened.value.code) == ("dimensions", "unsupported_value")
    service.check_model("all-MiniLM-L6-v2", 384)


async def test_a_user_past_their_share_is_refused_while_others_go_ahead(service: EmbeddingsService) -> None:
    first = asyncio.create_task(service.create("alice", ["a sentence to keep the model busy"] * 3, "all-MiniLM-L6-v2"))
    await asyncio.sleep(0)  # the first request now holds alice's only slot, waiting on the model

    with pytest.raises(TooManyRequests) as caught:
        await service.create("alice", "second", "all-MiniLM-L6-v2")
    other = await service.create("bob", "meanwhile", "all-MiniLM-L6-v2")

    assert caught.value.code == "per_user_limit" and caught.value.headers == {"Retry-After": "2"}
    assert other.vectors.shape == (1, 384)
    assert (await first).vectors.shape == (3, 384)
    assert (await service.create("alice", "after", "all-MiniLM-L6-v2")).vectors.shape == (1, 384)
