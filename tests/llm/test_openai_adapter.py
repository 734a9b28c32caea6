"""The OpenAI-compatible upstream adapter, with a real upstream: a second server on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from backend.llm.openai_adapter import OpenAICompatibleBackend
from backend.llm.port import BackendUnavailable, ChatMessage, GenerationOptions, ModelNotFound, join_stream
from tests.conftest import RunningServer, ServerThread, credential_for, free_port, make_settings


async def test_streams_from_the_upstream_with_usage(server: RunningServer, model_id: str) -> None:
    backend = OpenAICompatibleBackend(server.v1, server.api_key, None, timeout_s=30)
    assert (await backend.health()).ok
    assert backend.default_model == model_id
    handed_over: list[bool] = []
    result = await join_stream(backend.stream_chat(
        model_id, [ChatMessage(role="user", content="Say hi.")],
        GenerationOptions(max_tokens=4, temperature=0, handed_over=lambda: handed_over.append(True))))
    await backend.aclose()
    assert result.content
    assert result.usage.completion_tokens == 4 and result.finish_reason == "length"
    assert handed_over == [True]  # once, when the upstream took the request


async def test_tool_calls_are_reassembled_from_upstream_fragments(server: RunningServer, model_id: str) -> None:
    tool = {"type": "function", "function": {
        "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string", "maxLength": 20}},
                                         "required": ["q"]}}}
    backend = OpenAICompatibleBackend(server.v1, server.api_key, None, timeout_s=30)
    result = await join_stream(backend.stream_chat(
        model_id, [ChatMessage(role="user", content="Look up cats.")],
        GenerationOptions(max_tokens=40, temperature=0, tools=(tool,), tool_choice="required")))
    await backend.aclose()
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0].name == "lookup"
    assert "q" in json.loads(result.tool_calls[0].arguments)


async def test_upstream_errors_map_to_port_errors(server: RunningServer) -> None:
    backend = OpenAICompatibleBackend(server.v1, server.api_key, None, timeout_s=30)
    with pytest.raises(ModelNotFound):
        await join_stream(backend.stream_chat("absent", [ChatMessage(role="user", content="x")], GenerationOptions()))
    await backend.aclose()
    down = OpenAICompatibleBackend(f"http://127.0.0.1:{free_port()}/v1", None, "m", timeout_s=2)
    with pytest.raises(BackendUnavailable):
        await join_stream(down.stream_chat("m", [ChatMessage(role="user", content="x")], GenerationOptions()))
    await down.aclose()


def test_server_proxies_an_upstream_for_the_sdk(server: RunningServer, model_id: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm_backend="openai", openai_upstream_base_url=server.v1,
                             openai_upstream_api_key=server.api_key)
    with ServerThread(settings) as base_url:
        key = credential_for(base_url, settings)
        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as sdk:
            assert [model.id for model in sdk.models.list()] == [model_id, "all-MiniLM-L6-v2"]
            request = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6,
                       "temperature": 0}
            upstream = openai.OpenAI(base_url=server.v1, api_key=server.api_key)
            # Warm first: llama.cpp's prompt cache can flip a near-tie between a cold and a cached prompt.
            upstream.chat.completions.create(**request)
            direct = upstream.chat.completions.create(**request)
            proxied = sdk.chat.completions.create(**request)  # type: ignore[call-overload]
            assert proxied.choices[0].message.content == direct.choices[0].message.content
