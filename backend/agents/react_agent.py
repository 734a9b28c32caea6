"""The ReAct agent: Thought -> Action -> Observation, at most `REACT_MAX_ITERATIONS` rounds.

Each action is one JSON-schema-constrained generation over the available tools plus `finish` (a grammar
on the embedded model, `format` on Ollama, `response_format` upstream), so it always parses. The model
proposes; deterministic code decides: a tool the router's signals did not point at is replaced by the
one they did, `finish` before a pending step is overruled, and the argument guards fill or correct the
arguments from the question. A repeated identical action ends the loop. The final answer is the
model's draft if it keeps every decisive result verbatim, else the server composes it from the results.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from backend.agents.answer_check import Evidence, evidence_of, final_answer
from backend.agents.argument_guards import MAIN_ARGUMENT, arguments_for, guard_arguments
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
from backend.agents.router import last_user_text
from backend.agents.signals import Signals, read_signals
from backend.agents.tool_runs import ToolRunner, observation_summary
from backend.config import Settings
from backend.llm.port import ChatMessage, GenerationOptions, LLMBackend, Usage
from backend.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)

ACTION_MAX_TOKENS = 160
ANSWER_MAX_TOKENS = 256
PROMPT_QUESTION_CHARS = 1500
"""Characters of the question an agent prompt holds (pasted data reaches the tools through the guards)."""
PROMPT_OBSERVATION_CHARS = 600
PROMPT_OBSERVATIONS = 3
THOUGHT_MAX_CHARS = 200
INPUT_MAX_CHARS = 400
FREE_TEXT_TOOLS = frozenset({"web_search", "wikipedia", "rag_retrieval", "python_code"})


@dataclass
class _Round:
    thought: str
    tool: str
    arguments: dict[str, Any]


class ReActAgent:
    mode: AgentMode = "react"

    def __init__(self, llm: LLMBackend, tools: ToolRegistry, settings: Settings) -> None:
        self._llm = llm
        self._tools = tools
        self._settings = settings
        self._max_iterations = settings.react_max_iterations

    async def run(self, turn: AgentTurn) -> AsyncGenerator[AgentEvent, None]:
        question = last_user_text(turn.messages)
        signals = read_signals(question)
        available = [spec["function"]["name"] for spec in self._tools.openai_tool_specs()]
        descriptions = {spec["function"]["name"]: spec["function"]["description"]
                        for spec in self._tools.openai_tool_specs()}
        hints = [tool for tool in (*turn.decision.tools, *signals.tools) if tool in available]
        hints = list(dict.fromkeys(hints))
        runner = ToolRunner(self._tools, self._settings, turn.user)
        evidence: list[Evidence] = []
        trace: list[TraceStep] = []
        done_calls: list[tuple[str, str]] = []
        usage = Usage(0, 0)
        iterations = 0
        for step in range(1, self._max_iterations + 1):
            iterations = step
            proposal, used = await self._propose(turn, question, available, descriptions, trace)
            usage = usage + used
            chosen = self._decide(proposal, hints, available, question, signals, evidence)
            if chosen is None:
                yield StepStarted(step, "thought", proposal.thought)
                trace.append(TraceStep(step, "finish", thought=proposal.thought))
                break
            key = (chosen.tool, json.dumps(chosen.arguments, sort_keys=True))
            if key in done_calls:
                note = f"{proposal.thought} [repeated {chosen.tool} call: stopping]".strip()
                yield StepStarted(step, "thought", note)
                trace.append(TraceStep(step, "repeat", thought=note, tool=chosen.tool))
                break
            done_calls.append(key)
            yield StepStarted(step, "thought", chosen.thought)
            call_id = f"call_{step}"
            yield ToolCalled(step, call_id, chosen.tool, chosen.arguments)
            started = time.monotonic()
            result = await runner.run(chosen.tool, chosen.arguments)
            duration = round(time.monotonic() - started, 4)
            observation = runner.cut(result.text)
            yield ToolFinished(step, call_id, chosen.tool, result.ok, observation, duration, result.data,
                               tuple(result.sources))
            evidence.append(evidence_of(chosen.tool, chosen.arguments, result))
            trace.append(TraceStep(step, "action", thought=chosen.thought, tool=chosen.tool,
                                   arguments=runner.bounded_arguments(chosen.arguments), observation=observation,
                                   ok=result.ok, duration_s=duration))
        draft, used = await self._draft(turn, question, evidence)
        usage = usage + used
        answer, check = final_answer(question, draft, evidence)
        if evidence and answer != draft:
            logger.info("ReAct answer composed from the results (missing %s)", ", ".join(check.missing) or "-")
        yield AnswerText(answer)
        yield Finished(
            answer=answer, finish_reason="stop", usage=usage, iterations=iterations, trace=tuple(trace),
            sources=tuple(source for item in evidence for source in item.sources),
            tools_used=tuple(dict.fromkeys(item.tool for item in evidence)),
        )

    # --- the model's proposal

    async def _propose(
        self, turn: AgentTurn, question: str, available: Sequence[str], descriptions: dict[str, str],
        trace: Sequence[TraceStep],
    ) -> tuple[_Round, Usage]:
        actions = [*available, "finish"]
        schema = {
            "type": "object",
            "properties": {
                "thought": {"type": "string", "maxLength": THOUGHT_MAX_CHARS},
                "action": {"enum": actions},
                "input": {"type": "string", "maxLength": INPUT_MAX_CHARS},
            },
            "required": ["thought", "action", "input"],
        }
        listing = "\n".join(f"- {name}: {descriptions[name][:160]}" for name in available)
        system = (
            "You solve the user's request with tools. Tools:\n" + listing +
            "\n- finish: the results so far answer the request.\n"
            'Answer with JSON: {"thought": why, "action": a tool name or "finish", "input": the tool\'s input}.'
        )
        history = [step for step in trace if step.kind == "action"][-PROMPT_OBSERVATIONS:]
        notes = "\n".join(
            f"Action: {step.tool}({_main_input(step)})\n"
            f"Observation: {(step.observation or '')[:PROMPT_OBSERVATION_CHARS]}"
            for step in history
        )
        user = f"Request: {question[:PROMPT_QUESTION_CHARS]}" + (f"\n\n{notes}" if notes else "")
        options = GenerationOptions(max_tokens=ACTION_MAX_TOKENS, temperature=0.0, json_schema=schema,
                                    user=turn.options.user)
        text, usage = await self._generate(turn.model, [ChatMessage("system", system), ChatMessage("user", user)],
                                           options)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = {}  # cut at max_tokens; the deterministic choice decides alone
        if not isinstance(value, dict):
            value = {}
        action = value.get("action") if value.get("action") in actions else "finish"
        proposal = _Round(str(value.get("thought") or "")[:THOUGHT_MAX_CHARS], str(action),
                          {"input": str(value.get("input") or "")[:INPUT_MAX_CHARS]})
        return proposal, usage

    def _decide(
        self, proposal: _Round, hints: Sequence[str], available: Sequence[str], question: str, signals: Signals,
        evidence: Sequence[Evidence],
    ) -> _Round | None:
        """The action to run (None: finish), after the deterministic rules have overruled the model."""
        pending = [tool for tool in hints if _pending(tool, question, signals, evidence)]
        tool = proposal.tool
        notes: list[str] = []
        if tool == "finish":
            if not pending:
                return None
            tool = pending[0]
            notes.append(f"finish overruled: {tool} still has a step to do")
        elif hints and tool not in hints:
            if not pending:
                return None
            notes.append(f"{tool} replaced by {pending[0]} (the question points at it)")
            tool = pending[0]
        elif tool not in available:
            return None
        main = MAIN_ARGUMENT.get(tool, "input")
        proposed = {main: proposal.arguments.get("input", "")} if proposal.arguments.get("input") else {}
        guarded = guard_arguments(tool, proposed, question, signals, evidence)
        arguments = guarded.arguments
        if not arguments:
            fallback = arguments_for(tool, question, signals, evidence)
            arguments = fallback or {}
        notes.extend(guarded.corrections)
        thought = proposal.thought or f"Use {tool}."
        if notes:
            thought = f"{thought} [guard: {'; '.join(notes)}]"
        return _Round(thought, tool, arguments)

    # --- the answer

    async def _draft(self, turn: AgentTurn, question: str, evidence: Sequence[Evidence]) -> tuple[str, Usage]:
        results = "\n".join(
            f"{item.tool}: {observation_summary(item.text, PROMPT_OBSERVATION_CHARS)}" for item in evidence[-5:]
        )
        system = "Answer the user's request in one or two sentences. Copy numbers exactly from the tool results."
        user = f"Request: {question[:PROMPT_QUESTION_CHARS]}"
        if results:
            user += f"\n\nTool results:\n{results}"
        limit = min(turn.options.max_tokens or ANSWER_MAX_TOKENS, ANSWER_MAX_TOKENS)
        options = GenerationOptions(
            max_tokens=limit, temperature=0.2 if turn.options.temperature is None else turn.options.temperature,
            top_p=turn.options.top_p, seed=turn.options.seed, logit_bias=turn.options.logit_bias,
            user=turn.options.user,
        )
        return await self._generate(turn.model, [ChatMessage("system", system), ChatMessage("user", user)], options)

    async def _generate(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> tuple[str, Usage]:
        parts: list[str] = []
        usage = Usage(0, 0)
        async with aclosing(self._llm.stream_chat(model, messages, options)) as stream:
            async for delta in stream:
                parts.append(delta.content)
                usage = delta.usage or usage
        return "".join(parts).strip(), usage


def _pending(tool: str, question: str, signals: Signals, evidence: Sequence[Evidence]) -> bool:
    """Whether `tool` still has a step the question asks for (its guard has new arguments for it)."""
    arguments = arguments_for(tool, question, signals, evidence)
    if arguments is None:
        return False
    if tool in FREE_TEXT_TOOLS:  # the model may word the query its own way: one call is the step
        return not any(item.tool == tool for item in evidence)
    return not any(item.tool == tool and item.arguments == arguments for item in evidence)


def _main_input(step: TraceStep) -> str:
    arguments = step.arguments or {}
    value = arguments.get(MAIN_ARGUMENT.get(step.tool or "", ""), next(iter(arguments.values()), ""))
    return str(value)[:200]
