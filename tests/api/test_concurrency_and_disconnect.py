"""The one embedded model under concurrent requests, and a client that leaves mid-stream."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import RunningServer, ServerThread, credential_for, make_settings


def _metric(server: RunningServer, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if match:
            total += float(match.group(2))
    return total


def _endless_request(model_id: str) -> dict[str, object]:
    """A request only a disconnect can end early: the end-of-turn tokens are forbidden."""
    return {
        "model": model_id,
        "messages": [{"role": "user", "content": "Write a very long essay about the history of the world."}],
        "max_tokens": 1500,
        "logit_bias": {"0": -100, "1": -100, "2": -100},
    }


def _cancellations_after(server: RunningServer, before: float) -> float:
    """The cancelled-generations counter, once it has moved past `before` (or after 20 s)."""
    deadline = time.monotonic() + 20
    while _metric(server, "llm_generations_cancelled_total") <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    return _metric(server, "llm_generations_cancelled_total")


async def test_concurrent_requests_each_get_their_own_uncorrupted_answer(server: RunningServer, model_id: str) -> None:
    prompts = ["Name a fruit.", "Name an animal.", "Name a country.", "Name a planet.", "Name a colour.",
               "Name a city."]

    async with openai.AsyncOpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0) as sdk:
        async def ask(prompt: str) -> str:
            completion = await sdk.chat.completions.create(
                model=model_id, messages=[{"role": "user", "content": prompt}],
                max_tokens=12, temperature=0.9, seed=123,
            )
            return completion.choices[0].message.content or ""

        alone = [await ask(prompt) for prompt in prompts]
        together = await asyncio.gather(*(ask(prompt) for prompt in prompts))

    assert together == alone
    assert len(set(alone)) > 1


async def test_concurrent_streams_are_all_complete(server: RunningServer, model_id: str) -> None:
    async with openai.AsyncOpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0) as sdk:
        async def stream(prompt: str) -> tuple[str, str | None]:
            text, finish = "", None
            response = await sdk.chat.completions.create(
                model=model_id, messages=[{"role": "user", "content": prompt}],
                max_tokens=10, temperature=0, stream=True,
            )
            async for chunk in response:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
            return text, finish

        results = await asyncio.gather(*(stream(f"Say the number {n}.") for n in range(4)))
    for text, finish in results:
        assert text.strip()
        assert finish in ("stop", "length")


def test_client_disconnect_stops_the_generation(server: RunningServer, model_id: str) -> None:
    cancelled_before = _metric(server, "llm_generations_cancelled_total")
    tokens_before = _metric(server, "llm_tokens_generated_total")
    body = {**_endless_request(model_id), "temperature": 1.0, "stream": True}
    received = 0
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received >= 5:
                break
    assert _cancellations_after(server, cancelled_before) == cancelled_before + 1
    # The abandoned generation stopped far short of max_tokens, and the model serves the next request.
    generated = _metric(server, "llm_tokens_generated_total") - tokens_before
    assert received - 1 <= generated < 200  # the first event is the role, then one per token
    completion = httpx.post(
        f"{server.v1}/chat/completions", headers=server.headers(), timeout=30,
        json={"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
    )
    assert completion.status_code == 200
    assert _metric(server, "llm_active_streams") == 0


def test_client_leaving_a_non_streamed_request_stops_its_generation(server: RunningServer, model_id: str) -> None:
    cancelled_before = _metric(server, "llm_generations_cancelled_total")
    tokens_before = _metric(server, "llm_tokens_generated_total")
    body = _endless_request(model_id)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.v1}/chat/completions", json=body, headers=server.headers(), timeout=1.0)
    assert _cancellations_after(server, cancelled_before) == cancelled_before + 1
    assert _metric(server, "llm_tokens_generated_total") - tokens_before < 1500


async def test_a_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llamacpp_max_queue=1)
    with ServerThread(settings) as base_url:
        key = credential_for(base_url, settings)
        model = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]["id"]
        body = {"model": model, "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 40}
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.post(f"{base_url}/v1/chat/completions", json=body) for _ in range(3))
            )
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 200
    busy = [response for response in responses if response.status_code == 503]
    assert busy, statuses
    assert all(int(response.headers["Retry-After"]) >= 1 for response in busy)
    assert all(response.json()["error"]["code"] == "backend_busy" for response in busy)
