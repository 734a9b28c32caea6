"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from backend.api.deps import LLMDep, MetricsDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(llm: LLMDep) -> JSONResponse:
    status = await llm.health()
    body: dict[str, Any] = {
        "status": "ready" if status.ok else "unavailable",
        "backend": status.backend,
        "model": status.model,
        "detail": status.detail,
    }
    if status.engine is not None:
        body["engine"] = status.engine
    return JSONResponse(body, status_code=200 if status.ok else 503)


@router.get("/metrics")
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
