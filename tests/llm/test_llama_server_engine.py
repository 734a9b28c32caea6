"""The embedded engine as llama.cpp's own llama-server: supervised, batched, cached, private.

All on the real model in the real child, through the server's HTTP API and the official SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from backend.llm.llama_server_process import STDERR_LINE_CHARS, EngineLaunch, LlamaServerProcess
from backend.metrics import Metrics
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings

NO_END_OF_TURN = {"0": -100, "1": -100, "2": -100}
"""SmolLM2's <|endoftext|>, <|im_start|>, <|im_end|> banned: the answer runs to max_tokens."""


def _engine(base_url: str) -> dict[str, Any]:
    ready = httpx.get(f"{base_url}/ready", timeout=30)
    return dict(ready.json()["engine"])


def _metric(base_url: str, name: str) -> float:
    for line in httpx.get(f"{base_url}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_engine_killed_mid_stream_gives_an_error_event_and_the_next_request_succeeds(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with ServerThread(settings) as base_url:
        key = credential_for(base_url, settings)
        headers = {"Authorization": f"Bearer {key}"}
        model = httpx.get(f"{base_url}/v1/models", headers=headers).json()["data"][0]["id"]
        first_pid = _engine(base_url)["pid"]
        events: list[dict[str, Any]] = []
        body = {"model": model, "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": 1500, "logit_bias": NO_END_OF_TURN, "stream": True}
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                events.append(json.loads(line[6:]))
                if len(events) == 5:  # the answer is under way
                    os.kill(first_pid, signal.SIGKILL)
        error = events[-1]["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert "restarted" in error["message"] and error["code"] == "backend_unavailable"
        assert len(events) < 1000  # it ended at the kill, not at max_tokens

        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=60) as sdk:
            answer = sdk.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
            )
        assert answer.choices[0].message.content
        engine = _engine(base_url)
        assert engine["running"] and engine["restarts"] == 1 and engine["pid"] not in (None, first_pid)
        assert engine["last_exit"] == -signal.SIGKILL
        assert _metric(base_url, "llama_server_restarts_total") == 1
        assert _metric(base_url, "llama_server_running") == 1


async def test_two_streams_progress_at_the_same_time(server: RunningServer, model_id: str) -> None:
    """With two slots, each stream has tokens before either has finished (one at a time could not)."""
    first_token: dict[int, float] = {}
    finished: dict[int, float] = {}

    async def stream(index: int, sdk: openai.AsyncOpenAI) -> None:
        chunks = await sdk.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": f"Story number {index}, please."}],
            max_tokens=120, logit_bias=NO_END_OF_TURN, stream=True,
        )
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                first_token.setdefault(index, time.monotonic())
        finished[index] = time.monotonic()

    async with openai.AsyncOpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=60) as sdk:
        await asyncio.gather(stream(1, sdk), stream(2, sdk))
    assert max(first_token.values()) < min(finished.values()), (first_token, finished)


def test_the_second_turn_reads_its_shared_prefix_from_the_prompt_cache(
    client: openai.OpenAI, model_id: str
) -> None:
    turn = [{"role": "system", "content": "You are a careful assistant. " * 20},
            {"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model=model_id, messages=turn, max_tokens=5, temperature=0)  # type: ignore[arg-type]
    follow_up = [*turn, {"role": "assistant", "content": first.choices[0].message.content or ""},
                 {"role": "user", "content": "And another?"}]
    second = client.chat.completions.create(model=model_id, messages=follow_up, max_tokens=5, temperature=0)  # type: ignore[arg-type]
    assert first.usage is not None and second.usage is not None
    assert second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert first.usage.prompt_tokens - 2 <= cached < second.usage.prompt_tokens, (first.usage, second.usage)


def test_the_engine_listens_on_no_network_port_only_on_a_private_socket(server: RunningServer) -> None:
    pid = _engine(server.base_url)["pid"]
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:["):-1]
              for fd in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            assert row.split()[9] not in inodes, f"llama-server has a {table} socket: {row}"
    unix = [row.split() for row in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]]
    listening = [fields[7] for fields in unix if fields[6] in inodes and len(fields) > 7]
    assert len(listening) == 1, unix
    socket_dir = Path(listening[0]).parent
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700 and socket_dir.stat().st_uid == os.getuid()


def test_the_engine_refuses_a_caller_without_its_key(server: RunningServer) -> None:
    """Even a process of the same user that finds the socket cannot use the model behind the server's limits."""
    pid = _engine(server.base_url)["pid"]
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    socket_path = command[command.index(b"--host") + 1].decode()
    assert b"LLAMA_API_KEY" not in b"".join(command)
    transport = httpx.HTTPTransport(uds=socket_path)
    with httpx.Client(transport=transport, base_url="http://llama-server", timeout=30) as engine:
        refused = engine.post("/completion", json={"prompt": "Hi", "n_predict": 2})
    assert refused.status_code == 401


def test_prompt_tokens_count_the_whole_prompt_and_a_repeated_prompt_is_read_from_the_cache(
    client: openai.OpenAI, model_id: str
) -> None:
    messages = [{"role": "user", "content": "Say the word cache, twice."}]
    usages = [client.chat.completions.create(model=model_id, messages=messages, max_tokens=3).usage  # type: ignore[arg-type]
              for _ in range(2)]
    assert usages[0] is not None and usages[1] is not None
    assert usages[0].prompt_tokens == usages[1].prompt_tokens > 5
    assert usages[1].prompt_tokens_details is not None
    assert (usages[1].prompt_tokens_details.cached_tokens or 0) >= usages[1].prompt_tokens - 1


async def test_a_huge_line_on_the_engines_stderr_neither_stops_the_reading_nor_is_kept_whole(tmp_path: Path) -> None:
    """A full stderr pipe would stall the child, so the reader must survive any line, keeping a bounded part."""
    engine = LlamaServerProcess(
        EngineLaunch(Path("/bin/false"), tmp_path / "unused.gguf", n_ctx=256, parallel=1, threads=1), Metrics()
    )
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stderr.write('x' * 5_000_000 + '\\nafter\\n')",
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.wait_for(engine._read_stderr(writer), 30)
    assert await writer.wait() == 0
    assert list(engine.stderr_tail) == ["x" * STDERR_LINE_CHARS, "after"]
    await engine.aclose()
