"""POST /v1/embeddings, OpenAI-exact: read a bounded body, ask the embeddings service, shape the answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from backend.api.deps import CurrentUser, EmbeddingsServiceDep
from backend.api.openai_schemas import EmbeddingRequest, embeddings_json
from backend.rag.embeddings_service import PayloadTooLarge

router = APIRouter(prefix="/v1", tags=["embeddings"])


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes (declared or counted), before it is parsed."""
    too_large = PayloadTooLarge(f"The request body is larger than {limit} bytes.", headers={"Connection": "close"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body.extend(part)
        if len(body) > limit:
            raise too_large
    return bytes(body)


@router.post(
    "/embeddings",
    openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": EmbeddingRequest.model_json_schema()}},
    }},
)
async def create_embeddings(request: Request, user: CurrentUser, embeddings: EmbeddingsServiceDep) -> dict[str, Any]:
    raw = await _bounded_body(request, embeddings.limits.max_body_bytes)
    try:
        body = EmbeddingRequest.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors(include_url=False)]
        ) from None
    result = await embeddings.create(user.username, body.input, body.model, body.dimensions)
    return embeddings_json(result.vectors, result.model, result.prompt_tokens, body.encoding_format)
