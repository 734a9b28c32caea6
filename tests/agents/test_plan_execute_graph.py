"""The plan-and-execute graph's control flow, on the scripted LLM and scripted tools (no model, no network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from backend.agents.answer_check import Evidence
from backend.agents.plan_execute_graph import PlanExecuteAgent, merge_results
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
from backend.agents.signals import Signals
from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.llm.port import BackendBusy, ChatMessage, GenerationOptions
from backend.per_user_limits import PerUserLimit
from backend.tools.base import Availability, ToolContext, ToolResult
from backend.tools.registry import ToolRegistry
from tests.fakes.scripted_llm import ScriptedLLM

NO_PROPOSAL = '{"tools": []}'


class TextArgs(BaseModel):
    text: str = Field(min_length=1, description="Input.")


class SleepyTool:
    """Sleeps, then answers `value`: long enough that running two one after the other would show."""

    description = "Answers a number after a while."
    args_model: type[BaseModel] = TextArgs

    def __init__(self, name: str, value: str, delay_s: float) -> None:
        self.name, self.value, self.delay_s = name, value, delay_s
        self.calls: list[str] = []
        self.cancelled = False

    def availability(self) -> Availability:
        return Availability(True)

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        assert isinstance(args, TextArgs)
        self.calls.append(args.text)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ToolResult(ok=True, text=f"{self.name} = {self.value}",
                          data={"operation": "evaluate", "input": args.text, "result": self.value})


class FailingTool(SleepyTool):
    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        assert isinstance(args, TextArgs)
        self.calls.append(args.text)
        return ToolResult.failure(f"cannot do '{args.text}'")


class CrashingTool(SleepyTool):
    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        raise RuntimeError("disk on fire")


class FullShareTool(SleepyTool):
    def __init__(self, name: str) -> None:
        super().__init__(name, "", 0)
        self.share = PerUserLimit("busy runs", 1)

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        with self.share.hold(context.user.username), self.share.hold(context.user.username):
            return ToolResult(ok=True, text="never")


def same_text(tool: str, question: str, signals: Signals, previous: Sequence[Evidence]) -> dict[str, Any] | None:
    return {"text": question}


def next_attempt(tool: str, question: str, signals: Signals, previous: Sequence[Evidence]) -> dict[str, Any] | None:
    """A guard that always has another argument after a failure: `try 1`, `try 2`, …"""
    failures = [item for item in previous if item.tool == tool and not item.ok]
    last = int(str(failures[-1].arguments["text"]).split()[-1]) if failures else 0
    return {"text": f"try {last + 1}"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def registry_of(*tools: SleepyTool) -> ToolRegistry:
    registry = ToolRegistry(timeout_s=5)
    for tool in tools:
        registry.register(tool)
    return registry


def turn(question: str, *tools: str) -> AgentTurn:
    return AgentTurn(
        model="scripted-model", messages=[ChatMessage("user", question)], options=GenerationOptions(),
        user=User("alice"), decision=RouteDecision("plan_execute", "test", 1.0, tools),
    )


async def run(agent: PlanExecuteAgent, request: AgentTurn) -> list[AgentEvent]:
    return [event async for event in agent.run(request)]


def finished(events: list[AgentEvent]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    return last


async def test_selected_tools_run_at_once_and_the_reducers_merge_every_branch(settings: Settings) -> None:
    first, second = SleepyTool("alpha", "41", 0.6), SleepyTool("beta", "42", 0.6)
    llm = ScriptedLLM(["alpha gives 41 and beta gives 42."])
    agent = PlanExecuteAgent(llm, registry_of(first, second), settings, arguments_for=same_text)

    started = time.monotonic()
    events = await run(agent, turn("alpha and beta?", "alpha", "beta"))
    elapsed = time.monotonic() - started

    assert elapsed < 1.0  # one after the other would take 1.2 s
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["StepStarted", "StepStarted", "ToolCalled", "ToolCalled", "ToolFinished", "ToolFinished",
                     "StepStarted", "StepStarted", "AnswerText", "Finished"]
    assert [e.kind for e in events if isinstance(e, StepStarted)] == ["plan", "select_tools", "reason", "verify"]
    assert sorted(e.tool for e in events if isinstance(e, ToolFinished)) == ["alpha", "beta"]
    done = finished(events)
    assert done.answer == "alpha gives 41 and beta gives 42."
    assert done.iterations == 1
    assert set(done.tools_used) == {"alpha", "beta"}
    assert [step.kind for step in done.trace] == ["plan", "select_tools", "tool", "tool", "reason", "verify"]
    assert [step.index for step in done.trace] == [1, 2, 3, 4, 5, 6]


async def test_a_draft_that_drops_the_result_fails_verification_and_the_next_round_composes_it(
    settings: Settings
) -> None:
    tool = SleepyTool("math_calc", "3628800", 0)
    llm = ScriptedLLM(["It is a big number, about 3.6 million."])
    agent = PlanExecuteAgent(llm, registry_of(tool), settings, arguments_for=same_text)

    events = await run(agent, turn("what is 10!", "math_calc"))

    done = finished(events)
    assert done.iterations == 2
    assert done.answer == "math_calc = 3628800"
    assert [e.text for e in events if isinstance(e, AnswerText)] == ["math_calc = 3628800"]
    verify_texts = [e.text for e in events if isinstance(e, StepStarted) and e.kind == "verify"]
    assert verify_texts == ["failed: the answer lacks '3628800'; the answer has numbers no result holds (3.6)",
                            "passed"]
    assert len(llm.calls) == 1  # the signals settle the tools, and the second round does not ask the model again
    assert tool.calls == ["what is 10!"]  # a result that was fine is not fetched again


async def test_a_failing_tool_with_other_arguments_is_retried_and_the_loop_stops_after_three_rounds(
    settings: Settings
) -> None:
    tool = FailingTool("alpha", "", 0)
    llm = ScriptedLLM(["I could not."])
    agent = PlanExecuteAgent(llm, registry_of(tool), settings, arguments_for=next_attempt)

    done = finished(await run(agent, turn("do it", "alpha")))

    assert tool.calls == ["try 1", "try 2", "try 3"]
    assert done.iterations == 3
    assert done.answer == "alpha failed: cannot do 'try 3'"
    assert [s.kind for s in done.trace].count("plan") == 3
    assert len(llm.calls) == 1


async def test_a_crashing_tool_and_a_full_share_are_observations_and_the_run_still_answers(
    settings: Settings
) -> None:
    tools = (CrashingTool("alpha", "", 0), FullShareTool("beta"), SleepyTool("gamma", "7", 0))
    llm = ScriptedLLM(["gamma is 7."])
    agent = PlanExecuteAgent(llm, registry_of(*tools), settings, arguments_for=same_text)

    events = await run(agent, turn("all three", "alpha", "beta", "gamma"))

    results = {e.tool: e for e in events if isinstance(e, ToolFinished)}
    assert results["alpha"].ok is False
    assert results["alpha"].text == "Tool 'alpha' failed because of an internal error; see the server log."
    assert results["beta"].ok is False
    assert results["beta"].text.startswith("You already have 1 busy runs in progress")
    assert results["gamma"].ok is True
    assert finished(events).answer == "gamma is 7."


async def test_the_model_proposes_tools_only_when_no_signal_settles_them(settings: Settings) -> None:
    alpha, beta = SleepyTool("alpha", "1", 0), SleepyTool("beta", "2", 0)
    llm = ScriptedLLM(['{"tools": ["beta"]}', "beta says 2."])
    agent = PlanExecuteAgent(llm, registry_of(alpha, beta), settings, arguments_for=same_text)

    done = finished(await run(agent, turn("no signal in these words")))
    assert done.tools_used == ("beta",)
    assert llm.calls[0].options.json_schema == {
        "type": "object", "properties": {"tools": {"type": "array", "items": {"enum": ["alpha", "beta"]},
                                                   "maxItems": 2}},
        "required": ["tools"], "additionalProperties": False,
    }

    llm.add("alpha says 1.")
    done = finished(await run(agent, turn("the router points at alpha", "alpha")))
    assert done.tools_used == ("alpha",)
    assert len(llm.calls) == 3  # with a signal, the model is not asked for a proposal


async def test_without_tools_the_draft_is_the_answer_and_one_round_is_enough(settings: Settings) -> None:
    llm = ScriptedLLM([NO_PROPOSAL, "Hello there."])
    agent = PlanExecuteAgent(llm, registry_of(SleepyTool("alpha", "1", 0)), settings, arguments_for=same_text)

    done = finished(await run(agent, turn("hi")))

    assert (done.answer, done.iterations, done.tools_used) == ("Hello there.", 1, ())


async def test_a_busy_model_while_drafting_still_answers_from_the_results(settings: Settings) -> None:
    llm = ScriptedLLM([BackendBusy("queue full")])
    agent = PlanExecuteAgent(llm, registry_of(SleepyTool("alpha", "5", 0)), settings, arguments_for=same_text)

    done = finished(await run(agent, turn("alpha?", "alpha")))

    assert done.answer == "alpha = 5"


async def test_closing_the_run_while_tools_work_cancels_them(settings: Settings) -> None:
    tool = SleepyTool("alpha", "1", 30)
    agent = PlanExecuteAgent(ScriptedLLM(), registry_of(tool), settings, arguments_for=same_text)
    events = agent.run(turn("alpha?", "alpha"))

    async for event in events:
        if isinstance(event, ToolCalled):
            break
    started = time.monotonic()
    await events.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0)

    assert time.monotonic() - started < 1
    assert tool.cancelled is True


def test_the_results_reducer_keeps_every_branchs_outcome() -> None:
    left: dict[str, Any] = {"call_1": {"tool": "a"}}
    assert merge_results(left, {"call_2": {"tool": "b"}}) == {"call_1": {"tool": "a"}, "call_2": {"tool": "b"}}  # type: ignore[arg-type]


class SharedWeatherTool(SleepyTool):
    """One run per user at once, like the maths workers: a second call at the same time would get 429."""

    def __init__(self) -> None:
        super().__init__("weather", "", 0.2)
        self.share = PerUserLimit("weather runs", 1)

    async def run(self, args: BaseModel, context: ToolContext) -> ToolResult:
        assert isinstance(args, TextArgs)
        with self.share.hold(context.user.username):
            await asyncio.sleep(self.delay_s)
        return ToolResult(ok=True, text=f"{args.text}: sunny", data={"place": args.text})


def each_place(tool: str, question: str, signals: Signals, previous: Sequence[Evidence]) -> dict[str, Any] | None:
    asked = {item.arguments["text"] for item in previous}
    remaining = [place for place in ("Paris", "Oslo") if place not in asked]
    return {"text": remaining[0]} if remaining else None


async def test_two_calls_of_one_tool_take_turns_so_a_per_user_share_of_one_does_not_refuse_the_second(
    settings: Settings
) -> None:
    tool = SharedWeatherTool()
    agent = PlanExecuteAgent(ScriptedLLM(["Paris: sunny. Oslo: sunny."]), registry_of(tool), settings,
                             arguments_for=each_place)

    events = await run(agent, turn("weather in Paris and Oslo", "weather"))

    results = [e for e in events if isinstance(e, ToolFinished)]
    assert [(e.text, e.ok) for e in results] == [("Paris: sunny", True), ("Oslo: sunny", True)]
    assert finished(events).answer == "Paris: sunny. Oslo: sunny."


def test_separate_asks_become_separate_calls_and_one_ask_stays_whole() -> None:
    from backend.agents.argument_guards import arguments_for
    from backend.agents.plan_execute_steps import arguments_for_slot
    from backend.agents.signals import read_signals

    def calls(tool: str, question: str) -> list[dict[str, Any]]:
        return arguments_for_slot(arguments_for, tool, question, read_signals(question), 4)

    assert calls("math_calc", "What is 12 factorial and what is the integral of x^2 from 0 to 3?") == [
        {"expression": "12!"}, {"expression": "integral of x^2 from 0 to 3"}
    ]
    assert calls("math_calc", "How many products are in the database, and what is 3^5?") == [{"expression": "3^5"}]
    assert calls("sql_query", "How many customers are in the database and how many products are there?") == [
        {"query": "SELECT COUNT(*) AS customers FROM customers"}, {"query": "SELECT COUNT(*) AS products FROM products"}
    ]
    assert calls("math_calc", "Solve x + y = 10 and x - y = 2") == [{"expression": "Solve x + y = 10 and x - y = 2"}]
