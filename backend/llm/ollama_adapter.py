"""Ollama backend through the official `ollama` async client (/api/chat streaming, /api/tags).

Ollama's native API wants tool-call arguments as objects and returns them as objects; the OpenAI
wire wants JSON strings with ids. This adapter converts both ways.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import httpx
import ollama

from backend.llm.port import (
    BackendHealth,
    BackendUnavailable,
    ChatMessage,
    FinishReason,
    GenerationOptions,
    LLMError,
    ModelInfo,
    ModelNotFound,
    StreamDelta,
    ToolCall,
    UnsupportedRequest,
    Usage,
    new_tool_call_id,
)
from backend.llm.tool_prompt import parse_tool_output, tool_output_schema, tool_system_prompt
from backend.redaction import display_url


def _ollama_message(message: ChatMessage, names_by_call_id: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": call.name, "arguments": json.loads(call.arguments or "{}")}}
            for call in message.tool_calls
        ]
    if message.role == "tool":
        name = message.name or names_by_call_id.get(message.tool_call_id or "")
        if name:
            out["tool_name"] = name
    return out


def _ollama_options(options: GenerationOptions) -> dict[str, Any]:
    values: dict[str, Any] = {
        "num_predict": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": options.seed,
        "stop": list(options.stop) or None,
        "presence_penalty": options.presence_penalty,
        "frequency_penalty": options.frequency_penalty,
    }
    return {key: value for key, value in values.items() if value is not None}


class OllamaBackend:
    name = "ollama"

    def __init__(self, host: str, default_model: str, timeout_s: float) -> None:
        self.host = host
        self._shown_url = display_url(host)
        self.default_model = default_model
        self._client = ollama.AsyncClient(host=host, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)))

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await coroutine
        except (ConnectionError, httpx.TransportError) as error:
            raise BackendUnavailable(f"Ollama at {self._shown_url} is not reachable: {error}") from None

    async def list_models(self) -> list[ModelInfo]:
        listing = await self._call(self._client.list())
        models = []
        for model in listing.models:
            modified = model.modified_at
            created = int(modified.timestamp()) if isinstance(modified, datetime) else 0
            models.append(ModelInfo(id=str(model.model), created=created, owned_by="ollama"))
        return models

    async def health(self) -> BackendHealth:
        try:
            names = [model.id for model in await self.list_models()]
        except LLMError as error:
            return BackendHealth(ok=False, backend=self.name, model=self.default_model, detail=str(error))
        except ollama.ResponseError as error:
            return BackendHealth(ok=False, backend=self.name, model=self.default_model, detail=str(error))
        detail = "model available" if self.default_model in names else "default model not pulled"
        return BackendHealth(ok=True, backend=self.name, model=self.default_model, detail=detail)

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        names_by_call_id = {call.id: call.name for message in messages for call in message.tool_calls}
        wire_messages = [_ollama_message(message, names_by_call_id) for message in messages]
        format_: Any = None
        if options.json_schema is not None:
            format_ = options.json_schema
        elif options.json_object:
            format_ = "json"
        tools = list(options.tools) if options.tools and options.tool_choice != "none" else None
        # Ollama ignores tool_choice; a required or named call is forced through `format` instead,
        # with the tools described in the prompt, and the constrained answer parsed into calls.
        forced = bool(tools) and options.tool_choice != "auto"
        if forced and tools:
            format_ = tool_output_schema(tools, options.tool_choice)
            wire_messages.insert(0, {"role": "system", "content": tool_system_prompt(tools, options.tool_choice)})
            tools = None
        try:
            stream = await self._call(
                self._client.chat(
                    model=model, messages=wire_messages, tools=tools, stream=True,
                    format=format_, options=_ollama_options(options),
                )
            )
            if options.handed_over is not None:
                options.handed_over()  # the client sends the request at the first read: as soon as it can tell
            calls: list[ToolCall] = []
            held: list[str] = []
            async for part in stream:
                message = part.message
                for call in message.tool_calls or []:
                    calls.append(
                        ToolCall(id=new_tool_call_id(), name=call.function.name,
                                 arguments=json.dumps(dict(call.function.arguments or {})))
                    )
                content = message.content or ""
                if forced:
                    held.append(content)
                    content = ""
                if not part.done:
                    if content:
                        yield StreamDelta(content=content)
                    continue
                if forced:
                    content, calls = parse_tool_output("".join(held))
                finish: FinishReason = "tool_calls" if calls else ("length" if part.done_reason == "length" else "stop")
                usage = Usage(prompt_tokens=part.prompt_eval_count or 0, completion_tokens=part.eval_count or 0)
                yield StreamDelta(content=content, tool_calls=tuple(calls), finish_reason=finish, usage=usage)
        except ollama.ResponseError as error:
            if error.status_code == 404:
                raise ModelNotFound(model) from None
            if error.status_code == 400:
                raise UnsupportedRequest(f"Ollama refused the request: {error.error}") from None
            raise BackendUnavailable(f"Ollama failed: {error.error}") from None
        except (ConnectionError, httpx.TransportError) as error:
            raise BackendUnavailable(f"Ollama at {self._shown_url} is not reachable: {error}") from None
