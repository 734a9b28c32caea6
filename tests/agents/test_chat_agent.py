"""Plain chat and client-side function calling on the scripted LLM: tool_choice, schema checks, one repair."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from backend.agents.chat_agent import ChatAgent, argument_problem
from backend.agents.port import AgentEvent, AgentTurn, Finished, RouteDecision
from backend.agents.system_prompts import MEASURED_PROMPTS
from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.llm.port import ChatMessage, GenerationOptions, ToolCall
from tests.fakes.scripted_llm import ScriptedLLM

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "minLength": 1}, "days": {"type": "integer"}},
    "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def turn(options: GenerationOptions, *messages: ChatMessage, model: str = "scripted-model") -> AgentTurn:
    return AgentTurn(model, list(messages) or [ChatMessage("user", "weather in Rome?")], options, User("alice"),
                     RouteDecision("chat", "test", 1.0))


async def finished(llm: ScriptedLLM, settings: Settings, request: AgentTurn) -> Finished:
    events: list[AgentEvent] = [event async for event in ChatAgent(llm, settings).run(request)]
    last = events[-1]
    assert isinstance(last, Finished)
    return last


def call(name: str, arguments: object) -> ToolCall:
    return ToolCall(id=f"call_{name}", name=name, arguments=json.dumps(arguments))


async def test_a_valid_call_comes_back_as_a_tool_call(settings: Settings) -> None:
    llm = ScriptedLLM([call("get_weather", {"city": "Rome"})])
    result = await finished(llm, settings, turn(GenerationOptions(tools=(WEATHER,), tool_choice="get_weather")))
    assert result.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("get_weather", {"city": "Rome"})]
    assert len(llm.calls) == 1


async def test_arguments_off_the_schema_get_one_repair_forced_onto_the_function(settings: Settings) -> None:
    llm = ScriptedLLM([call("get_weather", {"town": "Rome"}), call("get_weather", {"city": "Rome", "days": 2})])
    result = await finished(llm, settings, turn(GenerationOptions(tools=(WEATHER,), tool_choice="auto")))
    assert [json.loads(c.arguments) for c in result.tool_calls] == [{"city": "Rome", "days": 2}]
    repair = llm.calls[1]
    assert repair.options.tool_choice == "get_weather"
    assert "'city' is a required property" in (repair.messages[-1].content or "")


async def test_a_call_still_invalid_after_the_repair_comes_back_as_content(settings: Settings) -> None:
    llm = ScriptedLLM([call("get_weather", {"city": 3}), call("get_weather", {"city": ""})])
    result = await finished(llm, settings, turn(GenerationOptions(tools=(WEATHER,), tool_choice="required")))
    assert result.finish_reason == "stop" and result.tool_calls == ()
    assert json.loads(result.answer) == [{"name": "get_weather", "arguments": '{"city": ""}'}]


async def test_required_tool_choice_answered_in_words_is_repaired(settings: Settings) -> None:
    llm = ScriptedLLM(["It is sunny.", call("get_time", {})])
    result = await finished(llm, settings, turn(GenerationOptions(tools=(WEATHER, TIME), tool_choice="required")))
    assert [c.name for c in result.tool_calls] == ["get_time"]
    assert llm.calls[1].options.tool_choice == "required"


async def test_a_call_to_another_function_than_the_named_one_is_not_returned(settings: Settings) -> None:
    llm = ScriptedLLM([call("get_time", {}), call("get_weather", {"city": "Oslo"})])
    result = await finished(llm, settings, turn(GenerationOptions(tools=(WEATHER, TIME), tool_choice="get_weather")))
    assert [c.name for c in result.tool_calls] == ["get_weather"]


async def test_parallel_tool_calls_false_keeps_one_call(settings: Settings) -> None:
    llm = ScriptedLLM([(call("get_weather", {"city": "Oslo"}), call("get_time", {}))])
    options = GenerationOptions(tools=(WEATHER, TIME), parallel_tool_calls=False)
    result = await finished(llm, settings, turn(options))
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    both = await finished(ScriptedLLM([(call("get_weather", {"city": "Oslo"}), call("get_time", {}))]), settings,
                          turn(GenerationOptions(tools=(WEATHER, TIME))))
    assert [c.name for c in both.tool_calls] == ["get_weather", "get_time"]


async def test_tool_choice_none_answers_in_words_without_tools(settings: Settings) -> None:
    llm = ScriptedLLM(["It is sunny in Rome."])
    result = await finished(llm, settings, turn(GenerationOptions(tools=(WEATHER,), tool_choice="none")))
    assert (result.answer, result.tool_calls, result.finish_reason) == ("It is sunny in Rome.", (), "stop")
    assert llm.calls[0].options.tools == ()


def test_argument_checks_are_bounded() -> None:
    assert argument_problem("x" * 200_000, {"type": "object"}) == "the arguments are longer than 100000 characters"
    assert argument_problem("[1]", {"type": "object"}) == "the arguments are not a JSON object"
    # A pattern that backtracks exponentially is stopped after 50 ms and counts as not matching.
    evil = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a|a)*$"}}}
    started = time.monotonic()
    problem = argument_problem(json.dumps({"a": "a" * 40 + "b"}), evil)
    assert problem is not None and "took too long" in problem and time.monotonic() - started < 1
    assert argument_problem(json.dumps({"a": "aaa"}), evil) is None


async def test_the_measured_system_prompt_is_added_only_when_the_request_has_none(settings: Settings) -> None:
    model = "SmolLM2-135M-Instruct.Q4_1"
    llm = ScriptedLLM(["Paris.", "Paris."])
    llm.name = "llamacpp"
    await finished(llm, settings, turn(GenerationOptions(), ChatMessage("user", "Capital of France?"), model=model))
    assert llm.calls[0].messages[0] == ChatMessage("system", MEASURED_PROMPTS[model])
    await finished(llm, settings, turn(GenerationOptions(), ChatMessage("system", "Be terse."),
                                       ChatMessage("user", "Capital of France?"), model=model))
    assert [m.content for m in llm.calls[1].messages] == ["Be terse.", "Capital of France?"]


async def test_default_system_prompt_none_and_text(tmp_path: Path) -> None:
    llm = ScriptedLLM(["a", "b"])
    await finished(llm, load_settings(data_dir=tmp_path, default_system_prompt="none"), turn(GenerationOptions()))
    await finished(llm, load_settings(data_dir=tmp_path, default_system_prompt="Speak like a pirate."),
                   turn(GenerationOptions()))
    assert [call.messages[0].role for call in llm.calls] == ["user", "system"]
    assert llm.calls[1].messages[0].content == "Speak like a pirate."
