"""The request router (`mode: auto`): deterministic signals, then an embedding classifier, then plain chat.

Tier one reads the question (`signals`): which tools it needs and whether its steps depend on each other.
What the rules do not settle goes to tier two, a logistic regression over MiniLM embeddings of the
labelled examples kept beside this module (`router_examples.jsonl`), its probabilities calibrated by
cross-validation. Below `ROUTER_CONFIDENCE_THRESHOLD` the answer is plain chat, unless a capable backend
(Ollama or an upstream, never the 135M embedded model) breaks the tie with one constrained choice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, get_args

import numpy as np

from backend.agents.port import AgentMode, RequestedMode, RouteDecision
from backend.agents.signals import Signals, read_signals
from backend.auth.models import User
from backend.config import Settings
from backend.llm.port import ChatMessage, GenerationOptions, LLMBackend, LLMError, join_stream
from backend.rag.ports import Embedder

logger = logging.getLogger(__name__)

EXAMPLES_FILE = Path(__file__).with_name("router_examples.jsonl")
MODES: tuple[AgentMode, ...] = get_args(AgentMode)
MAX_EMBED_CHARS = 1000
"""Characters of the question the classifier embeds (MiniLM reads 256 tokens; the words come first)."""
TIEBREAK_MAX_TOKENS = 16
TIEBREAK_TIMEOUT_S = 10.0
CAPABLE_BACKENDS = frozenset({"ollama", "openai"})


class UserDocuments(Protocol):
    """The names of a user's uploaded files (so "what does budget.xlsx say" routes to their documents)."""

    async def filenames(self, username: str) -> list[str]: ...


@dataclass(frozen=True)
class Example:
    text: str
    mode: AgentMode


def load_examples(path: Path = EXAMPLES_FILE) -> list[Example]:
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["mode"] not in MODES:
                raise ValueError(f"{path.name}: unknown mode {row['mode']!r}")
            examples.append(Example(row["text"], row["mode"]))
    return examples


class EmbeddingClassifier:
    """Calibrated logistic regression over normalised sentence embeddings."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._model: CalibratedLinear | None = None

    async def fit(self, examples: Sequence[Example]) -> None:
        vectors = await self._embedder.embed([example.text[:MAX_EMBED_CHARS] for example in examples])
        labels = np.array([MODES.index(example.mode) for example in examples])
        self._model = await asyncio.to_thread(CalibratedLinear.fit, np.asarray(vectors), labels)

    @property
    def ready(self) -> bool:
        return self._model is not None

    async def probabilities(self, text: str) -> dict[AgentMode, float]:
        assert self._model is not None, "fit first"
        vector = await self._embedder.embed([text[:MAX_EMBED_CHARS]])
        row = self._model.probabilities(np.asarray(vector))[0]
        return {MODES[int(label)]: float(p) for label, p in zip(self._model.classes, row, strict=True)}


@dataclass(frozen=True)
class _Fold:
    coef: Any
    """(classes, dimensions): the fold's logistic regression."""
    intercept: Any
    slope: Any
    """Per class: the sigmoid calibration's `a` and `b`; a class's score is expit(-(a * decision + b))."""
    offset: Any


@dataclass(frozen=True)
class CalibratedLinear:
    """sklearn's `CalibratedClassifierCV(LogisticRegression, method="sigmoid")`, as the arithmetic it does.

    Its `predict_proba` spends 3.6 ms per question (on two cores) validating input and looping in
    Python, a fifth of a chat's time to first token on the embedded model; the same sums in numpy take
    0.04 ms. `fit` checks them against sklearn's own on the training vectors.
    """

    classes: Any
    folds: tuple[_Fold, ...]

    @classmethod
    def fit(cls, vectors: Any, labels: Any) -> CalibratedLinear:
        from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped]

        model = CalibratedClassifierCV(cls.estimator(), cv=3, method="sigmoid")
        model.fit(vectors, labels)
        assert len(model.classes_) > 2, "the two-class form is computed differently"
        compiled = cls(model.classes_, tuple(
            _Fold(
                fold.estimator.coef_, fold.estimator.intercept_,
                np.array([calibrator.a_ for calibrator in fold.calibrators]),
                np.array([calibrator.b_ for calibrator in fold.calibrators]),
            )
            for fold in model.calibrated_classifiers_
        ))
        if not np.allclose(compiled.probabilities(vectors), model.predict_proba(vectors), atol=1e-9):
            raise RuntimeError("the router's compiled classifier disagrees with scikit-learn's")
        return compiled

    @staticmethod
    def estimator() -> Any:
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

        return LogisticRegression(C=8.0, max_iter=2000)

    def probabilities(self, vectors: Any) -> Any:
        """(rows, classes), each row summing to 1: the folds' normalised calibrated scores, averaged."""
        from scipy.special import expit  # type: ignore[import-untyped]

        total = np.zeros((len(vectors), len(self.classes)))
        for fold in self.folds:
            scores = expit(-(fold.slope * (vectors @ fold.coef.T + fold.intercept) + fold.offset))
            sums = scores.sum(axis=1, keepdims=True)
            total += np.divide(scores, sums, out=np.full_like(scores, 1 / len(self.classes)), where=sums != 0)
        return np.minimum(total / len(self.folds), 1.0)


def rule_decision(signals: Signals) -> tuple[AgentMode, float, str] | None:
    """What the signals alone say: (mode, confidence, reason), or None when they say nothing."""
    tools = signals.tools
    if not tools:
        return None
    named = ", ".join(tools)
    if len(tools) == 1:
        if signals.sequential:
            return "react", 0.95, f"one tool ({named}: {signals.reasons[0]}) with sequential steps"
        if tools[0] == "weather" and len(signals.places) >= 2:
            return "plan_execute", 0.9, f"one tool ({named}) for each of {len(signals.places)} places"
        if signals.asks >= 2:
            return "plan_execute", 0.9, f"one tool ({named}) for each of {signals.asks} independent asks"
        if signals.parallel_strong:
            return "plan_execute", 0.6, f"one tool ({named}) with a comparison, possibly once per thing named"
        if signals.parallel:
            return "react", 0.7, f"one tool ({named}: {signals.reasons[0]}), possibly several calls"
        return "react", 0.92, f"one tool ({named}: {signals.reasons[0]})"
    if signals.sequential and not signals.parallel:
        return "react", 0.9, f"tools {named} in dependent steps"
    if signals.parallel and not signals.sequential:
        return "plan_execute", 0.9, f"independent tools {named}"
    if signals.parallel:
        return "plan_execute", 0.6, f"tools {named} with both sequential and parallel cues"
    return "plan_execute", 0.75, f"several tools ({named})"


class Router:
    """Decides which agent answers a turn; `warm_up` must run once before `decide` uses the classifier."""

    def __init__(
        self, embedder: Embedder | None, settings: Settings, llm: LLMBackend | None = None,
        documents: UserDocuments | None = None, examples: Sequence[Example] | None = None,
        classifier: EmbeddingClassifier | None = None,
    ) -> None:
        """`classifier`: one already fitted (routers with other settings share it)."""
        self._classifier = classifier or (EmbeddingClassifier(embedder) if embedder is not None else None)
        self._threshold = settings.router_confidence_threshold
        self._tiebreak_llm = llm if llm is not None and settings.router_llm_tiebreak and llm.name in CAPABLE_BACKENDS \
            else None
        self._documents = documents
        self._examples = list(examples) if examples is not None else None

    @property
    def classifier(self) -> EmbeddingClassifier | None:
        return self._classifier

    async def warm_up(self) -> None:
        if self._classifier is not None and not self._classifier.ready:
            await self._classifier.fit(self._examples if self._examples is not None else load_examples())

    async def decide(
        self, messages: Sequence[ChatMessage], requested: RequestedMode, user: User | None = None,
        meanwhile: Callable[[], Awaitable[None]] | None = None,
    ) -> RouteDecision:
        """`meanwhile` is awaited when only the classifier can tell, and plain chat is still a possible answer."""
        question = last_user_text(messages)
        names = await self._document_names(user)
        signals = read_signals(question, names)
        if requested != "auto":
            decision = RouteDecision(requested, f"mode '{requested}' requested", 1.0, signals.tools)
        else:
            decision = await self._auto(question, signals, meanwhile)
        logger.info("Route: %s (%.2f) because %s", decision.mode, decision.confidence, decision.reason)
        return decision

    async def _auto(
        self, question: str, signals: Signals, meanwhile: Callable[[], Awaitable[None]] | None
    ) -> RouteDecision:
        rule = rule_decision(signals)
        if rule is not None and rule[1] >= 0.9:
            return RouteDecision(rule[0], rule[2], rule[1], signals.tools)
        if not question.strip():
            return RouteDecision("chat", "no question to route", 1.0)
        if meanwhile is not None and rule is None and self._classifier is not None:
            await meanwhile()  # only here can the answer still be plain chat
        probabilities = await self._probabilities(question)
        if rule is not None:
            # Weak rules and the classifier vote together, the rule's mode weighted by its confidence.
            blended = {mode: 0.5 * p for mode, p in probabilities.items()}
            blended[rule[0]] = blended.get(rule[0], 0.0) + 0.5 * rule[1]
            for mode in MODES:
                if mode != rule[0]:
                    blended[mode] = blended.get(mode, 0.0) + 0.5 * (1 - rule[1]) / (len(MODES) - 1)
            best = max(blended, key=lambda mode: blended[mode])
            if best == "chat":  # the rules found tools: the classifier alone cannot make it chat
                best = rule[0]
            return RouteDecision(best, f"{rule[2]}; classifier agrees at {probabilities.get(best, 0):.2f}"
                                 if best == rule[0] else f"classifier over weak rule ({rule[2]})",
                                 round(blended[best], 3), signals.tools)
        if not probabilities:
            return RouteDecision("chat", "no tool signal", 0.9)
        best = max(probabilities, key=lambda mode: probabilities[mode])
        confidence = probabilities[best]
        if confidence >= self._threshold:
            return RouteDecision(best, f"no tool signal; examples like it are {best}", round(confidence, 3))
        if self._tiebreak_llm is not None:
            chosen = await self._tiebreak(question)
            if chosen is not None:
                return RouteDecision(chosen, f"classifier unsure ({best} {confidence:.2f}); the model chose {chosen}",
                                     round(confidence, 3))
        return RouteDecision("chat", f"no tool signal; classifier unsure ({best} {confidence:.2f})",
                             round(1 - confidence if best != "chat" else confidence, 3))

    async def _probabilities(self, question: str) -> dict[AgentMode, float]:
        if self._classifier is None:
            return {}
        if not self._classifier.ready:
            await self.warm_up()
        return await self._classifier.probabilities(question)

    async def _document_names(self, user: User | None) -> list[str]:
        if self._documents is None or user is None:
            return []
        try:
            return (await self._documents.filenames(user.username))[:1000]
        except Exception:  # routing never fails because the document list cannot be read
            logger.exception("Could not list the documents of %s for routing", user.username)
            return []

    async def _tiebreak(self, question: str) -> AgentMode | None:
        assert self._tiebreak_llm is not None
        llm = self._tiebreak_llm
        prompt = (
            "Classify the user's request. chat: answer from general knowledge, no tools. react: needs one tool, "
            "or several tools one after another. plan_execute: needs several independent tools. "
            'Answer {"mode": "chat" | "react" | "plan_execute"}.'
        )
        options = GenerationOptions(
            max_tokens=TIEBREAK_MAX_TOKENS, temperature=0.0,
            json_schema={"type": "object", "properties": {"mode": {"enum": list(MODES)}}, "required": ["mode"]},
        )
        messages = [ChatMessage("system", prompt), ChatMessage("user", question[:MAX_EMBED_CHARS])]
        try:
            async with asyncio.timeout(TIEBREAK_TIMEOUT_S):
                result = await join_stream(llm.stream_chat(llm.default_model, messages, options))
            mode = json.loads(result.content).get("mode")
        except (LLMError, TimeoutError, ValueError, AttributeError):
            logger.info("The router's tie-break by %s gave no usable answer", llm.name)
            return None
        return mode if mode in MODES else None


def last_user_text(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content or ""
    return ""
