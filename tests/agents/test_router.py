"""The router: signals first, the MiniLM classifier for the rest, plain chat below the threshold."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from backend.agents.router import CalibratedLinear, Router, load_examples
from backend.agents.signals import read_signals
from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.llm.port import ChatMessage
from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder
from tests.eval.router_eval import evaluate_router, load_router_queries
from tests.fakes.scripted_llm import ScriptedLLM


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(data_dir=tmp_path_factory.mktemp("router"))


@pytest.fixture(scope="module")
def router(settings: Settings) -> Router:
    router = Router(asyncio.run(SentenceTransformerEmbedder.load()), settings)
    asyncio.run(router.warm_up())  # the fitted classifier holds no event-loop state
    return router


UNSURE = "Which is better for a beginner, violin or piano?"


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage("system", "be nice"), ChatMessage("user", text)]


async def test_router_accuracy_on_the_labelled_queries_is_at_least_95_percent(router: Router) -> None:
    queries = load_router_queries()
    examples = {example.text.lower() for example in load_examples()}
    assert len(queries) >= 80 and not [query for query, _ in queries if query.lower() in examples]
    assert {mode for _, mode in queries} == {"chat", "react", "plan_execute"}
    evaluation = await evaluate_router(router)
    assert evaluation.accuracy >= 0.95, evaluation.misses
    assert all(total >= 20 for _, total in evaluation.by_mode.values())


async def test_a_requested_mode_is_forced_with_full_confidence(router: Router) -> None:
    decision = await router.decide(ask("Hello there"), "react")
    assert (decision.mode, decision.confidence, decision.reason) == ("react", 1.0, "mode 'react' requested")
    decision = await router.decide(ask("What is 2+2?"), "chat")
    assert (decision.mode, decision.tools) == ("chat", ("math_calc",))


async def test_signals_decide_with_their_reason_and_tools(router: Router) -> None:
    decision = await router.decide(ask("Integrate x^2 from 0 to 3"), "auto")
    assert (decision.mode, decision.tools) == ("react", ("math_calc",))
    assert decision.reason == "one tool (math_calc: a maths expression or maths wording)"
    decision = await router.decide(ask("What's the weather in Oslo and also 2^10?"), "auto")
    assert (decision.mode, set(decision.tools)) == ("plan_execute", {"weather", "math_calc"})


async def test_a_users_file_name_points_at_their_documents(settings: Settings) -> None:
    class Documents:
        async def filenames(self, username: str) -> list[str]:
            return ["budget-2026.xlsx"] if username == "alice" else []

    router = Router(None, settings, documents=Documents())
    decision = await router.decide(ask("What is the total in budget-2026.xlsx?"), "auto", User("alice"))
    assert decision.tools == ("rag_retrieval",) and decision.mode == "react"
    other = await router.decide(ask("What is the total in budget-2026.xlsx?"), "auto", User("bob"))
    assert other.mode == "chat"


async def test_below_the_threshold_it_is_plain_chat(settings: Settings, router: Router) -> None:
    strict = Router(None, load_settings(data_dir=settings.data_dir, router_confidence_threshold=1.0),
                    classifier=router.classifier)
    decision = await strict.decide(ask(UNSURE), "auto")
    assert decision.mode == "chat" and "classifier unsure" in decision.reason


async def test_a_capable_backend_breaks_ties_and_the_embedded_model_never_does(
    settings: Settings, router: Router
) -> None:
    tight = load_settings(data_dir=settings.data_dir, router_confidence_threshold=1.0)
    ollama = ScriptedLLM([json.dumps({"mode": "react"})])
    ollama.name = "ollama"
    decision = await Router(None, tight, llm=ollama, classifier=router.classifier).decide(ask(UNSURE), "auto")
    assert decision.mode == "react" and "the model chose react" in decision.reason
    assert ollama.calls[0].options.json_schema is not None and ollama.calls[0].options.max_tokens == 16
    embedded = ScriptedLLM([])
    embedded.name = "llamacpp"
    decision = await Router(None, tight, llm=embedded, classifier=router.classifier).decide(ask(UNSURE), "auto")
    assert decision.mode == "chat" and embedded.calls == []


async def test_a_broken_tiebreak_answer_falls_back_to_chat(settings: Settings, router: Router) -> None:
    tight = load_settings(data_dir=settings.data_dir, router_confidence_threshold=1.0)
    ollama = ScriptedLLM([json.dumps({"mode": "chat"})[:-3]])  # would be cut JSON
    ollama.name = "ollama"
    decision = await Router(None, tight, llm=ollama, classifier=router.classifier).decide(ask(UNSURE), "auto")
    assert decision.mode == "chat"


async def test_a_huge_question_is_routed_in_bounded_time(router: Router) -> None:
    question = "Compare the weather in Paris and London. " + ("lorem ipsum (((( [[[[ {{{{ " * 100_000)
    started = time.monotonic()
    decision = await router.decide(ask(question), "auto")
    assert time.monotonic() - started < 3.0
    assert decision.mode == "plan_execute"


def test_the_compiled_classifier_gives_scikit_learns_probabilities_on_unseen_vectors() -> None:
    from sklearn.calibration import CalibratedClassifierCV

    generator = np.random.default_rng(7)
    centres = generator.normal(size=(3, 16))
    labels = np.repeat([0, 1, 2], 30)
    vectors = centres[labels] + generator.normal(scale=0.8, size=(90, 16))
    compiled = CalibratedLinear.fit(vectors, labels)
    reference = CalibratedClassifierCV(compiled.estimator(), cv=3, method="sigmoid").fit(vectors, labels)
    unseen = generator.normal(scale=2.0, size=(200, 16))
    assert np.allclose(compiled.probabilities(unseen), reference.predict_proba(unseen), atol=1e-9)
    assert np.allclose(compiled.probabilities(unseen).sum(axis=1), 1.0)


def test_signals_find_pasted_data_sql_places_and_veto_creative_writing() -> None:
    signals = read_signals('Mean of this? [{"a": 1}, {"a": 5}]')
    assert (signals.tools, signals.pasted_data) == (("data_analysis",), '[{"a": 1}, {"a": 5}]')
    signals = read_signals("Run SELECT name FROM products LIMIT 3; please")
    assert signals.sql_statement == "SELECT name FROM products LIMIT 3"
    assert read_signals("Show the weather for Amsterdam, Brussels and Luxembourg").places == (
        "Amsterdam", "Brussels", "Luxembourg")
    assert read_signals("Weather in Portland, Oregon?").places == ("Portland, Oregon",)
    assert read_signals("Write a poem about the rain in Spain").tools == ()
    assert read_signals("How do I solve a conflict with my boss?").tools == ()
    assert read_signals("Give me the 5-day forecast for Nairobi").tools == ("weather",)
    assert read_signals("What is the most expensive product?").tools == ("sql_query",)
    assert read_signals("What is 12 factorial and the integral of x^2 from 0 to 1?").asks == 2
    assert read_signals("Solve the system x + y = 10, x - y = 2.").asks == 1
    assert read_signals("Run this and show me what it prints: print(2)").asks == 1


def test_the_example_set_is_in_the_repo_and_labelled(tmp_path: Path) -> None:
    examples = load_examples()
    assert len(examples) >= 140
    assert {example.mode for example in examples} == {"chat", "react", "plan_execute"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "mode": "agent"}) + "\n")
    with pytest.raises(ValueError, match="unknown mode 'agent'"):
        load_examples(bad)
