"""GET /v1/models and /v1/models/{id}: the chat models of the LLM backend, then the embedding model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import EmbedderDep, LLMDep
from backend.api.errors import APIError
from backend.llm.port import LLMBackend, ModelInfo
from backend.rag.ports import Embedder

router = APIRouter(prefix="/v1", tags=["models"])

EMBEDDING_MODEL_CREATED = 1_700_000_000
"""A fixed `created` for the embedding model: it is a local file, not a deployment with a date."""


def _model_json(model: ModelInfo) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": model.owned_by}


async def _all_models(llm: LLMBackend, embedder: Embedder) -> list[ModelInfo]:
    models = list(await llm.list_models())
    if all(model.id != embedder.model_id for model in models):
        models.append(ModelInfo(id=embedder.model_id, created=EMBEDDING_MODEL_CREATED, owned_by="local-embeddings"))
    return models


@router.get("/models")
async def list_models(llm: LLMDep, embedder: EmbedderDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model_json(model) for model in await _all_models(llm, embedder)]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, llm: LLMDep, embedder: EmbedderDep) -> dict[str, Any]:
    for model in await _all_models(llm, embedder):
        if model.id == model_id:
            return _model_json(model)
    raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
