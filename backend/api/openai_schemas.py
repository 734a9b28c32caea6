"""The OpenAI wire format: request models for /v1/chat/completions and /v1/embeddings, response builders, SSE.

Request models ignore unknown fields (clients send `metadata`, `store`, `service_tier`…) and their
`Field` descriptions double as API docs. Their size limits (messages, characters, tools) come from the
settings passed as validation context by `json_body`, and are checked before any template or tokenizer runs.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from backend.api.errors import APIError
from backend.config import Settings
from backend.llm.port import ChatMessage, GenerationOptions, StreamDelta, ToolCall, Usage, new_tool_call_id

ChatMode = Literal["auto", "chat", "react", "plan_execute"]

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 500
MAX_LOGIT_BIAS_ENTRIES = 1024


def _limit(info: ValidationInfo, name: str) -> int:
    """A request limit from the settings given as validation context, or its default without any."""
    settings = (info.context or {}).get("settings")
    value = getattr(settings, name) if isinstance(settings, Settings) else Settings.model_fields[name].default
    return int(value)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str = Field(description="`text`; `image_url` is refused by the text-only models served here.")
    text: str | None = None


class FunctionCall(_Lenient):
    name: str
    arguments: str | dict[str, Any] = ""


class ToolCallIn(_Lenient):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class MessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = Field(None, description="Accepted and dropped: models never see past reasoning.")
    reasoning: str | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class JSONSchemaFormat(_Lenient):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="llama-cpp-python's json_object schema.")


class FunctionSpec(_Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolSpec(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedToolChoiceFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedToolChoiceFunction


class ChatCompletionRequest(_Lenient):
    """The body of POST /v1/chat/completions."""

    model: str = Field(min_length=1, description="A model id from GET /v1/models.")
    messages: list[MessageIn] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Wins over `max_tokens` when both are set.")
    stop: str | list[str] | None = Field(
        None, description=f"Up to {MAX_STOP_SEQUENCES} sequences of at most {MAX_STOP_CHARS} characters each."
    )
    seed: int | None = None
    n: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(
        None, description="`false`: at most one tool call per answer. The embedded model makes one call per answer."
    )
    logit_bias: dict[str, float] | None = Field(None, max_length=MAX_LOGIT_BIAS_ENTRIES)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | None = Field(None, description="Not supported: `true` is refused with a 400.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Not supported: a value above 0 is refused.")
    modalities: list[str] | None = Field(None, description="Only `text` is supported.")
    user: str | None = None
    mode: ChatMode = Field("auto", description="`auto`, `chat`, `react` or `plan_execute` (extra_body).")
    session_id: str | None = Field(None, description="Conversation to record this exchange in (extra_body).")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        sequences = [value] if isinstance(value, str) else value or []
        if any(len(sequence) > MAX_STOP_CHARS for sequence in sequences):
            raise ValueError(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _few_enough_messages(cls, value: object, info: ValidationInfo) -> object:
        # Before the items are validated: 100,000 tiny messages are refused without building any of them.
        limit = _limit(info, "max_messages")
        if isinstance(value, list) and len(value) > limit:
            raise PydanticCustomError(
                "too_many_messages", "at most {limit} messages are accepted (MAX_MESSAGES), got {count}",
                {"limit": limit, "count": len(value)},
            )
        return value

    @field_validator("messages")
    @classmethod
    def _short_enough_prompt(cls, messages: list[MessageIn], info: ValidationInfo) -> list[MessageIn]:
        limit = _limit(info, "max_prompt_chars")
        total = sum(_message_chars(message) for message in messages)
        if total > limit:
            raise PydanticCustomError(
                "prompt_too_long", "the messages hold {count} characters; at most {limit} are accepted "
                "(MAX_PROMPT_CHARS)", {"limit": limit, "count": total},
            )
        return messages

    @field_validator("tools", mode="before")
    @classmethod
    def _few_and_small_enough_tools(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, list):
            return value
        limit = _limit(info, "max_tools")
        if len(value) > limit:
            raise PydanticCustomError(
                "too_many_tools", "at most {limit} tools are accepted (MAX_TOOLS), got {count}",
                {"limit": limit, "count": len(value)},
            )
        # Tool definitions are rendered into the prompt too; their schemas' own bounds are checked later.
        size, size_limit = len(json.dumps(value, default=str)), _limit(info, "max_prompt_chars")
        if size > size_limit:
            raise PydanticCustomError(
                "tools_too_large", "the tool definitions hold {count} characters of JSON; at most {limit} are "
                "accepted (MAX_PROMPT_CHARS)", {"limit": size_limit, "count": size},
            )
        return value

    def check_supported(self) -> None:
        """Known fields with values this server cannot honour get a 400 naming them."""
        if self.n is not None and self.n != 1:
            raise APIError(400, "Only n=1 is supported.", param="n", code="unsupported_value")
        if self.logprobs or self.top_logprobs:
            param = "logprobs" if self.logprobs else "top_logprobs"
            raise APIError(400, "Log probabilities are not supported.", param=param, code="unsupported_value")
        if self.modalities and set(self.modalities) != {"text"}:
            raise APIError(400, "Only the text modality is supported.", param="modalities", code="unsupported_value")
        for index, message in enumerate(self.messages):
            for call_index, call in enumerate(message.tool_calls or []):
                if isinstance(call.function.arguments, str) and not _is_json_object(call.function.arguments):
                    raise APIError(
                        400, "Tool call arguments must be a JSON object encoded as a string.",
                        param=f"messages[{index}].tool_calls[{call_index}].function.arguments",
                        code="invalid_value",
                    )
        for index, message in enumerate(self.messages):
            if isinstance(message.content, list):
                for part in message.content:
                    if part.type != "text":
                        raise APIError(
                            400,
                            f"Content parts of type '{part.type}' are not supported: the models here read text only.",
                            param=f"messages[{index}].content",
                            code="unsupported_content",
                        )
        if (
            self.response_format
            and self.response_format.type == "json_schema"
            and (not self.response_format.json_schema or self.response_format.json_schema.schema_ is None)
        ):
            raise APIError(400, "response_format.json_schema.schema is required.", param="response_format")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise APIError(400, "tool_choice names a function that is not in tools.", param="tool_choice")
        if self.tool_choice == "required" and not self.tools:
            raise APIError(400, "tool_choice 'required' needs tools.", param="tool_choice")

    def to_messages(self) -> list[ChatMessage]:
        return [_to_chat_message(message) for message in self.messages]

    def to_options(self) -> GenerationOptions:
        schema: dict[str, Any] | None = None
        json_object = False
        if self.response_format:
            if self.response_format.type == "json_schema" and self.response_format.json_schema:
                schema = self.response_format.json_schema.schema_
            elif self.response_format.type == "json_object":
                schema = self.response_format.schema_
                json_object = schema is None
        tool_choice: str = "auto"
        if isinstance(self.tool_choice, NamedToolChoice):
            tool_choice = self.tool_choice.function.name
        elif self.tool_choice:
            tool_choice = self.tool_choice
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        logit_bias = None
        if self.logit_bias:
            try:
                logit_bias = {int(token): bias for token, bias in self.logit_bias.items()}
            except ValueError:
                raise APIError(400, "logit_bias keys must be token ids.", param="logit_bias") from None
        return GenerationOptions(
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=stop,
            seed=self.seed,
            json_schema=schema,
            json_object=json_object,
            tools=tuple(tool.model_dump() for tool in self.tools or []),
            tool_choice=tool_choice,
            parallel_tool_calls=self.parallel_tool_calls is not False,
            logit_bias=logit_bias,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )


def _is_json_object(text: str) -> bool:
    """Empty arguments mean no arguments, as clients send for parameterless functions."""
    if not text.strip():
        return True
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _message_chars(message: MessageIn) -> int:
    """What a message puts into the prompt: its text and its tool calls' arguments."""
    chars = len(_flatten(message.content) or "") + len(message.name or "")
    for call in message.tool_calls or []:
        arguments = call.function.arguments
        chars += len(call.function.name) + len(arguments if isinstance(arguments, str) else json.dumps(arguments))
    return chars


def _flatten(content: str | list[ContentPart] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content if part.type == "text")


def _to_chat_message(message: MessageIn) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    calls = tuple(
        ToolCall(
            id=call.id or new_tool_call_id(),
            name=call.function.name,
            arguments=(call.function.arguments.strip() or "{}")
            if isinstance(call.function.arguments, str)
            else json.dumps(call.function.arguments),
        )
        for call in message.tool_calls or []
    )
    return ChatMessage(
        role=role, content=_flatten(message.content), name=message.name,
        tool_calls=calls, tool_call_id=message.tool_call_id,
    )


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def completion_json(
    *, completion_id: str, created: int, model: str, content: str, tool_calls: list[ToolCall],
    finish_reason: str, usage: Usage, extra: dict[str, Any] | None = None, reasoning: str = "",
) -> dict[str, Any]:
    """A `chat.completion` object; an agent's steps go in `message.reasoning_content`."""
    message: dict[str, Any] = {"role": "assistant", "content": content if content or not tool_calls else None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [_tool_call_json(call) for call in tool_calls]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage_json(usage),
        "system_fingerprint": None,
    }
    body.update(extra or {})
    return body


class ChunkWriter:
    """Builds the `chat.completion.chunk` events of one stream: same `id` and `created` throughout.

    Tool calls go out as OpenAI does: a first delta with `index`, `id`, `type`, `name` and empty
    `arguments`, then one delta with only `index` and the arguments, so clients that concatenate
    string fields per index rebuild them exactly.
    """

    def __init__(self, model: str, include_usage: bool, extra: dict[str, Any] | None = None) -> None:
        self.id = new_completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.extra = extra or {}
        self._sent_role = False
        self._tool_index = 0

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            body["usage"] = None
        body.update(self.extra)
        return sse_event(body)

    def role(self) -> str:
        self._sent_role = True
        return self._chunk({"role": "assistant", "content": ""})

    def delta(self, delta: StreamDelta) -> list[str]:
        events = []
        if not self._sent_role:
            events.append(self.role())
        if delta.content:
            events.append(self._chunk({"content": delta.content}))
        for call in delta.tool_calls:
            index = self._tool_index
            self._tool_index += 1
            events.append(self._chunk({"tool_calls": [
                {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            ]}))
            events.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]}))
        if delta.finish_reason:
            events.append(self._chunk({}, finish_reason=delta.finish_reason))
        return events

    def reasoning(self, text: str) -> list[str]:
        """An agent's step as `delta.reasoning_content` (rendered by LibreChat and Open WebUI)."""
        events = [] if self._sent_role else [self.role()]
        if text:
            events.append(self._chunk({"reasoning_content": text}))
        return events

    def finish(self, finish_reason: str, extra: dict[str, Any]) -> str:
        """The last chunk, with the agent's decision (`agent`) and `sources` beside the finish reason."""
        body = json.loads(self._chunk({}, finish_reason=finish_reason)[len("data: "):])
        body.update(extra)
        return sse_event(body)

    def usage(self, usage: Usage) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [],
            "usage": usage_json(usage),
        }
        body.update(self.extra)
        return sse_event(body)


def sse_event(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, separators=(',', ':'), ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


# --- /v1/embeddings


class EmbeddingRequest(_Lenient):
    # Items are typed loosely so that the service can tell token ids from strings and say so precisely.
    input: str | list[str | int | list[int]] = Field(
        description="A string or a list of strings to embed. Token ids (lists of integers) are refused with 400."
    )
    model: str = Field(description="The embedding model, as listed by GET /v1/models.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`float` (lists of numbers) or `base64` (little-endian float32; the openai SDK's default)."
    )
    dimensions: int | None = Field(None, ge=1, description="Accepted only when equal to the model's dimensions.")
    user: str | None = Field(None, max_length=256, description="Accepted and ignored.")


def embedding_json(vector: Any, index: int, encoding_format: str) -> dict[str, Any]:
    """One `data` item; base64 is the raw little-endian float32 bytes, as the openai SDK decodes them."""
    if encoding_format == "base64":
        packed: Any = base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")
    else:
        packed = vector.tolist()
    return {"object": "embedding", "index": index, "embedding": packed}


def embeddings_json(vectors: Any, model: str, prompt_tokens: int, encoding_format: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [embedding_json(vector, index, encoding_format) for index, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
