"""Router accuracy on the labelled queries of `router_queries.jsonl` (none of them a training example)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from backend.agents.router import Router
from backend.config import Settings
from backend.llm.port import ChatMessage

ROUTER_QUERIES = Path(__file__).with_name("router_queries.jsonl")


@dataclass
class RouterEvaluation:
    total: int = 0
    correct: int = 0
    by_mode: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Expected mode -> (correct, total)."""
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    """(query, expected, decided: reason)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def load_router_queries(path: Path = ROUTER_QUERIES) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["query"], row["mode"]) for row in rows]


async def evaluate_router(router: Router | None = None, path: Path = ROUTER_QUERIES) -> RouterEvaluation:
    """Route every labelled query with `mode: auto`; `None` builds a router on the real MiniLM embedder."""
    if router is None:
        from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder

        router = Router(await SentenceTransformerEmbedder.load(), Settings())
        await router.warm_up()
    evaluation = RouterEvaluation()
    for query, expected in load_router_queries(path):
        decision = await router.decide([ChatMessage("user", query)], "auto")
        right, seen = evaluation.by_mode.get(expected, (0, 0))
        ok = decision.mode == expected
        evaluation.by_mode[expected] = (right + ok, seen + 1)
        evaluation.total += 1
        evaluation.correct += ok
        if not ok:
            evaluation.misses.append((query, expected, f"{decision.mode}: {decision.reason}"))
    return evaluation
