"""The plan-and-execute agent: a LangGraph `StateGraph` that plans, runs the chosen tools at once, reasons, verifies.

    START → plan → select_tools ─┬─ run_tool (one branch per call, all at once) ─┬→ reason → verify → END
                                 └──────────────── (no tool) ─────────────────────┘            │
              ↑_____________________ verification failed, fewer than max_iterations rounds ______│

The small model cannot be trusted to pick tools or copy numbers, so it only proposes (a JSON-schema
constrained list of tools) and drafts the answer; code decides the tools from the question's signals,
fills their arguments with the argument guards, and the verification step checks the draft against the
results (`answer_check`): a failed tool with another argument to try, a dropped or changed value or an
unverified citation sends the run back to planning, where the next round retries only what failed and
the answer is composed from the results. Calls to the embedded model stay serialised by its own queue;
the tools of a round run concurrently (`Send` fan-out; every key the branches write has a reducer).
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, cast

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from backend.agents import plan_execute_steps as steps
from backend.agents.answer_check import Evidence, check_answer, compose_answer
from backend.agents.argument_guards import arguments_for as guarded_arguments
from backend.agents.langchain_tools import as_langchain_tools
from backend.agents.port import (
    AgentEvent,
    AgentMode,
    AgentTurn,
    AnswerText,
    Finished,
    StepStarted,
    ToolCalled,
    ToolFinished,
    TraceStep,
)
from backend.agents.signals import Signals, read_signals
from backend.config import Settings
from backend.llm.port import LLMBackend, Usage, new_tool_call_id
from backend.tools.base import Source, ToolContext, ToolResult
from backend.tools.registry import ToolRegistry

RECURSION_LIMIT = 50
"""Supersteps of one run: five a round and three rounds need 15; a bug cannot loop for long."""


class PlannedCall(TypedDict):
    call_id: str
    step: int
    slot: str
    """`tool#n`: a retry of a failed call takes the same slot, and the latest outcome of a slot counts."""
    tool: str
    arguments: dict[str, Any]


class ToolOutcome(TypedDict):
    call_id: str
    step: int
    slot: str
    tool: str
    arguments: dict[str, Any]
    ok: bool
    text: str
    data: Any
    sources: list[Source]
    duration_s: float


def merge_results(left: dict[str, ToolOutcome], right: dict[str, ToolOutcome]) -> dict[str, ToolOutcome]:
    """Reducer of `tool_results`: each parallel branch adds its own call's outcome."""
    return {**left, **right}


def add_usage(left: tuple[int, ...], right: tuple[int, ...]) -> tuple[int, ...]:
    """Reducer of `usage` (prompt, completion tokens); LangGraph starts the channel at `()`."""
    if not left:
        return right
    return left[0] + right[0], left[1] + right[1]


class PlanExecuteState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    session_id: str | None
    user_id: str
    question: str
    plan: list[str]
    planned_calls: list[PlannedCall]
    """This round's calls; the fan-out sends each to its own `run_tool` branch."""
    tools_used: Annotated[list[str], operator.add]
    tool_results: Annotated[dict[str, ToolOutcome], merge_results]
    draft: str
    final_output: str
    verification_passed: bool
    feedback: list[str]
    retry_slots: list[str]
    iteration_count: int
    max_iterations: int
    next_step: int
    """The next step index; only the sequential nodes write it (select_tools reserves one per call)."""
    trace: Annotated[list[TraceStep], operator.add]
    usage: Annotated[tuple[int, ...], add_usage]


class ToolBranch(TypedDict):
    """What one `run_tool` branch receives."""

    call: PlannedCall


@dataclass(frozen=True)
class RunContext:
    """Per run, not part of the state: who asks, the bound tools, the signals, where events go."""

    turn: AgentTurn
    tool_context: ToolContext
    tools: dict[str, BaseTool]
    signals: Signals
    turns: dict[str, asyncio.Lock] = field(default_factory=dict)
    """Calls of one tool within a run take turns: the per-user shares (`MATH_MAX_PER_USER` is 1) would
    refuse the second of two at once; different tools run at the same time."""


def latest_outcomes(state: PlanExecuteState) -> list[ToolOutcome]:
    """The latest outcome of every slot, in step order: what the answer must reflect."""
    by_slot: dict[str, ToolOutcome] = {}
    for outcome in sorted(state.get("tool_results", {}).values(), key=lambda o: o["step"]):
        by_slot[outcome["slot"]] = outcome
    return sorted(by_slot.values(), key=lambda o: o["step"])


def evidence_from(outcomes: list[ToolOutcome]) -> list[Evidence]:
    return [
        Evidence(o["tool"], o["arguments"], o["ok"], o["text"], o["data"], tuple(o["sources"])) for o in outcomes
    ]


class PlanExecuteGraph:
    """The compiled graph and its nodes; the nodes are plain functions of the state and the run context."""

    def __init__(self, llm: LLMBackend, settings: Settings, arguments_for: steps.ArgumentSource) -> None:
        self._llm = llm
        self._settings = settings
        self._arguments_for = arguments_for
        self.graph = self._build()

    def _build(self) -> CompiledStateGraph[PlanExecuteState, RunContext, PlanExecuteState, PlanExecuteState]:
        builder = StateGraph(PlanExecuteState, context_schema=RunContext)
        builder.add_node("plan", self.plan)
        builder.add_node("select_tools", self.select_tools)
        builder.add_node("run_tool", self.run_tool, input_schema=ToolBranch)
        builder.add_node("reason", self.reason)
        builder.add_node("verify", self.verify)
        builder.add_edge(START, "plan")
        builder.add_edge("plan", "select_tools")
        builder.add_conditional_edges("select_tools", fan_out, ["run_tool", "reason"])
        builder.add_edge("run_tool", "reason")
        builder.add_edge("reason", "verify")
        builder.add_conditional_edges("verify", after_verification, ["plan", END])
        return builder.compile(name="plan_execute")

    # --- nodes

    async def plan(self, state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        context = runtime.context
        iteration = state.get("iteration_count", 0) + 1
        index = state.get("next_step", 1)
        started = time.monotonic()
        usage = (0, 0)
        decided: list[str] = []
        if iteration == 1:
            decided = steps.decided_tools(context.turn, context.signals, context.tools)
            proposal: list[str] = []
            if not decided:  # only then is the model's proposal worth a (serialised) generation
                runtime.stream_writer(StepStarted(index, "plan", "no signal settles the tools: asking the model"))
                proposal, generated = await steps.propose_tools(self._llm, context.turn, context.tools,
                                                                state["question"])
                usage = (generated.prompt_tokens, generated.completion_tokens)
            chosen = (decided or proposal)[: self._settings.plan_execute_max_tools]
            plan = [f"tool {name}" for name in chosen]
            text = steps.describe_plan(chosen, proposal, context.signals, asked=not decided)
        else:
            plan = [f"retry {slot}" for slot in state.get("retry_slots", [])] + ["compose the answer from the results"]
            text = "Replanning after verification: " + "; ".join(state.get("feedback", [])) + ". " + (
                "Retrying " + ", ".join(state.get("retry_slots", [])) + ". " if state.get("retry_slots") else ""
            ) + "The answer is composed from the results."
        if iteration > 1 or decided:
            runtime.stream_writer(StepStarted(index, "plan", text))
        return {
            "plan": plan, "iteration_count": iteration, "next_step": index + 1, "usage": usage,
            "trace": [TraceStep(index, "plan", thought=text, duration_s=time.monotonic() - started)],
        }

    async def select_tools(self, state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        context = runtime.context
        index = state["next_step"]
        outcomes = latest_outcomes(state)
        previous = evidence_from(outcomes)
        question, signals = state["question"], context.signals
        wanted: list[tuple[str, str, dict[str, Any]]] = []
        if state["iteration_count"] == 1:
            for n, tool in enumerate(_tools_of(state["plan"]), start=1):
                found = steps.arguments_for_slot(self._arguments_for, tool, question, signals,
                                                 self._settings.plan_execute_max_tools)
                wanted += [(f"{tool}#{n}" + (f".{k}" if k else ""), tool, args) for k, args in enumerate(found)]
        else:
            failed = {o["slot"]: o for o in outcomes}
            for slot in state.get("retry_slots", []):
                tool = failed[slot]["tool"]
                retry = steps.retry_arguments(
                    self._arguments_for, tool, failed[slot]["arguments"], question, signals, previous
                )
                wanted += [(slot, tool, retry)] if retry else []
        calls = [
            PlannedCall(call_id=new_tool_call_id(), step=index + 1 + n, slot=slot, tool=tool, arguments=args)
            for n, (slot, tool, args) in enumerate(wanted)
        ]
        calls = calls[: self._settings.plan_execute_max_tools]
        text = ", ".join(steps.call_label(c["tool"], c["arguments"]) for c in calls) or "no tool: answering directly"
        runtime.stream_writer(StepStarted(index, "select_tools", text))
        message = AIMessage(content="", tool_calls=[
            {"name": c["tool"], "args": c["arguments"], "id": c["call_id"], "type": "tool_call"} for c in calls
        ])
        return {
            "planned_calls": calls, "next_step": index + 1 + len(calls),
            "messages": [message] if calls else [],
            "trace": [TraceStep(index, "select_tools", thought=text)],
        }

    async def run_tool(self, state: ToolBranch, runtime: Runtime[RunContext]) -> dict[str, Any]:
        call = state["call"]
        write = runtime.stream_writer
        write(ToolCalled(call["step"], call["call_id"], call["tool"], call["arguments"]))
        tool = runtime.context.tools.get(call["tool"])
        async with runtime.context.turns.setdefault(call["tool"], asyncio.Lock()):
            started = time.monotonic()
            if tool is None:
                result = ToolResult.failure(f"Tool '{call['tool']}' is not available.")
            else:
                message = await tool.ainvoke(
                    {"type": "tool_call", "id": call["call_id"], "name": call["tool"], "args": call["arguments"]}
                )
                artifact = getattr(message, "artifact", None)
                result = artifact if isinstance(artifact, ToolResult) else ToolResult.failure(str(message.content))
            duration = time.monotonic() - started
        text = steps.clip(result.text, self._settings.agent_observation_max_chars)
        write(ToolFinished(call["step"], call["call_id"], call["tool"], result.ok, text, duration,
                           result.data, tuple(result.sources)))
        outcome = ToolOutcome(
            call_id=call["call_id"], step=call["step"], slot=call["slot"], tool=call["tool"],
            arguments=call["arguments"], ok=result.ok, text=result.text, data=result.data,
            sources=list(result.sources), duration_s=duration,
        )
        return {
            "tool_results": {call["call_id"]: outcome},
            "tools_used": [call["tool"]],
            "messages": [ToolMessage(content=text, tool_call_id=call["call_id"], name=call["tool"],
                                     status="success" if result.ok else "error")],
            "trace": [TraceStep(call["step"], "tool", tool=call["tool"], arguments=call["arguments"],
                                observation=text, ok=result.ok, duration_s=duration)],
        }

    async def reason(self, state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        index = state["next_step"]
        evidence = evidence_from(latest_outcomes(state))
        started = time.monotonic()
        usage = (0, 0)
        if state["iteration_count"] == 1:
            runtime.stream_writer(StepStarted(index, "reason", "drafting the answer from the results"))
            draft, generated = await steps.draft_answer(self._llm, runtime.context.turn, state["question"], evidence,
                                                        self._settings.agent_observation_max_chars)
            usage = (generated.prompt_tokens, generated.completion_tokens)
            how = "the model drafted the answer"
        else:
            runtime.stream_writer(StepStarted(index, "reason", "composing the answer from the results"))
            draft = compose_answer(state["question"], evidence)
            how = "composed from the tool results"
        return {
            "draft": draft, "next_step": index + 1, "usage": usage,
            "messages": [AIMessage(content=draft)],
            "trace": [TraceStep(index, "reason", thought=how, duration_s=time.monotonic() - started)],
        }

    async def verify(self, state: PlanExecuteState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        index = state["next_step"]
        outcomes = latest_outcomes(state)
        evidence = evidence_from(outcomes)
        check = check_answer(state["question"], state["draft"], evidence)
        retry = [
            o["slot"] for o in outcomes
            if not o["ok"] and steps.has_other_arguments(
                self._arguments_for, o["tool"], o["arguments"], state["question"], runtime.context.signals, evidence
            )
        ]
        feedback = steps.describe_failures(check, retry)
        passed = check.passed and not retry
        last_round = state["iteration_count"] >= state["max_iterations"]
        if passed:
            final = check.answer
        elif last_round:
            final = check.answer if check.passed else compose_answer(state["question"], evidence)
        else:
            final = ""
        text = "passed" if passed else "failed: " + "; ".join(feedback) + (
            " (last round: the answer is composed from the results)" if last_round and not check.passed else ""
        )
        runtime.stream_writer(StepStarted(index, "verify", text))
        return {
            "verification_passed": passed, "final_output": final, "feedback": feedback, "retry_slots": retry,
            "next_step": index + 1, "trace": [TraceStep(index, "verify", thought=text)],
        }


def fan_out(state: PlanExecuteState) -> list[Send] | str:
    """One `run_tool` branch per planned call, all in the same superstep (so they run at once)."""
    calls = state.get("planned_calls", [])
    if not calls:
        return "reason"
    return [Send("run_tool", ToolBranch(call=call)) for call in calls]


def after_verification(state: PlanExecuteState) -> str:
    if state.get("verification_passed") or state["iteration_count"] >= state["max_iterations"]:
        return END
    return "plan"


def _tools_of(plan: list[str]) -> list[str]:
    return [step.removeprefix("tool ") for step in plan if step.startswith("tool ")]


class PlanExecuteAgent:
    """The `Agent` port over the graph: typed events as the graph runs, then the verified answer."""

    mode: AgentMode = "plan_execute"

    def __init__(
        self, llm: LLMBackend, tools: ToolRegistry, settings: Settings,
        *, arguments_for: steps.ArgumentSource | None = None,
    ) -> None:
        """`arguments_for`: where each call's arguments come from (the argument guards; tests pass their own)."""
        self._registry = tools
        self._settings = settings
        self._graph = PlanExecuteGraph(llm, settings, arguments_for or guarded_arguments)

    @property
    def graph(self) -> CompiledStateGraph[PlanExecuteState, RunContext, PlanExecuteState, PlanExecuteState]:
        return self._graph.graph

    async def run(self, turn: AgentTurn) -> AsyncGenerator[AgentEvent, None]:
        question = steps.last_question(turn.messages)
        tool_context = ToolContext(user=turn.user, settings=self._settings)
        tools: dict[str, BaseTool] = {tool.name: tool for tool in as_langchain_tools(self._registry, tool_context)}
        context = RunContext(turn, tool_context, tools, read_signals(question))
        start: PlanExecuteState = {
            "messages": steps.to_langchain_messages(turn.messages), "session_id": None,
            "user_id": turn.user.username, "question": question, "plan": [], "planned_calls": [],
            "tools_used": [], "tool_results": {}, "draft": "", "final_output": "", "verification_passed": False,
            "feedback": [], "retry_slots": [], "iteration_count": 0,
            "max_iterations": self._settings.plan_execute_max_iterations, "next_step": 1, "trace": [],
            "usage": (0, 0),
        }
        final: dict[str, Any] = dict(start)
        stream = cast(AsyncGenerator[tuple[str, Any], None], self.graph.astream(
            start, context=context, stream_mode=["custom", "values"], config={"recursion_limit": RECURSION_LIMIT}
        ))
        try:
            async for mode, chunk in stream:
                if mode == "custom":
                    yield cast(AgentEvent, chunk)
                else:
                    final = chunk
        finally:
            await stream.aclose()
        answer = final.get("final_output") or compose_answer(question, evidence_from(latest_outcomes(final)))  # type: ignore[arg-type]
        yield AnswerText(answer)
        outcomes = latest_outcomes(final)  # type: ignore[arg-type]
        prompt_tokens, completion_tokens = final.get("usage", (0, 0))
        yield Finished(
            answer=answer, finish_reason="stop", usage=Usage(prompt_tokens, completion_tokens),
            iterations=int(final.get("iteration_count", 0)),
            trace=tuple(sorted(final.get("trace", []), key=lambda step: step.index)),
            sources=tuple(source for outcome in outcomes for source in outcome["sources"]),
            tools_used=tuple(dict.fromkeys(final.get("tools_used", []))),
        )


