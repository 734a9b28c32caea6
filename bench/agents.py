"""Agent latency on the embedded model, and proof that plan-and-execute runs its tools at once.

1. Latency: a real server (embedded SmolLM2, fresh data folder, loopback) answers a fixed set of
   questions with `mode` forced to `react` and to `plan_execute`; prints p50/p95 per mode.
2. Concurrency: the plan-and-execute agent runs in-process on the same model with the real tools, on
   questions that need three or four different tools; for each run the tool phase's wall time (first
   tool call to last result) is set against the slowest single tool. Target: <= 1.2x (run one after
   the other, the phase would take the sum of the tools' times).

    .venv/bin/python bench/agents.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.agents.plan_execute_graph import PlanExecuteAgent  # noqa: E402
from backend.agents.port import AgentTurn, Finished, RouteDecision, ToolCalled, ToolFinished  # noqa: E402
from backend.auth.models import User  # noqa: E402
from backend.llm.factory import build_llm_backend  # noqa: E402
from backend.llm.port import ChatMessage, GenerationOptions  # noqa: E402
from backend.metrics import Metrics  # noqa: E402
from backend.tools.catalog import build_tool_registry  # noqa: E402
from tests.conftest import ServerThread, credential_for, make_settings  # noqa: E402

LATENCY_QUESTIONS = (
    "What is the integral of x^2 from 0 to 3?",
    "How many customers are in the database?",
    "Compute 12 factorial and also the derivative of x^3.",
    "How many products are in the database, and what is 3^5?",
    'What is the average price in this data? [{"item":"pen","price":2.5},{"item":"book","price":12}]',
)
DATA = "name,score\n" + "\n".join(f"p{i},{(i * 37) % 101}" for i in range(2000))
CONCURRENT_QUESTIONS = (
    f"How many orders are in the database, what is the integral of x^3 from 0 to 2, and also summarise this "
    f"data and run this code: ```\nimport time\ntime.sleep(0.3)\nprint(sum(range(10**6)))\n```\n{DATA}",
    f"What is 30 factorial and how many customers are there in the database? Also the mean score:\n{DATA}",
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency(rounds: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {"react": [], "plan_execute": []}
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as data_dir:
        settings = make_settings(Path(data_dir))
        with ServerThread(settings) as base_url:
            key = credential_for(base_url, settings)
            with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
                model = client.get("/v1/models").json()["data"][0]["id"]
                for _ in range(rounds):
                    for question in LATENCY_QUESTIONS:
                        for mode in seconds:
                            started = time.monotonic()
                            response = client.post("/v1/chat/completions", json={
                                "model": model, "mode": mode, "temperature": 0,
                                "messages": [{"role": "user", "content": question}],
                            })
                            response.raise_for_status()
                            seconds[mode].append(time.monotonic() - started)
    return seconds


async def concurrency(rounds: int) -> list[tuple[int, float, float, float]]:
    """(tools, tool phase wall time, slowest tool, sum of the tools) per run."""
    runs: list[tuple[int, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as data_dir:
        settings = make_settings(Path(data_dir))
        llm = await build_llm_backend(settings, Metrics())
        registry = build_tool_registry(settings)
        await registry.warm_up()
        agent = PlanExecuteAgent(llm, registry, settings)
        try:
            for _ in range(rounds):
                for question in CONCURRENT_QUESTIONS:
                    turn = AgentTurn(llm.default_model, [ChatMessage("user", question)], GenerationOptions(),
                                     User("bench"), RouteDecision("plan_execute", "bench", 1.0))
                    first_call = last_result = 0.0
                    durations: list[float] = []
                    async for event in agent.run(turn):
                        now = time.monotonic()
                        if isinstance(event, ToolCalled) and not first_call:
                            first_call = now
                        elif isinstance(event, ToolFinished):
                            last_result = now
                            durations.append(event.duration_s)
                        elif isinstance(event, Finished) and durations:
                            runs.append((len(durations), last_result - first_call, max(durations), sum(durations)))
        finally:
            await registry.aclose()
            await llm.aclose()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    runs = asyncio.run(concurrency(args.rounds))
    print("\nPlan-and-execute: tool phase wall time against the slowest tool (target <= 1.2x)")
    print(f"  {'tools':>5} {'wall s':>8} {'slowest s':>10} {'sum s':>8} {'wall/slowest':>13}")
    for tools, wall, slowest, total in runs:
        print(f"  {tools:>5} {wall:8.3f} {slowest:10.3f} {total:8.3f} {wall / slowest:12.2f}x")
    ratios = [wall / slowest for _, wall, slowest, _ in runs]
    print(f"  median wall/slowest {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x")

    seconds = latency(args.rounds)
    print("\nLatency on the embedded model (non-streamed, mode forced)")
    print(f"  {'mode':<14} {'n':>3} {'p50 s':>8} {'p95 s':>8}")
    for mode, values in seconds.items():
        print(f"  {mode:<14} {len(values):>3} {statistics.median(values):8.2f} {percentile(values, 0.95):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
