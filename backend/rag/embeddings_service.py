"""What POST /v1/embeddings does, without HTTP: check the input against the bounds, embed it, count it.

Token-id input is refused rather than embedded: LangChain's `OpenAIEmbeddings` sends tiktoken ids by
default, and those numbers mean nothing to our tokenizer (embedding them gives confident garbage).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from backend.per_user_limits import PerUserLimit
from backend.rag.ports import Embedder, Vectors
from backend.service_errors import InvalidInput, NotFound, ServiceError

TOKEN_IDS_REFUSED = (
    "This server embeds text, not token ids: send 'input' as a string or a list of strings. "
    "LangChain's OpenAIEmbeddings sends token ids by default; create it with check_embedding_ctx_length=False."
)


class PayloadTooLarge(ServiceError):
    status = 413
    code = "request_too_large"


@dataclass(frozen=True)
class EmbeddingLimits:
    max_inputs: int
    max_input_chars: int
    max_total_chars: int
    per_user: int

    @property
    def max_body_bytes(self) -> int:
        """The request body we read at most: every character escaped as `\\uXXXX`, plus room for the rest."""
        return self.max_total_chars * 6 + 64 * 1024


@dataclass(frozen=True)
class Embeddings:
    vectors: Vectors
    model: str
    prompt_tokens: int


RawInput = str | Sequence[object]
"""What `input` may hold on the wire: a string, or a list of strings, token ids or lists of token ids."""


class EmbeddingsService:
    def __init__(self, embedder: Embedder, limits: EmbeddingLimits) -> None:
        self.embedder = embedder
        self.limits = limits
        self._in_flight = PerUserLimit("embedding requests", limits.per_user)

    def texts_of(self, raw: RawInput) -> list[str]:
        """The input as a list of strings, or `InvalidInput` naming what is wrong (checked before any work)."""
        texts = [raw] if isinstance(raw, str) else list(raw)
        if not texts:
            raise InvalidInput("'input' must not be empty.", param="input")
        if any(not isinstance(item, str) for item in texts):
            if all(isinstance(item, (int, list | tuple)) for item in texts):
                raise InvalidInput(TOKEN_IDS_REFUSED, param="input", code="token_ids_not_supported")
            raise InvalidInput("'input' must be a string or a list of strings.", param="input")
        if len(texts) > self.limits.max_inputs:
            raise InvalidInput(
                f"'input' has {len(texts)} items; at most {self.limits.max_inputs} per request "
                "(EMBEDDINGS_MAX_INPUTS).", param="input", code="too_many_inputs",
            )
        total = 0
        for index, text in enumerate(texts):
            assert isinstance(text, str)
            if not text:
                raise InvalidInput(f"'input[{index}]' is an empty string.", param="input")
            if len(text) > self.limits.max_input_chars:
                raise InvalidInput(
                    f"'input[{index}]' has {len(text)} characters; at most {self.limits.max_input_chars} "
                    "(EMBEDDINGS_MAX_INPUT_CHARS).", param="input", code="input_too_long",
                )
            total += len(text)
        if total > self.limits.max_total_chars:
            raise PayloadTooLarge(
                f"'input' has {total} characters in all; at most {self.limits.max_total_chars} per request "
                "(EMBEDDINGS_MAX_TOTAL_CHARS).", param="input",
            )
        return [text for text in texts if isinstance(text, str)]

    def check_model(self, model: str, dimensions: int | None) -> None:
        if model != self.embedder.model_id:
            raise NotFound(
                f"The embedding model '{model}' does not exist; this server embeds with '{self.embedder.model_id}'.",
                param="model", code="model_not_found",
            )
        if dimensions is not None and dimensions != self.embedder.dimensions:
            raise InvalidInput(
                f"'{model}' makes {self.embedder.dimensions}-dimensional embeddings and cannot shorten them; "
                f"omit 'dimensions' or send {self.embedder.dimensions}.",
                param="dimensions", code="unsupported_value",
            )

    async def create(self, username: str, raw: RawInput, model: str, dimensions: int | None = None) -> Embeddings:
        self.check_model(model, dimensions)
        texts = self.texts_of(raw)
        with self._in_flight.hold(username):
            vectors = await self.embedder.embed(texts)
            tokens = await asyncio.to_thread(self.embedder.count_tokens, texts)
        return Embeddings(vectors=vectors, model=self.embedder.model_id, prompt_tokens=tokens)
