"""Attacks on the embedded model through the real server: huge grammars, huge prompts, one user's flood.

Each is refused within a couple of seconds while another user's ordinary chat is answered meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.api.account_helpers import admin_token, assert_error, bearer, create_api_key, new_user_token
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings

REFUSAL_S = 2.0
"""A bad schema or prompt is refused within this, whatever its bounds."""
OTHER_USER_S = 10.0
"""Another user's short chat is answered within this meanwhile (a few tokens; the machine is shared)."""


@pytest.fixture(scope="module")
def second_user(server: RunningServer) -> str:
    """An API key of another, ordinary account."""
    _, token = new_user_token(server, admin_token(server))
    return str(create_api_key(server, token)["key"])


def _chat(server: RunningServer, credential: str, model_id: str, **body: Any) -> httpx.Response:
    request = {"model": model_id, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3, **body}
    return httpx.post(f"{server.v1}/chat/completions", json=request, headers=bearer(credential), timeout=60)


class _Meanwhile:
    """Another user's short chats, one after another, for as long as the block lasts; each is timed."""

    def __init__(self, ask: Callable[[], httpx.Response]) -> None:
        self._ask = ask
        self._stop = threading.Event()
        self.answers: list[tuple[int, float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            response = self._ask()
            self.answers.append((response.status_code, time.monotonic() - started))

    def __enter__(self) -> _Meanwhile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        assert self.answers, "the other user's chat never came back"
        assert all(status == 200 for status, _ in self.answers), self.answers
        assert max(seconds for _, seconds in self.answers) < OTHER_USER_S, self.answers


def _nested_arrays(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


SCHEMA_ATTACKS = {
    "minLength 1e9": ({"type": "string", "minLength": 1_000_000_000}, "minLength"),
    "minLength 1e8": ({"type": "string", "minLength": 100_000_000}, "minLength"),
    "maxLength 20000 (overflowed llama.cpp's parser stack)": ({"type": "string", "maxLength": 20_000}, "maxLength"),
    "maxItems huge": ({"type": "array", "items": {"type": "integer"}, "maxItems": 10**15}, "maxItems"),
    "deep nesting": (_nested_arrays(500), "nests deeper"),
    "huge pattern repetition": ({"type": "string", "pattern": "^(ab){100000000}$"}, "repeats 100000000 times"),
    "ambiguous pattern repetition": ({"type": "string", "pattern": "^(a?){0,100}$"}, "varying length"),
    "nested minimums past the context": (
        {"type": "array", "minItems": 1000, "items": {"type": "string", "minLength": 1000}}, "nested minimums"),
    "left-recursive grammar (segfaulted llama.cpp)": ({"type": "string", "pattern": "^(a|)+$"}, "cannot use"),
}


@pytest.mark.parametrize("attack", list(SCHEMA_ATTACKS))
def test_a_response_format_schema_past_the_limits_is_refused_at_once_while_others_chat(
    server: RunningServer, model_id: str, second_user: str, attack: str
) -> None:
    schema, named = SCHEMA_ATTACKS[attack]
    response_format = {"type": "json_schema", "json_schema": {"name": "attack", "schema": schema}}
    with _Meanwhile(lambda: _chat(server, second_user, model_id)):
        time.sleep(0.2)
        for _ in range(3):  # and again: nothing is cached or left half-built
            started = time.monotonic()
            response = _chat(server, server.api_key, model_id, response_format=response_format)
            assert time.monotonic() - started < REFUSAL_S
            error = assert_error(response, 400, "unsupported_value")
            assert error["param"] == "response_format"
            assert named in error["message"]


@pytest.mark.parametrize("attack", list(SCHEMA_ATTACKS))
def test_a_tool_schema_past_the_limits_is_refused_at_once_while_others_chat(
    server: RunningServer, model_id: str, second_user: str, attack: str
) -> None:
    schema, named = SCHEMA_ATTACKS[attack]
    harmless = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}
    hostile = {"type": "function", "function": {"name": "attack", "parameters": {
        "type": "object", "properties": {"x": schema}, "required": ["x"]}}}
    with _Meanwhile(lambda: _chat(server, second_user, model_id)):
        time.sleep(0.2)
        started = time.monotonic()
        response = _chat(server, server.api_key, model_id, tools=[harmless, hostile])
        assert time.monotonic() - started < REFUSAL_S
    error = assert_error(response, 400, "unsupported_value")
    assert error["param"] == "tools"
    assert named in error["message"]
    if "cannot use" not in named:  # the converter's own refusals have no path
        assert "tools[1].function.parameters.properties.x" in error["message"]


def test_a_json_object_schema_is_checked_like_a_json_schema(server: RunningServer, model_id: str) -> None:
    response = _chat(server, server.api_key, model_id,
                     response_format={"type": "json_object", "schema": {"type": "string", "minLength": 10**9}})
    assert assert_error(response, 400, "unsupported_value")["param"] == "response_format"


def test_a_structured_output_within_the_limits_still_validates(client: openai.OpenAI, model_id: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 2, "maxLength": 20},
                       "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,8}$"},
                                "minItems": 1, "maxItems": 3}},
        "required": ["city", "tags"],
    }
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Name a city and some tags for it, as JSON."}],
        max_tokens=120, temperature=0, seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    assert completion.choices[0].finish_reason == "stop"
    answer = json.loads(completion.choices[0].message.content or "")
    assert set(answer) == {"city", "tags"}
    assert 2 <= len(answer["city"]) <= 20
    assert len(answer["tags"]) >= 1 and len(answer["tags"]) <= 3
    assert all(re.fullmatch("[a-z]{1,8}", tag) for tag in answer["tags"])


@pytest.mark.parametrize(("prompt", "exact"), [
    (["x" * 900_000], False),  # refused from its length alone: template and tokenizer never run
    (["word " * 20_000], True),  # short enough to count: the exact count, off the model's worker
    (["hi"] * 999, True),  # many short messages: templated and counted off the worker, in milliseconds
])
def test_a_prompt_past_the_context_is_refused_without_holding_up_another_user(
    server: RunningServer, model_id: str, second_user: str, prompt: list[str], exact: bool
) -> None:
    messages = [{"role": "user", "content": content} for content in prompt]
    with _Meanwhile(lambda: _chat(server, second_user, model_id)):
        time.sleep(0.2)
        for _ in range(3):
            started = time.monotonic()
            response = _chat(server, server.api_key, model_id, messages=messages)
            assert time.monotonic() - started < REFUSAL_S
            error = assert_error(response, 400, "unsupported_value")
            assert error["param"] == "messages"
            how_many = r"\d+" if exact else r"at least \d+"
            assert re.fullmatch(rf"The messages take {how_many} tokens; this model's context holds 2048\.",
                                error["message"]), error["message"]


# --- the per-user share of the model, on a server of its own (the shared one lifts it for the suite)

PER_USER = 2


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = make_settings(Path(tmp_path_factory.mktemp("capped")), llamacpp_max_queue_per_user=PER_USER)
    with ServerThread(settings) as base_url:
        yield RunningServer(base_url=base_url, settings=settings, api_key=credential_for(base_url, settings))


def _queue_depth(server: RunningServer) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    match = re.search(r"^llm_queue_depth ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_a_user_past_their_share_gets_429_while_another_user_is_served(capped_server: RunningServer) -> None:
    server = capped_server
    _, token = new_user_token(server, admin_token(server))
    other = str(create_api_key(server, token)["key"])
    model = httpx.get(f"{server.v1}/models", headers=server.headers(), timeout=30).json()["data"][0]["id"]
    # Plain chat (no router, no agent): this is about the model queue's per-user share.
    endless = {"model": model, "max_tokens": 1500, "logit_bias": {"0": -100, "1": -100, "2": -100}, "mode": "chat",
               "messages": [{"role": "user", "content": "Write a very long essay about the sea."}]}
    async with httpx.AsyncClient(base_url=server.v1, timeout=60) as http:
        async def ask(credential: str, body: dict[str, Any]) -> httpx.Response:
            return await http.post("/chat/completions", json=body, headers=bearer(credential))

        flood = [asyncio.create_task(ask(server.api_key, endless)) for _ in range(PER_USER)]
        deadline = time.monotonic() + 10
        while _queue_depth(server) < PER_USER and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _queue_depth(server) == PER_USER

        started = time.monotonic()
        refused = await ask(server.api_key, {**endless, "stream": True})
        assert time.monotonic() - started < REFUSAL_S
        error = assert_error(refused, 429, "per_user_limit")
        assert int(refused.headers["Retry-After"]) >= 1
        assert "limit per user" in error["message"]

        served = asyncio.create_task(ask(other, {**endless, "max_tokens": 3}))
        await asyncio.sleep(0.5)
        assert not served.done() or served.result().status_code == 200  # queued, not refused
        for task in flood:  # the flooding client leaves: its generations stop, its share is free again
            task.cancel()
        started = time.monotonic()
        answer = await asyncio.wait_for(served, OTHER_USER_S)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < OTHER_USER_S

        deadline = time.monotonic() + 10
        while _queue_depth(server) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        again = await ask(server.api_key, {**endless, "max_tokens": 3})
        assert again.status_code == 200, again.text
