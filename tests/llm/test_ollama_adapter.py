"""The Ollama adapter through the official `ollama` client, against a loopback server speaking Ollama's API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from backend.config import load_settings
from backend.llm.factory import build_llm_backend
from backend.llm.ollama_adapter import OllamaBackend
from backend.llm.port import (
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    ModelNotFound,
    ToolCall,
    join_stream,
)
from backend.metrics import Metrics
from tests.conftest import ServerThread, credential_for, free_port, make_settings
from tests.fakes.ollama_server import FakeOllama


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


async def test_streams_content_and_reports_usage_from_eval_counts(fake_ollama: FakeOllama) -> None:
    backend = OllamaBackend(fake_ollama.url, "llama3.1:8b", timeout_s=5)
    seen: list[str] = []
    options = GenerationOptions(max_tokens=7, temperature=0.1, stop=("END",), seed=3,
                                handed_over=lambda: seen.append("handed over"))
    deltas = []
    async for delta in backend.stream_chat("llama3.1:8b", [ChatMessage(role="user", content="hi")], options):
        seen.append("delta")
        deltas.append(delta)
    await backend.aclose()
    assert seen[0] == "handed over" and seen.count("handed over") == 1

    assert "".join(delta.content for delta in deltas) == "Hello from Ollama."
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.prompt_tokens, deltas[-1].usage.completion_tokens) == (12, 4)
    sent = fake_ollama.requests[-1]["body"]
    assert sent["stream"] is True
    assert sent["options"] == {"num_predict": 7, "temperature": 0.1, "seed": 3, "stop": ["END"]}


async def test_json_schema_goes_into_format(fake_ollama: FakeOllama) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    backend = OllamaBackend(fake_ollama.url, "llama3.1:8b", timeout_s=5)
    await join_stream(backend.stream_chat("llama3.1:8b", [ChatMessage(role="user", content="hi")],
                                          GenerationOptions(json_schema=schema)))
    await join_stream(backend.stream_chat("llama3.1:8b", [ChatMessage(role="user", content="hi")],
                                          GenerationOptions(json_object=True)))
    await backend.aclose()
    assert fake_ollama.requests[0]["body"]["format"] == schema
    assert fake_ollama.requests[1]["body"]["format"] == "json"


async def test_tool_calls_are_converted_both_ways(fake_ollama: FakeOllama) -> None:
    fake_ollama.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    history = [
        ChatMessage(role="user", content="weather?"),
        ChatMessage(role="assistant", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        ChatMessage(role="tool", content="5 C", tool_call_id="call_1"),
    ]
    backend = OllamaBackend(fake_ollama.url, "llama3.1:8b", timeout_s=5)
    result = await join_stream(backend.stream_chat("llama3.1:8b", history, GenerationOptions(tools=(tool,))))
    await backend.aclose()

    assert result.finish_reason == "tool_calls"
    assert [call.name for call in result.tool_calls] == ["get_weather"]
    assert json.loads(result.tool_calls[0].arguments) == {"city": "Paris"}
    assert result.tool_calls[0].id.startswith("call_")
    sent = fake_ollama.requests[-1]["body"]
    assert sent["messages"][1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    assert sent["messages"][2] == {"role": "tool", "content": "5 C", "tool_name": "get_weather"}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_unknown_model_raises_model_not_found(fake_ollama: FakeOllama) -> None:
    backend = OllamaBackend(fake_ollama.url, "llama3.1:8b", timeout_s=5)
    with pytest.raises(ModelNotFound):
        await join_stream(backend.stream_chat("missing:1b", [ChatMessage(role="user", content="hi")],
                                              GenerationOptions()))
    await backend.aclose()


async def test_unreachable_ollama_raises_backend_unavailable() -> None:
    backend = OllamaBackend(f"http://127.0.0.1:{free_port()}", "llama3.1:8b", timeout_s=2)
    with pytest.raises(BackendUnavailable):
        await join_stream(backend.stream_chat("llama3.1:8b", [ChatMessage(role="user", content="hi")],
                                              GenerationOptions()))
    health = await backend.health()
    await backend.aclose()
    assert not health.ok


async def test_auto_picks_ollama_when_it_answers_and_the_embedded_model_otherwise(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    with_ollama = await build_llm_backend(
        load_settings(llm_backend="auto", ollama_host=fake_ollama.url, data_dir=tmp_path), Metrics())
    without = await build_llm_backend(
        load_settings(llm_backend="auto", ollama_host=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path), Metrics())
    assert (with_ollama.name, without.name) == ("ollama", "llamacpp")
    await with_ollama.aclose()
    await without.aclose()


def test_openai_sdk_chats_through_the_server_on_the_ollama_backend(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm_backend="ollama", ollama_host=fake_ollama.url, ollama_model="llama3.1:8b")
    with ServerThread(settings) as base_url:
        key = credential_for(base_url, settings)
        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as sdk:
            assert [model.id for model in sdk.models.list()] == ["llama3.1:8b", "qwen2.5:0.5b", "all-MiniLM-L6-v2"]
            completion = sdk.chat.completions.create(
                model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
            assert completion.choices[0].message.content == "Hello from Ollama."
            assert completion.usage is not None and completion.usage.completion_tokens == 4
            streamed = "".join(
                chunk.choices[0].delta.content or ""
                for chunk in sdk.chat.completions.create(
                    model="qwen2.5:0.5b", messages=[{"role": "user", "content": "hi"}], stream=True)
            )
            assert streamed == "Hello from Ollama."
            with pytest.raises(openai.NotFoundError):
                sdk.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "hi"}])


async def test_required_tool_choice_is_forced_through_format(fake_ollama: FakeOllama) -> None:
    fake_ollama.reply_words = ['{"tool_calls": [{"name": "get_weather", ', '"arguments": {"city": "Rome"}}]}']
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    backend = OllamaBackend(fake_ollama.url, "llama3.1:8b", timeout_s=5)
    result = await join_stream(backend.stream_chat(
        "llama3.1:8b", [ChatMessage(role="user", content="weather in Rome?")],
        GenerationOptions(tools=(tool,), tool_choice="get_weather")))
    await backend.aclose()

    assert result.finish_reason == "tool_calls"
    assert result.content == ""
    calls = [(call.name, json.loads(call.arguments)) for call in result.tool_calls]
    assert calls == [("get_weather", {"city": "Rome"})]
    sent = fake_ollama.requests[-1]["body"]
    assert "tools" not in sent or not sent["tools"]
    call_schema = sent["format"]["properties"]["tool_calls"]["items"]["anyOf"][0]
    assert call_schema["properties"]["name"] == {"const": "get_weather"}
    assert sent["messages"][0]["role"] == "system" and "get_weather" in sent["messages"][0]["content"]
