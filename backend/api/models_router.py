"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import LLMDep
from backend.api.errors import APIError
from backend.llm.port import ModelInfo

router = APIRouter(prefix="/v1", tags=["models"])


def _model_json(model: ModelInfo) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": model.created, "owned_by": model.owned_by}


@router.get("/models")
async def list_models(llm: LLMDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model_json(model) for model in await llm.list_models()]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, llm: LLMDep) -> dict[str, Any]:
    for model in await llm.list_models():
        if model.id == model_id:
            return _model_json(model)
    raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
