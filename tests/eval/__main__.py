"""`python -m tests.eval` (`make eval`): router and end-to-end task accuracy by category, on a real server.

By default a server on the embedded model starts on a free loopback port with a fresh data folder; with
`--backend ollama --ollama-model llama3.1:8b` (and `--ollama-host`) the same evaluation runs against an
Ollama model. `--base-url` and `--api-key` evaluate a server that is already running instead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

from tests.eval.router_eval import RouterEvaluation, evaluate_router
from tests.eval.task_eval import TaskEvaluation, evaluate_tasks


def _percent(right: int, total: int) -> str:
    return f"{right}/{total} ({100 * right / total:.0f}%)" if total else "-"


def print_router(evaluation: RouterEvaluation) -> None:
    print("\nRouter (mode: auto) on tests/eval/router_queries.jsonl")
    print(f"  {'expected mode':<16} {'correct':>14}")
    for mode, (right, total) in sorted(evaluation.by_mode.items()):
        print(f"  {mode:<16} {_percent(right, total):>14}")
    print(f"  {'all':<16} {_percent(evaluation.correct, evaluation.total):>14}")
    for query, expected, decided in evaluation.misses:
        print(f"  miss: {query[:70]!r} expected {expected}, got {decided[:80]}")


def print_tasks(evaluation: TaskEvaluation) -> None:
    print("\nEnd-to-end tasks (tests/eval/tasks.jsonl) through /v1/chat/completions, mode: auto")
    print(f"  {'category':<12} {'correct':>14}  modes chosen")
    for category, (right, total) in evaluation.by_category.items():
        modes = ", ".join(f"{mode} {count}" for mode, count in sorted(evaluation.modes.get(category, {}).items()))
        print(f"  {category:<12} {_percent(right, total):>14}  {modes}")
    for category, reason in evaluation.not_run.items():
        print(f"  {category:<12} {'not run':>14}  {reason}")
    print(f"  {'all':<12} {_percent(evaluation.correct, evaluation.total):>14}")
    for mode, seconds in sorted(evaluation.latencies.items()):
        ordered = sorted(seconds)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(f"  latency {mode:<12} n={len(ordered):<3} p50 {statistics.median(ordered):6.2f} s  p95 {p95:6.2f} s")
    for task_id, mode, missing, answer in evaluation.misses:
        print(f"  miss: {task_id} ({mode}) lacks {missing}: {answer[:120]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.eval", description=__doc__)
    parser.add_argument("--backend", default="llamacpp", choices=["llamacpp", "ollama", "openai"])
    parser.add_argument("--ollama-model", default=None)
    parser.add_argument("--ollama-host", default=None)
    parser.add_argument("--base-url", default=None, help="Evaluate this running server instead of starting one.")
    parser.add_argument("--api-key", default=None, help="With --base-url: a key accepted on /v1/*.")
    parser.add_argument("--only", choices=["router", "tasks"], default=None)
    parser.add_argument("--category", action="append", default=[], help="Only these task categories.")
    args = parser.parse_args(argv)

    if args.only != "tasks":
        print_router(asyncio.run(evaluate_router()))
    if args.only == "router":
        return 0
    if args.base_url:
        evaluation = _run_tasks(args.base_url, args.api_key or "unused", args.category)
    else:
        from tests.conftest import ServerThread, credential_for, make_settings

        overrides: dict[str, object] = {"llm_backend": args.backend}
        if args.ollama_model:
            overrides["ollama_model"] = args.ollama_model
        if args.ollama_host:
            overrides["ollama_host"] = args.ollama_host
        with tempfile.TemporaryDirectory(prefix="eval-") as data_dir:
            settings = make_settings(Path(data_dir), **overrides)
            with ServerThread(settings) as base_url:
                evaluation = _run_tasks(base_url, credential_for(base_url, settings), args.category)
    print_tasks(evaluation)
    return 0


def _run_tasks(base_url: str, api_key: str, categories: list[str]) -> TaskEvaluation:
    models = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    models.raise_for_status()
    return evaluate_tasks(base_url, api_key, str(models.json()["data"][0]["id"]), categories=categories,
                          progress=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
