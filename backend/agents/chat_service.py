"""Answers a chat turn: decides the mode (the router for `auto`), then runs the one agent for it.

When only the router's classifier can tell (a MiniLM embedding: 10-30 ms on a small CPU, half the
embedded model's first token), plain chat starts at once on the guess that the answer is chat, as it
is for most questions: the model reads the prompt while the classifier weighs it. The embedding waits
until the guess has been handed to the model (at most `HANDOFF_WAIT_S`): run beside the hand-off, it
held the GIL and a core that the request needed on its way, and the first token came 7 ms later.
Another mode closes the guess, which ends its generation before anything of it was sent.

The tool registry and the agents are injected by the composition root. A request that brings its own
`tools` is plain function calling: the client's agent framework keeps control, no server agent runs.
Every agent answers as a stream of typed events; `complete` joins it for non-streamed requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from backend.agents.port import (
    Agent,
    AgentEvent,
    AgentMode,
    AgentTurn,
    AnswerText,
    Finished,
    RequestedMode,
    RouteDecision,
    StepStarted,
    ToolCalled,
    ToolFinished,
)
from backend.agents.router import Router
from backend.agents.tool_runs import call_text, observation_summary
from backend.auth.models import User
from backend.llm.port import ChatMessage, GenerationOptions, LLMBackend
from backend.metrics import Metrics

CLIENT_TOOLS = RouteDecision("chat", "the request brings its own tools: plain function calling", 1.0)
CLIENT_FORMAT = RouteDecision("chat", "the request asks for its own response format", 1.0)
GUESSED_CHAT = RouteDecision("chat", "started while the classifier decides", 0.0)
HANDOFF_WAIT_S = 0.05
"""How long the classifier waits for the guessed chat to reach the model (longer when every slot is busy)."""


@dataclass(frozen=True)
class ChatTurn:
    """One request to answer: the conversation so far and how to answer it."""

    model: str
    messages: list[ChatMessage]
    options: GenerationOptions
    mode: RequestedMode = "auto"
    user: User | None = None
    """The signed-in user: tools run as them, and the backend's per-user share is counted against them."""


@dataclass
class AgentOutcome:
    """A whole agent answer: the joined event stream."""

    decision: RouteDecision
    finished: Finished
    reasoning: str = ""
    content_parts: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.content_parts)


def reasoning_line(event: AgentEvent) -> str | None:
    """The live text of a step, streamed as `delta.reasoning_content`: `math_calc(x^2) → 9`."""
    if isinstance(event, StepStarted):
        return f"{event.text}\n" if event.text else None
    if isinstance(event, ToolCalled):
        return call_text(event.tool, event.arguments)
    if isinstance(event, ToolFinished):
        summary = observation_summary(event.text)
        return f" → {summary}\n" if event.ok else f" → failed: {summary}\n"
    return None


@dataclass
class StartedTurn:
    """A turn whose mode is decided and whose agent has produced its first event (None: it produced none)."""

    decision: RouteDecision
    first: AgentEvent | None
    rest: AsyncGenerator[AgentEvent, None]


class ChatService:
    def __init__(
        self, llm: LLMBackend, metrics: Metrics, router: Router, agents: Mapping[AgentMode, Agent]
    ) -> None:
        missing = {"chat", "react", "plan_execute"} - set(agents)
        if missing:
            raise ValueError(f"no agent for mode(s) {', '.join(sorted(missing))}")
        self._llm = llm
        self._metrics = metrics
        self._router = router
        self._agents = agents

    async def start(self, turn: ChatTurn) -> StartedTurn:
        """Decides the mode and waits for the agent's first event; an error before it is raised here."""
        guess: tuple[asyncio.Task[AgentEvent], AsyncGenerator[AgentEvent, None]] | None = None

        async def guess_chat() -> None:
            """Starts plain chat; returns once the model has it, or its first step ended, or at HANDOFF_WAIT_S."""
            nonlocal guess
            handed_over = asyncio.Event()
            events = self.run(replace(turn, options=replace(turn.options, handed_over=handed_over.set)), GUESSED_CHAT)
            guess = (asyncio.ensure_future(anext(events)), events)
            waiting = asyncio.ensure_future(handed_over.wait())
            try:
                await asyncio.wait({guess[0], waiting}, timeout=HANDOFF_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()

        try:
            decision = await self._decide(turn, guess_chat)
        except BaseException:
            if guess is not None:
                await _abandon(*guess)
            raise
        if guess is not None:
            used = decision.mode == "chat"
            self._metrics.chat_guesses.labels("used" if used else "discarded").inc()
            if used:
                return await _started(decision, *guess)
            await _abandon(*guess)
        events = self.run(turn, decision)
        return await _started(decision, anext(events), events)

    async def _decide(self, turn: ChatTurn, meanwhile: Callable[[], Awaitable[None]]) -> RouteDecision:
        if turn.options.tools:
            return CLIENT_TOOLS
        if (turn.options.json_schema is not None or turn.options.json_object) and turn.mode == "auto":
            return CLIENT_FORMAT
        return await self._router.decide(turn.messages, turn.mode, turn.user, meanwhile)

    async def run(self, turn: ChatTurn, decision: RouteDecision) -> AsyncGenerator[AgentEvent, None]:
        """The agent's events; closing this iterator stops the agent (and its generation, and its tools)."""
        options = turn.options if turn.user is None else replace(turn.options, user=turn.user.username)
        agent_turn = AgentTurn(turn.model, turn.messages, options, turn.user or User("anonymous"), decision)
        agent = self._agents[decision.mode]
        async with aclosing(agent.run(agent_turn)) as events:
            async for event in events:
                if isinstance(event, Finished):
                    self._metrics.tokens_generated.labels(self._llm.name).inc(event.usage.completion_tokens)
                    self._metrics.prompt_tokens.labels(self._llm.name).inc(event.usage.prompt_tokens)
                yield event

    async def complete(self, turn: ChatTurn) -> AgentOutcome:
        started = await self.start(turn)
        reasoning: list[str] = []
        parts: list[str] = []
        async with aclosing(started.rest) as rest:
            async for event in started_events(started.first, rest):
                if isinstance(event, AnswerText):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    return AgentOutcome(started.decision, event, "".join(reasoning), parts)
                elif (line := reasoning_line(event)) is not None:
                    reasoning.append(line)
        raise RuntimeError(f"the {started.decision.mode} agent ended without a Finished event")


async def started_events(
    first: AgentEvent | None, rest: AsyncIterator[AgentEvent]
) -> AsyncGenerator[AgentEvent, None]:
    """A started turn's events from the first."""
    if first is None:
        return
    yield first
    async for event in rest:
        yield event


async def _started(
    decision: RouteDecision, first: Awaitable[AgentEvent], events: AsyncGenerator[AgentEvent, None]
) -> StartedTurn:
    try:
        return StartedTurn(decision, await first, events)
    except StopAsyncIteration:
        return StartedTurn(decision, None, events)
    except BaseException:
        await events.aclose()
        raise


async def _abandon(first: asyncio.Task[AgentEvent], events: AsyncGenerator[AgentEvent, None]) -> None:
    """Stops a guessed chat: its pending first step is cancelled (ending its generation), then it is closed."""
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)  # its error, if any, is the guess's and is dropped
    await events.aclose()
