"""Plain chat: the model answers alone, streamed as it generates; with client-side `tools`, function calling.

Client tools win over the server's agents (LangChain, LlamaIndex, the Agents SDK keep control). Whatever
the backend does natively, `tool_choice` is enforced here too: `none` never returns a call, `required`
and a named function always do (or say why not in the content), and every call's arguments are checked
against the client's JSON schema, with one repair generation forced onto that function. Output that is
still not a valid call comes back as content: never dropped, never a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import regex  # type: ignore[import-untyped]

from backend.agents.port import AgentEvent, AgentMode, AgentTurn, AnswerText, Finished
from backend.agents.system_prompts import with_default_system_prompt
from backend.config import Settings
from backend.llm.port import (
    ChatMessage,
    ChatResult,
    GenerationOptions,
    LLMBackend,
    ToolCall,
    UnsupportedRequest,
    Usage,
    join_stream,
)

logger = logging.getLogger(__name__)

REPAIR_ATTEMPTS = 1
MAX_ARGUMENT_CHARS = 100_000
"""Arguments longer than this are not parsed or validated: they come back as content."""


class ChatAgent:
    mode: AgentMode = "chat"

    def __init__(self, llm: LLMBackend, settings: Settings) -> None:
        self._llm = llm
        self._settings = settings

    async def run(self, turn: AgentTurn) -> AsyncGenerator[AgentEvent, None]:
        messages = with_default_system_prompt(turn.messages, turn.model, self._llm, self._settings)
        if turn.options.tools and turn.options.tool_choice != "none":
            async for event in self._function_calling(turn, messages):
                yield event
            return
        options = replace(turn.options, tools=(), tool_choice="auto") if turn.options.tools else turn.options
        parts: list[str] = []
        usage = Usage(0, 0)
        finish = "stop"
        async with aclosing(self._llm.stream_chat(turn.model, messages, options)) as stream:
            async for delta in stream:
                if delta.content:
                    parts.append(delta.content)
                    yield AnswerText(delta.content)
                usage = delta.usage or usage
                finish = delta.finish_reason or finish
        if finish == "tool_calls":  # a backend that called a tool anyway under tool_choice none
            finish = "stop"
        yield Finished(answer="".join(parts), finish_reason=finish, usage=usage, iterations=1)

    async def _function_calling(self, turn: AgentTurn, messages: list[ChatMessage]) -> AsyncGenerator[AgentEvent, None]:
        options = turn.options
        specs = {tool["function"]["name"]: tool["function"] for tool in options.tools if "function" in tool}
        result = await self._generate(turn.model, messages, options)
        usage = result.usage
        calls, problems = validate_calls(result.tool_calls, specs, options)
        if problems and REPAIR_ATTEMPTS:
            repaired = await self._repair(turn, messages, result, problems, specs)
            if repaired is not None:
                usage = usage + repaired.usage
                calls, problems = validate_calls(repaired.tool_calls, specs, options)
                result = repaired  # the last attempt is what comes back, as calls or as content
        if problems:
            logger.info("Tool calls that do not fit their schema came back as content: %s", "; ".join(problems))
        content = result.content
        if problems:
            raw = json.dumps([{"name": call.name, "arguments": call.arguments} for call in result.tool_calls])
            content = (content + "\n" if content else "") + raw
            calls = []
        if not options.parallel_tool_calls:
            calls = calls[:1]
        if content:
            yield AnswerText(content)
        yield Finished(
            answer=content, finish_reason="tool_calls" if calls else ("length" if result.finish_reason == "length"
                                                                      else "stop"),
            usage=usage, iterations=1, tool_calls=tuple(calls),
        )

    async def _repair(
        self, turn: AgentTurn, messages: list[ChatMessage], result: ChatResult, problems: Sequence[str],
        specs: dict[str, dict[str, Any]],
    ) -> ChatResult | None:
        """One more generation, told what was wrong and forced onto the function it meant (or any, if required)."""
        meant = next((call.name for call in result.tool_calls if call.name in specs), None)
        choice = turn.options.tool_choice
        if choice not in ("auto", "required"):
            meant = choice
        if meant is None and choice == "auto" and not result.tool_calls:
            return None  # an answer in words under `auto` is a valid answer
        forced = meant or "required"
        feedback = ChatMessage("user", "Your tool call was not valid: " + "; ".join(problems)[:1000] +
                               ". Call the function again with arguments that match its parameters.")
        try:
            return await self._generate(turn.model, [*messages, feedback], replace(turn.options, tool_choice=forced))
        except UnsupportedRequest:
            return None

    async def _generate(self, model: str, messages: list[ChatMessage], options: GenerationOptions) -> ChatResult:
        return await join_stream(self._llm.stream_chat(model, messages, options))


def validate_calls(
    calls: Sequence[ToolCall], specs: dict[str, dict[str, Any]], options: GenerationOptions
) -> tuple[list[ToolCall], list[str]]:
    """The calls that fit `tool_choice` and their function's schema, and what was wrong with the others."""
    problems: list[str] = []
    valid: list[ToolCall] = []
    choice = options.tool_choice
    if not calls and choice != "auto":
        problems.append(f"tool_choice {choice!r} needs a function call and the model answered in words")
    for call in calls:
        spec = specs.get(call.name)
        if spec is None:
            problems.append(f"there is no function named {call.name[:64]!r}")
            continue
        if choice not in ("auto", "required") and call.name != choice:
            problems.append(f"tool_choice names {choice!r}, not {call.name!r}")
            continue
        problem = argument_problem(call.arguments, spec.get("parameters") or {"type": "object"})
        if problem:
            problems.append(f"{call.name}: {problem}")
            continue
        valid.append(call)
    return valid, problems


PATTERN_TIMEOUT_S = 0.05
"""Time one `pattern` may take on one string: a client's regex can backtrack for ever on the model's output."""


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if not isinstance(instance, str):
        return
    try:
        matched = regex.search(pattern, instance, timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        yield jsonschema.exceptions.ValidationError(f"{pattern!r} took too long to check on {instance[:40]!r}")
        return
    except regex.error:
        return  # a pattern the engine cannot read is the client's, not the model's fault
    if matched is None:
        yield jsonschema.exceptions.ValidationError(f"{instance[:80]!r} does not match {pattern!r}")


def argument_problem(arguments: str, schema: dict[str, Any]) -> str | None:
    """Why `arguments` (a JSON string) do not fit `schema`, or None when they do."""
    if len(arguments) > MAX_ARGUMENT_CHARS:
        return f"the arguments are longer than {MAX_ARGUMENT_CHARS} characters"
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return "the arguments are not JSON"
    if not isinstance(value, dict):
        return "the arguments are not a JSON object"
    try:
        base = jsonschema.validators.validator_for(schema)
        base.check_schema(schema)
        validator = jsonschema.validators.extend(base, {"pattern": _bounded_pattern})(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except (jsonschema.exceptions.SchemaError, RecursionError):
        return None  # a schema the validator cannot read is the client's, not the model's fault
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "arguments"
    return f"{where}: {error.message[:200]}"
