"""Any OpenAI-compatible upstream (vLLM, llama-server, LM Studio) through the official `openai` client."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import openai

from backend.llm.port import (
    BackendHealth,
    BackendUnavailable,
    ChatMessage,
    GenerationOptions,
    LLMError,
    ModelInfo,
    ModelNotFound,
    StreamDelta,
    ToolCall,
    UnsupportedRequest,
    Usage,
)
from backend.redaction import display_url


def _openai_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _request_args(options: GenerationOptions) -> dict[str, Any]:
    args: dict[str, Any] = {
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "seed": options.seed,
        "stop": list(options.stop) or None,
        "presence_penalty": options.presence_penalty,
        "frequency_penalty": options.frequency_penalty,
        "logit_bias": {str(token): bias for token, bias in options.logit_bias.items()} if options.logit_bias else None,
    }
    if options.json_schema is not None:
        args["response_format"] = {
            "type": "json_schema", "json_schema": {"name": "response", "schema": options.json_schema},
        }
    elif options.json_object:
        args["response_format"] = {"type": "json_object"}
    if options.tools:
        args["tools"] = list(options.tools)
        if options.tool_choice in ("none", "auto", "required"):
            args["tool_choice"] = options.tool_choice
        else:
            args["tool_choice"] = {"type": "function", "function": {"name": options.tool_choice}}
        if not options.parallel_tool_calls:
            args["parallel_tool_calls"] = False
    return {key: value for key, value in args.items() if value is not None}


class OpenAICompatibleBackend:
    name = "openai"

    def __init__(self, base_url: str, api_key: str | None, default_model: str | None, timeout_s: float) -> None:
        self.base_url = base_url
        self._shown_url = display_url(base_url)
        self.default_model = default_model or ""
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0
        )

    def _translate(self, error: Exception) -> LLMError:
        if isinstance(error, openai.NotFoundError):
            return ModelNotFound(str(getattr(error, "param", "") or "requested model"))
        if isinstance(error, openai.BadRequestError | openai.UnprocessableEntityError):
            return UnsupportedRequest(f"The upstream refused the request: {error.message}")
        if isinstance(error, openai.APIConnectionError | openai.APITimeoutError):
            return BackendUnavailable(f"The upstream at {self._shown_url} is not reachable: {error}")
        return BackendUnavailable(f"The upstream failed: {error}")

    async def list_models(self) -> list[ModelInfo]:
        try:
            page = await self._client.models.list()
        except openai.OpenAIError as error:
            raise self._translate(error) from None
        return [
            ModelInfo(id=model.id, created=int(model.created or time.time()), owned_by=model.owned_by or "upstream")
            for model in page.data
        ]

    async def health(self) -> BackendHealth:
        try:
            models = await self.list_models()
        except LLMError as error:
            return BackendHealth(ok=False, backend=self.name, model=self.default_model, detail=str(error))
        if not self.default_model and models:
            self.default_model = models[0].id
        return BackendHealth(ok=True, backend=self.name, model=self.default_model, detail=f"{len(models)} models")

    async def aclose(self) -> None:
        await self._client.close()

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        calls: dict[int, dict[str, str]] = {}
        usage = Usage(0, 0)
        finish: str | None = None
        try:
            stream = await self._client.chat.completions.create(  # type: ignore[call-overload]
                model=model,
                messages=[_openai_message(message) for message in messages],
                stream=True,
                stream_options={"include_usage": True},
                **_request_args(options),
            )
            if options.handed_over is not None:
                options.handed_over()  # the upstream answered 200: the request is its now
            async for chunk in stream:
                if chunk.usage:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    for fragment in choice.delta.tool_calls or []:
                        call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = fragment.id or call["id"]
                        if fragment.function:
                            call["name"] = fragment.function.name or call["name"]
                            call["arguments"] += fragment.function.arguments or ""
                    if choice.delta.content:
                        yield StreamDelta(content=choice.delta.content)
        except openai.OpenAIError as error:
            translated = self._translate(error)
            if isinstance(translated, ModelNotFound):
                translated = ModelNotFound(model)
            raise translated from None
        tool_calls = tuple(
            ToolCall(id=call["id"], name=call["name"], arguments=call["arguments"] or "{}")
            for _, call in sorted(calls.items())
        )
        reason = "tool_calls" if tool_calls else ("length" if finish == "length" else "stop")
        yield StreamDelta(tool_calls=tool_calls, finish_reason=reason, usage=usage)  # type: ignore[arg-type]
