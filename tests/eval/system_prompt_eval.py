"""Measures candidate default system prompts on everyday questions against the embedded model.

`python -m tests.eval.system_prompt_eval` prints, per candidate, how many answers hold the expected word
(in English: an answer in French does not hold "London") and the mean answer length. The winner is
`MEASURED_PROMPTS` in `backend/agents/system_prompts.py`; the README gives the figures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from backend.config import Settings
from backend.llm.port import ChatMessage, GenerationOptions, join_stream

QUESTIONS = Path(__file__).with_name("everyday_questions.jsonl")
CANDIDATES: dict[str, str | None] = {
    "none": None,
    "helpful": "You are a helpful assistant.",
    "english-brief": "You are a helpful assistant. Answer in English, briefly and factually.",
    "smollm-english": "You are SmolLM, a helpful AI assistant. Always answer in English with one or two short, "
                      "correct sentences.",
    "direct": "Answer the question directly in one English sentence.",
}


def load_questions(path: Path = QUESTIONS) -> list[tuple[str, list[str]]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["question"], row["expect"]) for row in rows]


async def measure(
    max_tokens: int = 40, candidates: dict[str, str | None] = CANDIDATES
) -> dict[str, tuple[int, int, float]]:
    """Candidate -> (right answers, questions, mean answer characters), greedy decoding."""
    from backend.llm.llamacpp_adapter import LlamaCppBackend
    from backend.metrics import Metrics

    settings = Settings()
    path = settings.resolved_model_path()
    assert path is not None
    llm = LlamaCppBackend(
        path, n_ctx=2048, n_threads=settings.resolved_llamacpp_threads(), max_queue=4, queue_timeout_s=60,
        metrics=Metrics(),
    )
    questions = load_questions()
    scores: dict[str, tuple[int, int, float]] = {}
    try:
        for name, prompt in candidates.items():
            right, chars = 0, 0
            for question, expect in questions:
                messages = ([ChatMessage("system", prompt)] if prompt else []) + [ChatMessage("user", question)]
                result = await join_stream(llm.stream_chat(llm.default_model, messages, GenerationOptions(
                    max_tokens=max_tokens, temperature=0.0, seed=1)))
                answer = result.content.lower()
                right += any(word in answer for word in expect)
                chars += len(result.content)
            scores[name] = (right, len(questions), chars / len(questions))
    finally:
        await llm.aclose()
    return scores


def main() -> None:
    started = time.monotonic()
    scores = asyncio.run(measure())
    for name, (right, total, chars) in sorted(scores.items(), key=lambda item: -item[1][0]):
        print(f"{name:16} {right:2}/{total} right   mean {chars:5.0f} characters   {CANDIDATES[name]!r}")
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
