"""ReAct control flow on the scripted LLM (deterministic), over real tools (SymPy maths, the sample database)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from backend.agents.port import (
    AgentEvent,
    AgentTurn,
    AnswerText,
    Finished,
    RouteDecision,
    StepStarted,
    ToolCalled,
    ToolFinished,
)
from backend.agents.react_agent import ReActAgent
from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.llm.port import ChatMessage, GenerationOptions
from backend.service_errors import TooManyRequests
from backend.tools.base import Availability, ToolContext, ToolResult
from backend.tools.math.math_calc import MathCalcTool
from backend.tools.registry import ToolRegistry
from backend.tools.sql.sql_query import SqlQueryTool
from tests.fakes.scripted_llm import ScriptedLLM


class _QueryArgs(BaseModel):
    query: str


class ExplodingTool:
    """A tool whose run raises: the registry turns it into a failed result."""

    name = "web_search"
    description = "Search the web."
    args_model: type[BaseModel] = _QueryArgs

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        raise RuntimeError("the search engine is down")


class FullShareTool(ExplodingTool):
    name = "wikipedia"

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        raise TooManyRequests("You already have 2 lookups running; retry shortly.", 1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, react_max_iterations=5)


@pytest.fixture
def registry(settings: Settings) -> Iterator[ToolRegistry]:
    tools = ToolRegistry(timeout_s=10, data_dir=settings.data_dir)
    tools.register(MathCalcTool(settings))
    tools.register(SqlQueryTool(settings))
    tools.register(ExplodingTool())
    tools.register(FullShareTool())
    yield tools


def action(tool: str, text: str = "", thought: str = "step") -> str:
    return json.dumps({"thought": thought, "action": tool, "input": text})


def turn(question: str, *hints: str, max_tokens: int | None = None) -> AgentTurn:
    return AgentTurn("scripted-model", [ChatMessage("user", question)], GenerationOptions(max_tokens=max_tokens),
                     User("alice"), RouteDecision("react", "test", 0.9, hints))


async def run(agent: ReActAgent, request: AgentTurn) -> list[AgentEvent]:
    return [event async for event in agent.run(request)]


async def test_the_guard_takes_the_expression_from_the_question_and_the_answer_keeps_the_result(
    settings: Settings, registry: ToolRegistry
) -> None:
    llm = ScriptedLLM([action("math_calc", "x^3 from 1 to 2"), action("finish"), "The integral is about 10."])
    events = await run(ReActAgent(llm, registry, settings), turn("What is the integral of x^2 from 0 to 3?"))
    calls = [event for event in events if isinstance(event, ToolCalled)]
    assert [(call.tool, call.arguments) for call in calls] == [
        ("math_calc", {"expression": "integral of x^2 from 0 to 3"})]
    finished = events[-1]
    assert isinstance(finished, Finished)
    # The draft dropped the 9, so the server composed the answer from the result.
    assert "9" in finished.answer and "10" not in finished.answer
    assert finished.tools_used == ("math_calc",) and finished.iterations == 2
    step = finished.trace[0]
    assert (step.kind, step.tool, step.observation, step.ok) == (
        "action", "math_calc", "Integral(x**2, (x, 0, 3)) = 9", True)
    assert "guard" in step.thought and step.duration_s > 0
    await registry.aclose()


async def test_a_draft_that_keeps_the_result_is_the_answer(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("math_calc", "12!"), action("finish"), "12! is 479001600."])
    events = await run(ReActAgent(llm, registry, settings), turn("What is 12 factorial?", "math_calc"))
    assert [event.text for event in events if isinstance(event, AnswerText)] == ["12! is 479001600."]
    await registry.aclose()


async def test_a_follow_up_step_is_computed_on_the_previous_result(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("math_calc"), action("finish", thought="done too early"), action("finish"), "36"])
    events = await run(ReActAgent(llm, registry, settings),
                       turn("First integrate x^2 from 0 to 3, then multiply the result by 4.", "math_calc"))
    calls = [event.arguments["expression"] for event in events if isinstance(event, ToolCalled)]
    assert calls == ["integrate x^2 from 0 to 3", "(9) * 4"]
    thoughts = [event.text for event in events if isinstance(event, StepStarted)]
    assert "finish overruled: math_calc still has a step to do" in thoughts[1]
    await registry.aclose()


async def test_a_tool_the_question_does_not_point_at_is_replaced(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("web_search", "customers"), action("finish"), "There are 40 customers."])
    events = await run(ReActAgent(llm, registry, settings), turn("How many customers are in the database?"))
    calls = [(event.tool, event.arguments) for event in events if isinstance(event, ToolCalled)]
    assert calls == [("sql_query", {"query": "SELECT COUNT(*) AS customers FROM customers"})]
    assert "40" in events[-1].answer  # type: ignore[union-attr]
    await registry.aclose()


async def test_the_loop_stops_after_react_max_iterations(settings: Settings, registry: ToolRegistry) -> None:
    # No signals: the model's free choices run, five different searches, then the loop ends.
    llm = ScriptedLLM([action("web_search", f"query {index}") for index in range(5)] + ["No answer found."])
    events = await run(ReActAgent(llm, registry, settings), turn("Tell me something surprising."))
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.iterations == 5 and len(finished.trace) == 5
    assert llm.remaining == 0 and len(llm.calls) == 6  # five actions and the answer: never a sixth action


async def test_a_repeated_identical_action_ends_the_loop(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("web_search", "same"), action("web_search", "same"), "done"])
    events = await run(ReActAgent(llm, registry, settings), turn("Tell me something surprising."))
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert [step.kind for step in finished.trace] == ["action", "repeat"]
    assert sum(isinstance(event, ToolCalled) for event in events) == 1


async def test_a_failing_tool_is_an_observation_and_the_run_goes_on(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("web_search", "news"), action("wikipedia", "news"), action("finish"), "Sorry."])
    events = await run(ReActAgent(llm, registry, settings), turn("Tell me something surprising."))
    results = [event for event in events if isinstance(event, ToolFinished)]
    assert [(result.tool, result.ok) for result in results] == [("web_search", False), ("wikipedia", False)]
    assert results[0].text == "Tool 'web_search' failed because of an internal error; see the server log."
    assert results[1].text == "You already have 2 lookups running; retry shortly."
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "stop"


async def test_an_unparseable_action_is_decided_deterministically(settings: Settings, registry: ToolRegistry) -> None:
    # Cut at max_tokens, the JSON never closes: the question's own tool runs anyway.
    long_action = json.dumps({"thought": "a", "action": "finish", "input": " ".join(["1"] * 190)})
    llm = ScriptedLLM([long_action, action("finish"), "7"])
    llm_calls: list[Any] = []
    agent = ReActAgent(llm, registry, settings)
    events = await run(agent, turn("Solve 2x + 3 = 17", "math_calc"))
    llm_calls.extend(llm.calls)
    calls = [event.arguments for event in events if isinstance(event, ToolCalled)]
    assert calls == [{"expression": "Solve 2x + 3 = 17"}]
    assert llm_calls[0].options.json_schema["properties"]["action"]["enum"][-1] == "finish"


async def test_closing_the_run_stops_the_generation_in_progress(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("math_calc", "2^10"), action("finish"), " ".join(["word"] * 200)], chunk_delay_s=0.01)
    events = ReActAgent(llm, registry, settings).run(turn("What is 2^10?", "math_calc"))
    seen = [await anext(events) for _ in range(4)]  # step, call, result, the finishing thought
    assert isinstance(seen[2], ToolFinished) and seen[2].ok
    assert isinstance(seen[3], StepStarted) and seen[3].index == 2
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.3)  # inside the answer's generation
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await events.aclose()  # type: ignore[attr-defined]
    assert llm.closed_early == 1
    await registry.aclose()


async def test_bounds_hold_for_a_huge_pasted_question(settings: Settings, registry: ToolRegistry) -> None:
    question = "Compute 2^10 please. " + "x" * 500_000
    llm = ScriptedLLM([action("math_calc"), action("finish"), "1024"])
    events = await run(ReActAgent(llm, registry, settings), turn(question, "math_calc"))
    assert all(len(call.messages[-1].content or "") < 5000 for call in llm.calls)  # the prompts hold a cut question
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert all(len(json.dumps(step.arguments or {})) <= 2100 for step in finished.trace)
    await registry.aclose()


async def test_a_sequence_across_tools_runs_its_steps_in_order(settings: Settings, registry: ToolRegistry) -> None:
    llm = ScriptedLLM([action("sql_query"), action("finish"), action("finish"), "80"])
    question = "How many customers are in the database? Then multiply that number by 2."
    events = await run(ReActAgent(llm, registry, settings), turn(question, "sql_query"))
    calls = [(event.tool, event.arguments) for event in events if isinstance(event, ToolCalled)]
    assert calls == [("sql_query", {"query": "SELECT COUNT(*) AS customers FROM customers"}),
                     ("math_calc", {"expression": "(40) * 2"})]
    assert "80" in events[-1].answer  # type: ignore[union-attr]
    await registry.aclose()
