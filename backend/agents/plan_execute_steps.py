"""The plan-and-execute graph's work outside LangGraph: the model's proposal and draft, the tool choice, the texts.

Kept apart from `plan_execute_graph.py` so the graph module reads like its diagram. The model is asked
twice at most per run (a constrained proposal of tools, a short draft); any backend error there only
costs the model's part: the signals still choose the tools and the answer is composed from the results.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool

from backend.agents.answer_check import AnswerCheck, Evidence
from backend.agents.citation_check import chunks_of
from backend.agents.port import AgentTurn
from backend.agents.signals import Signals, read_signals
from backend.llm.port import ChatMessage, GenerationOptions, LLMBackend, LLMError, Usage

logger = logging.getLogger(__name__)

ArgumentSource = Callable[[str, str, Signals, Sequence[Evidence]], dict[str, Any] | None]
"""(tool, question, signals, previous results) -> the arguments to send, or None: the argument guards'
`arguments_for`, or a test's own."""

PROPOSAL_MAX_TOKENS = 48
DRAFT_MAX_TOKENS = 200
RESULT_CHARS_IN_PROMPT = 700
"""Of each result in the drafting prompt: enough for the value, small enough for a 2k context."""
LABEL_CHARS = 80
QUESTION_CHARS_IN_PROMPT = 1500
"""Of the question in the model's prompts: pasted data reaches the tools through the guards, not the model."""
_CLAUSE_SPLIT = re.compile(r"\?|;|\b(?:and|also|as well as)\b", re.IGNORECASE)

PROPOSAL_SYSTEM = (
    "You choose the tools that answer the user's question. Available tools:\n{tools}\n"
    'Reply with JSON: {{"tools": [names of the tools needed]}}.'
)
DRAFT_SYSTEM = (
    "Answer the user's question using only the tool results below. Copy every number, expression, name and "
    "row exactly as the results give it; do not compute anything yourself. Be brief. When you use a document "
    'passage, quote its sentence in double quotes followed by its label, e.g. "..." [report.pdf p.2].'
)


def last_question(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return message.content
    return ""


def to_langchain_messages(messages: Sequence[ChatMessage]) -> list[AnyMessage]:
    out: list[AnyMessage] = []
    for message in messages:
        content = message.content or ""
        if message.role == "system":
            out.append(SystemMessage(content=content))
        elif message.role == "user":
            out.append(HumanMessage(content=content))
        elif message.role == "assistant":
            out.append(AIMessage(content=content))
        else:
            out.append(ToolMessage(content=content, tool_call_id=message.tool_call_id or "unknown"))
    return out


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_label(tool: str, arguments: Mapping[str, Any]) -> str:
    """`math_calc(integrate x^2 from 0 to 3)`: the tool and its main (first) argument, as steps show it."""
    main = next(iter(arguments.values()), "") if arguments else ""
    shown = " ".join(str(main).split())
    return f"{tool}({clip(shown, LABEL_CHARS)})"


async def generate(llm: LLMBackend, turn: AgentTurn, messages: list[ChatMessage],
                   options: GenerationOptions) -> tuple[str, Usage]:
    """One generation, joined; closing the run (client gone) closes the stream and stops the model."""
    stream = llm.stream_chat(turn.model, messages, options)
    parts: list[str] = []
    usage = Usage(0, 0)
    try:
        async for delta in stream:
            parts.append(delta.content)
            usage = delta.usage or usage
    finally:
        await stream.aclose()
    return "".join(parts), usage


def _options(turn: AgentTurn, max_tokens: int, **overrides: Any) -> GenerationOptions:
    limit = min(turn.options.max_tokens or max_tokens, max_tokens)
    values: dict[str, Any] = {"max_tokens": limit, "tools": (), "tool_choice": "none", "json_object": False,
                              "json_schema": None, "user": turn.user.username}
    return replace(turn.options, **(values | overrides))


async def propose_tools(llm: LLMBackend, turn: AgentTurn, tools: Mapping[str, BaseTool],
                        question: str) -> tuple[list[str], Usage]:
    """The model's proposal: a JSON list of tool names, constrained to the available ones."""
    if not tools:
        return [], Usage(0, 0)
    names = list(tools)
    schema = {
        "type": "object",
        "properties": {"tools": {"type": "array", "items": {"enum": names}, "maxItems": len(names)}},
        "required": ["tools"], "additionalProperties": False,
    }
    listing = "\n".join(f"- {name}: {clip(tool.description.split('. ')[0], 160)}" for name, tool in tools.items())
    messages = [ChatMessage("system", PROPOSAL_SYSTEM.format(tools=listing)),
                ChatMessage("user", clip(question, QUESTION_CHARS_IN_PROMPT))]
    try:
        text, usage = await generate(llm, turn, messages, _options(turn, PROPOSAL_MAX_TOKENS, json_schema=schema,
                                                                    temperature=0.0))
    except LLMError as error:
        logger.warning("Plan proposal skipped: %s", error)
        return [], Usage(0, 0)
    try:
        proposed = json.loads(text).get("tools", [])
    except (json.JSONDecodeError, AttributeError):  # cut at the token limit: no proposal
        return [], usage
    return [name for name in dict.fromkeys(proposed) if name in tools], usage


def decided_tools(turn: AgentTurn, signals: Signals, tools: Mapping[str, BaseTool]) -> list[str]:
    """Code decides: the tools the router's and the question's signals point at, best first, if available."""
    return [name for name in dict.fromkeys((*turn.decision.tools, *signals.tools)) if name in tools]


def describe_plan(chosen: Sequence[str], proposal: Sequence[str], signals: Signals, *, asked: bool) -> str:
    if not chosen:
        return "No tool is needed: answer directly."
    why = f" ({'; '.join(signals.reasons)})" if signals.reasons and not asked else " (the model's proposal)"
    together = " at once" if len(chosen) > 1 else ""
    return f"Run {', '.join(chosen)}{together}{why}, then answer from the results and verify them."


def _clause_arguments(arguments_for: ArgumentSource, tool: str, question: str) -> list[dict[str, Any] | None]:
    """The calls for the clauses that ask for `tool`, when the question's clauses ask for different things.

    "12! and the integral of x^2 from 0 to 3": two `math_calc` calls; "how many products are there, and
    what is 3^5": `math_calc` gets only "what is 3^5". The question stays whole when only one clause asks
    for the tool and no other clause asks for anything ("integrate x^2 between 0 and 3"), or for a system of
    equations. A maths clause must read as maths (a stray `a` passes for a variable).
    """
    clauses = [part.strip(" ,.") for part in _CLAUSE_SPLIT.split(question) if part and part.strip(" ,.")]
    if len(clauses) < 2:
        return []
    tools_of = [read_signals(clause).tools for clause in clauses]
    asking = [c for c, tools in zip(clauses, tools_of, strict=True) if tool in tools or not tools]
    if tool == "math_calc":
        asking = [c for c, tools in zip(clauses, tools_of, strict=True) if tool in tools]
        if sum("=" in clause for clause in asking) > 1:
            return []
    others = any(tools and tool not in tools for tools in tools_of)
    found = [arguments_for(tool, clause, read_signals(clause), ()) for clause in asking]
    if sum(1 for arguments in found if arguments) >= 2 or (others and any(found)):
        return found
    return []


def arguments_for_slot(
    arguments_for: ArgumentSource, tool: str, question: str, signals: Signals, limit: int
) -> list[dict[str, Any]]:
    """The calls one planned tool makes, all at once: one, one per clause that asks for it (maths, SQL), or one
    per place (weather); none when no argument can be found."""
    found: list[dict[str, Any] | None] = []
    if tool == "weather":
        planned: list[Evidence] = []
        while len(planned) < limit and (arguments := arguments_for(tool, question, signals, planned)):
            found.append(arguments)
            planned.append(Evidence(tool, arguments, True, ""))  # "already asked": the guard moves to the next place
    elif tool in ("math_calc", "sql_query"):
        found = _clause_arguments(arguments_for, tool, question)
    if not any(found):
        found = [arguments_for(tool, question, signals, ())]
    unique = {json.dumps(arguments, sort_keys=True): arguments for arguments in found if arguments}
    return list(unique.values())[:limit]


def retry_arguments(arguments_for: ArgumentSource, tool: str, failed: Mapping[str, Any], question: str,
                    signals: Signals, previous: Sequence[Evidence]) -> dict[str, Any] | None:
    """Other arguments for a failed call, knowing its failure; None when the guards have nothing else."""
    arguments = arguments_for(tool, question, signals, previous)
    return arguments if arguments and arguments != dict(failed) else None


def has_other_arguments(arguments_for: ArgumentSource, tool: str, failed: Mapping[str, Any], question: str,
                        signals: Signals, previous: Sequence[Evidence]) -> bool:
    return retry_arguments(arguments_for, tool, failed, question, signals, previous) is not None


def describe_failures(check: AnswerCheck, retry: Sequence[str]) -> list[str]:
    problems = [f"the answer lacks {value!r}" for value in check.missing]
    problems += [f"the answer has numbers no result holds ({', '.join(check.unsupported_numbers)})"] if (
        check.unsupported_numbers) else []
    problems += [f"citation {label} removed: its quote is not in the cited passage" for label in
                 check.removed_citations]
    problems += [f"{slot.split('#', 1)[0]} failed and has other arguments to try" for slot in retry]
    if not check.answer.strip():
        problems.append("the answer is empty")
    return problems


def _render_result(item: Evidence, limit: int) -> str:
    if item.tool == "rag_retrieval" and item.ok:
        chunks = chunks_of(item.data)
        if chunks:
            return "\n".join(f"{chunk.label} {clip(' '.join(chunk.text.split()), limit)}" for chunk in chunks[:3])
    status = "" if item.ok else " (failed)"
    return f"{item.tool}{status}: {clip(item.text, limit)}"


async def draft_answer(llm: LLMBackend, turn: AgentTurn, question: str, evidence: Sequence[Evidence],
                       observation_chars: int) -> tuple[str, Usage]:
    """The model's draft: from the results when there are any, else a plain answer to the conversation."""
    limit = min(observation_chars, RESULT_CHARS_IN_PROMPT)
    if evidence:
        results = "\n".join(_render_result(item, limit) for item in evidence)
        messages = [ChatMessage("system", DRAFT_SYSTEM),
                    ChatMessage("user", f"Question: {clip(question, QUESTION_CHARS_IN_PROMPT)}\n\n"
                                        f"Tool results:\n{results}\n\nAnswer:")]
    else:  # nothing to check against: a plain answer, whose backend errors are the request's, as in chat
        return await generate(llm, turn, list(turn.messages), _options(turn, DRAFT_MAX_TOKENS))
    try:
        return await generate(llm, turn, messages, _options(turn, DRAFT_MAX_TOKENS))
    except LLMError as error:
        logger.warning("Draft skipped, the answer is composed from the results: %s", error)
        return "", Usage(0, 0)
