"""The JSON shapes of an agent's answer: `agent`, `agent_trace` and `sources`, as the API returns them and
the conversation file records them. Each is bounded: the trace by the iterations and the observation cut,
the sources by `MAX_SOURCES` and `MAX_SNIPPET_CHARS`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from backend.agents.port import Finished, RouteDecision, TraceStep
from backend.agents.tool_runs import cut
from backend.tools.base import Source
from backend.tools.registry import json_safe

MAX_SOURCES = 50
MAX_SNIPPET_CHARS = 1000


def agent_json(decision: RouteDecision, finished: Finished | None) -> dict[str, Any]:
    return {
        "mode": decision.mode, "reason": decision.reason, "confidence": decision.confidence,
        "iterations": finished.iterations if finished else 0,
    }


def trace_json(steps: Sequence[TraceStep]) -> list[dict[str, Any]]:
    return [json_safe(asdict(step)) for step in steps]


def sources_json(sources: Sequence[Source]) -> list[dict[str, Any]]:
    unique: dict[tuple[str, str | None, str], Source] = {}
    for source in sources:
        unique.setdefault((source.title, source.url, source.snippet), source)
    return [
        json_safe({"title": source.title, "url": source.url, "snippet": cut(source.snippet, MAX_SNIPPET_CHARS),
                   "metadata": source.metadata})
        for source in list(unique.values())[:MAX_SOURCES]
    ]
