"""While only the router's classifier can tell, plain chat already starts; another mode closes that guess.

The classifier starts once the guess is with the model, or shortly after if the model cannot take it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from backend.agents import chat_service
from backend.agents.chat_agent import ChatAgent
from backend.agents.chat_service import ChatService, ChatTurn, started_events
from backend.agents.port import AgentEvent, AgentMode, AgentTurn, AnswerText, Finished
from backend.agents.router import Router
from backend.config import Settings, load_settings
from backend.llm.port import ChatMessage, GenerationOptions, StreamDelta, Usage
from backend.metrics import Metrics
from tests.fakes.scripted_llm import ScriptedLLM

UNROUTED = "Tell me something about lighthouses"
"""No tool signal: only the classifier can route it."""


class HeldClassifier:
    """Answers once released, with the mode a test chose: a stand-in for the MiniLM embedding's time."""

    ready = True

    def __init__(self, mode: AgentMode) -> None:
        self.mode = mode
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def probabilities(self, text: str) -> dict[AgentMode, float]:
        self.asked.set()
        await self.release.wait()
        return {mode: 0.98 if mode == self.mode else 0.01 for mode in ("chat", "react", "plan_execute")}


class ToolAgent:
    """A server agent that answers without the model."""

    def __init__(self, mode: AgentMode) -> None:
        self.mode = mode
        self.turns: list[AgentTurn] = []

    async def run(self, turn: AgentTurn) -> AsyncGenerator[AgentEvent, None]:
        self.turns.append(turn)
        yield AnswerText(f"{self.mode} answer")
        yield Finished(answer=f"{self.mode} answer", finish_reason="stop", usage=Usage(0, 0), iterations=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


def service(llm: ScriptedLLM, settings: Settings, classifier: HeldClassifier, metrics: Metrics) -> ChatService:
    router = Router(None, settings, classifier=classifier)  # type: ignore[arg-type]
    agents = {"chat": ChatAgent(llm, settings), "react": ToolAgent("react"), "plan_execute": ToolAgent("plan_execute")}
    return ChatService(llm, metrics, router, agents)  # type: ignore[arg-type]


def chat_turn(question: str) -> ChatTurn:
    return ChatTurn("scripted-model", [ChatMessage("user", question)], GenerationOptions(max_tokens=20))


async def answer_of(chat: ChatService, question: str) -> tuple[str, str]:
    started = await chat.start(chat_turn(question))
    parts = [event.text async for event in started_events(started.first, started.rest) if isinstance(event, AnswerText)]
    return started.decision.mode, "".join(parts)


def guesses(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("router_chat_guesses_total", {"outcome": outcome}) or 0.0


async def test_chat_generates_while_the_classifier_decides_and_that_answer_is_the_one_sent(settings: Settings) -> None:
    llm = ScriptedLLM(["Lighthouses guide ships."])
    classifier, metrics = HeldClassifier("chat"), Metrics()
    chat = service(llm, settings, classifier, metrics)
    answering = asyncio.create_task(answer_of(chat, UNROUTED))
    await classifier.asked.wait()
    for _ in range(10):
        await asyncio.sleep(0)
    assert llm.started == 1  # the model is at work before the decision
    classifier.release.set()
    assert await answering == ("chat", "Lighthouses guide ships.")
    assert (len(llm.calls), guesses(metrics, "used"), guesses(metrics, "discarded")) == (1, 1.0, 0.0)


async def test_another_mode_closes_the_guess_before_anything_of_it_is_sent(settings: Settings) -> None:
    llm = ScriptedLLM(["a guessed chat answer that nobody should see"], chunk_delay_s=0.05)
    classifier, metrics = HeldClassifier("react"), Metrics()
    chat = service(llm, settings, classifier, metrics)
    answering = asyncio.create_task(answer_of(chat, UNROUTED))
    await classifier.asked.wait()
    await asyncio.sleep(0.01)
    classifier.release.set()
    assert await answering == ("react", "react answer")
    assert (llm.started, llm.closed_early) == (1, 1)  # its generation was stopped, not run to the end
    assert (guesses(metrics, "used"), guesses(metrics, "discarded")) == (0.0, 1.0)


async def test_a_guess_that_failed_is_dropped_when_another_mode_answers(settings: Settings) -> None:
    from backend.llm.port import BackendBusy

    llm = ScriptedLLM([BackendBusy("queue full", 5)])
    classifier = HeldClassifier("plan_execute")
    chat = service(llm, settings, classifier, Metrics())
    answering = asyncio.create_task(answer_of(chat, UNROUTED))
    await classifier.asked.wait()
    await asyncio.sleep(0.01)
    classifier.release.set()
    assert await answering == ("plan_execute", "plan_execute answer")


async def test_a_guess_that_failed_is_the_error_when_the_answer_is_chat(settings: Settings) -> None:
    from backend.llm.port import BackendBusy

    llm = ScriptedLLM([BackendBusy("queue full", 5)])
    classifier = HeldClassifier("chat")
    classifier.release.set()
    with pytest.raises(BackendBusy):
        await service(llm, settings, classifier, Metrics()).start(chat_turn(UNROUTED))


async def test_no_guess_when_the_rules_decide_or_a_mode_is_asked_for(settings: Settings) -> None:
    llm = ScriptedLLM(["Hello!"])
    classifier, metrics = HeldClassifier("chat"), Metrics()
    chat = service(llm, settings, classifier, metrics)
    assert (await answer_of(chat, "Integrate x^2 from 0 to 3"))[0] == "react"
    assert (await chat.complete(ChatTurn("scripted-model", [ChatMessage("user", UNROUTED)],
                                         GenerationOptions(), mode="chat"))).content == "Hello!"
    assert not classifier.asked.is_set() and guesses(metrics, "used") + guesses(metrics, "discarded") == 0


async def test_a_request_cancelled_while_routing_stops_its_guess(settings: Settings) -> None:
    llm = ScriptedLLM(["a guessed chat answer that nobody should see"], chunk_delay_s=0.05)
    classifier = HeldClassifier("chat")
    answering = asyncio.create_task(answer_of(service(llm, settings, classifier, Metrics()), UNROUTED))
    await classifier.asked.wait()
    await asyncio.sleep(0.01)
    answering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answering
    assert (llm.started, llm.closed_early) == (1, 1)


class HeldHandOff(ScriptedLLM):
    """A backend that takes the request only once released: a stand-in for a busy or slow hand-off."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__(answers)
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def stream_chat(  # type: ignore[override]
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncGenerator[StreamDelta, None]:
        self.asked.set()
        await self.release.wait()
        async for delta in super().stream_chat(model, messages, options):
            yield delta


async def test_the_classifier_starts_once_the_guess_is_with_the_model(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_service, "HANDOFF_WAIT_S", 30.0)  # no timing in this test: only the order
    llm = HeldHandOff(["Lighthouses guide ships."])
    classifier = HeldClassifier("chat")
    classifier.release.set()
    answering = asyncio.create_task(answer_of(service(llm, settings, classifier, Metrics()), UNROUTED))
    await llm.asked.wait()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not classifier.asked.is_set()  # the embedding would slow the hand-off down
    llm.release.set()
    assert await asyncio.wait_for(answering, 10) == ("chat", "Lighthouses guide ships.")
    assert classifier.asked.is_set()


async def test_a_hand_off_that_does_not_come_holds_the_classifier_up_only_briefly(settings: Settings) -> None:
    llm = HeldHandOff(["a guessed chat answer that nobody should see"])  # never released: every slot is busy
    classifier = HeldClassifier("react")
    classifier.release.set()
    started = time.monotonic()
    answer = await asyncio.wait_for(answer_of(service(llm, settings, classifier, Metrics()), UNROUTED), 10)
    assert answer == ("react", "react answer")
    assert chat_service.HANDOFF_WAIT_S <= time.monotonic() - started < 5
    assert llm.started == 0  # the guess never reached the model, and was closed
