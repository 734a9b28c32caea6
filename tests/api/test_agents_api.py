"""Agents through the OpenAI API on the real embedded model: live steps, the agent fields, the kept trace,
client-side tools on the embedded and the Ollama backends, and a client that leaves mid-run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.api.account_helpers import admin_token, bearer, new_user_token
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings
from tests.fakes.ollama_server import FakeOllama

WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}


def test_a_streamed_react_answer_shows_its_steps_as_reasoning_then_the_answer(
    client: openai.OpenAI, model_id: str
) -> None:
    stream = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "What is the integral of x^2 from 0 to 3?"}],
        stream=True, max_tokens=48,
    )
    kinds: list[str] = []
    reasoning, content, ids = "", "", set()
    for chunk in stream:
        ids.add(chunk.id)
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        if extra.get("reasoning_content"):
            reasoning += extra["reasoning_content"]
            kinds.append("reasoning")
        if delta.content:
            content += delta.content
            kinds.append("content")
    assert len(ids) == 1
    assert "math_calc(integral of x^2 from 0 to 3) → 9" in reasoning
    assert "9" in content
    assert kinds.index("content") > max(i for i, kind in enumerate(kinds) if kind == "reasoning")


def test_a_streamed_agent_answers_last_chunk_carries_the_trace_and_the_turn_is_recorded_by_done(
    server: RunningServer, model_id: str
) -> None:
    _, token = new_user_token(server, admin_token(server))
    body = {"model": model_id, "stream": True, "max_tokens": 48, "session_id": "streamed-trace",
            "messages": [{"role": "user", "content": "What is the integral of x^2 from 0 to 3?"}]}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=bearer(token), timeout=120) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    last = next(chunk for chunk in reversed(chunks) if chunk.get("agent_trace"))
    assert last["choices"][0]["finish_reason"] == "stop"
    assert any(step["tool"] == "math_calc" and step["ok"] for step in last["agent_trace"])
    # No waiting: the stream ended with [DONE], so the turn is already kept.
    turn = httpx.get(f"{server.base_url}/api/sessions/streamed-trace", headers=bearer(token)).json()["messages"][-1]
    assert turn["role"] == "assistant" and turn["steps"] == last["agent_trace"]
    assert turn["sources"] == last["sources"]


def test_a_non_streamed_agent_answer_carries_agent_trace_and_header(server: RunningServer, model_id: str) -> None:
    _, token = new_user_token(server, admin_token(server))
    response = httpx.post(f"{server.v1}/chat/completions", headers=bearer(token), timeout=120, json={
        "model": model_id, "max_tokens": 48, "session_id": "customers-count",
        "messages": [{"role": "user", "content": "How many customers are in the database?"}],
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Agent-Mode"] == "react"
    assert body["agent"]["mode"] == "react" and body["agent"]["iterations"] >= 1
    assert body["agent"]["reason"].startswith("one tool (sql_query") and 0 < body["agent"]["confidence"] <= 1
    actions = [step for step in body["agent_trace"] if step["kind"] == "action"]
    assert actions[0]["tool"] == "sql_query" and actions[0]["ok"] is True and actions[0]["duration_s"] >= 0
    assert actions[0]["arguments"] == {"query": "SELECT COUNT(*) AS customers FROM customers"}
    message = body["choices"][0]["message"]
    assert "40" in message["content"] and "sql_query(" in message["reasoning_content"]
    assert body["sources"] == [{"title": "SQL: SELECT COUNT(*) AS customers FROM customers", "url": None,
                                "snippet": "", "metadata": {"databases": ["sample.sqlite"]}}]
    # The conversation file keeps mode, reason, steps, tools and sources with the turn.
    session = httpx.get(f"{server.base_url}/api/sessions/{body['session_id']}", headers=bearer(token), timeout=30)
    turn = session.json()["messages"][-1]
    assert (turn["mode"], turn["reason"], turn["tools_used"]) == ("react", body["agent"]["reason"], ["sql_query"])
    assert turn["steps"] == body["agent_trace"] and turn["sources"] == body["sources"]
    assert turn["reasoning_content"] == message["reasoning_content"]


def test_a_failing_tool_is_an_observation_not_an_error(server: RunningServer, model_id: str) -> None:
    response = httpx.post(f"{server.v1}/chat/completions", headers=server.headers(), timeout=120, json={
        "model": model_id, "max_tokens": 32, "mode": "react",
        "messages": [{"role": "user", "content": "Run SELECT nope FROM nowhere"}],
    })
    assert response.status_code == 200
    step = next(step for step in response.json()["agent_trace"] if step["kind"] == "action")
    assert step["tool"] == "sql_query" and step["ok"] is False and "nowhere" in step["observation"]


def test_plain_chat_is_chosen_for_everyday_questions_and_forced_modes_win(server: RunningServer, model_id: str) -> None:
    plain = httpx.post(f"{server.v1}/chat/completions", headers=server.headers(), timeout=60, json={
        "model": model_id, "max_tokens": 8, "messages": [{"role": "user", "content": "Tell me a joke about cats."}]})
    assert plain.headers["X-Agent-Mode"] == "chat" and plain.json()["agent"]["mode"] == "chat"
    assert plain.json()["agent_trace"] == [] and "reasoning_content" not in plain.json()["choices"][0]["message"]
    forced = httpx.post(f"{server.v1}/chat/completions", headers=server.headers(), timeout=60, json={
        "model": model_id, "max_tokens": 8, "mode": "chat",
        "messages": [{"role": "user", "content": "What is 2^10?"}]})
    assert forced.json()["agent"] == {"mode": "chat", "reason": "mode 'chat' requested", "confidence": 1.0,
                                      "iterations": 1}


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_client_tools_get_a_schema_valid_call_on_the_embedded_model(
    client: openai.OpenAI, model_id: str, tool_choice: Any
) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "What is the weather in Rome?"}],
        tools=[WEATHER_TOOL], tool_choice=tool_choice, max_tokens=60,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert call.function.name == "get_weather" and set(arguments) == {"city"}  # type: ignore[union-attr]
    assert isinstance(arguments["city"], str) and len(arguments["city"]) <= 40
    assert (completion.model_extra or {})["agent"]["reason"].startswith("the request brings its own tools")


def test_client_tool_choice_none_answers_in_words(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "What is the weather in Rome?"}],
        tools=[WEATHER_TOOL], tool_choice="none", max_tokens=12,
    )
    assert completion.choices[0].message.tool_calls is None and completion.choices[0].message.content


def test_client_tools_on_ollama_are_validated_repaired_and_forced(tmp_path: Path) -> None:
    with FakeOllama() as fake:
        # Native tool call with a wrong argument name; the repair is forced through `format`.
        fake.tool_call = {"name": "get_weather", "arguments": {"town": "Rome"}}
        fake.reply_words = ['{"tool_calls": [{"name": "get_weather", ', '"arguments": {"city": "Rome"}}]}']
        settings = make_settings(tmp_path, llm_backend="ollama", ollama_host=fake.url, ollama_model="llama3.1:8b")
        with ServerThread(settings) as base_url:
            key = credential_for(base_url, settings)
            with openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as sdk:
                completion = sdk.chat.completions.create(
                    model="llama3.1:8b", messages=[{"role": "user", "content": "weather in Rome?"}],
                    tools=[WEATHER_TOOL], tool_choice="auto")
                calls = completion.choices[0].message.tool_calls or []
                assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
                    ("get_weather", {"city": "Rome"})]
                repair = fake.requests[-1]["body"]
                assert repair["format"]["properties"]["tool_calls"]["items"]["anyOf"][0]["properties"]["name"] == {
                    "const": "get_weather"}
                # Still invalid after the repair: the output comes back as content, never dropped, never a 500.
                fake.reply_words = ['{"tool_calls": [{"name": "get_weather", "arguments": {"city": 7}}]}']
                fake.tool_call = {"name": "get_weather", "arguments": {"town": "Rome"}}
                completion = sdk.chat.completions.create(
                    model="llama3.1:8b", messages=[{"role": "user", "content": "weather in Rome?"}],
                    tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
                assert completion.choices[0].finish_reason == "stop"
                assert json.loads(completion.choices[0].message.content or "") == [
                    {"name": "get_weather", "arguments": '{"city": 7}'}]


def test_a_client_leaving_mid_run_stops_the_agent_and_records_what_it_did(
    server: RunningServer, model_id: str
) -> None:
    _, token = new_user_token(server, admin_token(server))
    body = {"model": model_id, "stream": True, "mode": "react", "max_tokens": 256, "temperature": 1.0,
            "logit_bias": {"0": -100, "1": -100, "2": -100},
            "messages": [{"role": "user", "content": "What is 2^10? Then write a long essay about it."}],
            "session_id": "essay-after-a-tool"}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=bearer(token), timeout=120) as r:
        assert r.status_code == 200
        session_id = r.headers["X-Session-Id"]
        for line in r.iter_lines():
            if "→" in line:  # the tool's result is out: the agent is now generating again
                break
    deadline = time.monotonic() + 20
    turn: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = httpx.get(f"{server.base_url}/api/sessions/{session_id}", headers=bearer(token), timeout=30)
        if found.status_code == 200 and found.json()["messages"][-1]["role"] == "assistant":
            turn = found.json()["messages"][-1]
            break
        time.sleep(0.2)
    assert turn.get("incomplete") is True and turn["mode"] == "react"
    assert "math_calc(" in turn["reasoning_content"] and turn["content"] == ""
