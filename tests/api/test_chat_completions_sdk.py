"""/v1/chat/completions driven by the official `openai` SDK against the real embedded model."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import RunningServer

HELLO = [{"role": "user", "content": "Say hello."}]


def test_non_streaming_answer_has_the_chat_completion_shape(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=8)  # type: ignore[arg-type]

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == model_id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 5
    assert completion.usage.completion_tokens >= 1 and completion.usage.completion_tokens <= 8
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=3, temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_max_completion_tokens_wins_over_max_tokens(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=40, max_completion_tokens=2, temperature=0,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_streaming_chunks_share_id_and_created_and_start_with_the_role(client: openai.OpenAI, model_id: str) -> None:
    chunks = list(client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=8, stream=True))  # type: ignore[arg-type]

    assert len(chunks) >= 3
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert {chunk.created for chunk in chunks} == {chunks[0].created}
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.usage is None for chunk in chunks)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks]
    assert finishes[-1] in ("stop", "length")
    assert all(reason is None for reason in finishes[:-1])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text.strip()


def test_streamed_text_equals_the_non_streamed_text_for_the_same_seed(client: openai.OpenAI, model_id: str) -> None:
    request = {"model": model_id, "messages": HELLO, "max_tokens": 12, "temperature": 0.7, "seed": 42}
    whole = client.chat.completions.create(**request).choices[0].message.content  # type: ignore[call-overload]
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**request, stream=True)  # type: ignore[call-overload]
    )
    assert streamed == whole


def test_include_usage_adds_a_final_chunk_with_empty_choices(client: openai.OpenAI, model_id: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=model_id, messages=HELLO, max_tokens=6, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 5
    assert last.usage.completion_tokens >= 1 and last.usage.completion_tokens <= 6
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert all(len(chunk.choices) == 1 for chunk in chunks[:-1])


def test_raw_stream_is_data_events_ending_in_done(server: RunningServer, model_id: str) -> None:
    body = {"model": model_id, "messages": HELLO, "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = raw.split("\n\n")
    assert events[-1] == ""
    events = events[:-1]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    for event in events[:-1]:
        chunk = json.loads(event.removeprefix("data: "))
        assert all("delta" in choice for choice in chunk["choices"])


def test_content_as_text_parts_and_developer_role_are_accepted(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[
            {"role": "developer", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": " hi."}]},
        ],
        max_tokens=5,
    )
    assert completion.choices[0].message.content


def test_tool_history_and_unknown_extra_fields_are_accepted(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"place":"Paris"}'}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
        ],
        max_tokens=10,
        metadata={"trace": "x"},
        store=False,
        user="someone",
        extra_body={"service_tier": "auto", "parallel_tool_calls": False, "mode": "chat"},
    )
    assert completion.choices[0].message.content


def test_stop_sequence_ends_the_answer_before_it(client: openai.OpenAI, model_id: str) -> None:
    # Plain chat with the chat template's own system prompt, so neither the router nor DEFAULT_SYSTEM_PROMPT
    # changes what this test is about: where a stop sequence cuts the same answer.
    messages = [{"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
                {"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    request = {"model": model_id, "messages": messages, "max_tokens": 40, "temperature": 0,
               "extra_body": {"mode": "chat"}}
    free = client.chat.completions.create(**request).choices[0].message.content or ""  # type: ignore[call-overload]
    assert "3" in free
    stopped = client.chat.completions.create(**request, stop=["3"]).choices[0]  # type: ignore[call-overload]
    assert "3" not in (stopped.message.content or "")
    assert stopped.finish_reason == "stop"
    assert free.startswith(stopped.message.content or "")


def test_seed_makes_sampling_repeatable(client: openai.OpenAI, model_id: str) -> None:
    request = {"model": model_id, "messages": [{"role": "user", "content": "Name a colour."}],
               "max_tokens": 10, "temperature": 1.0, "seed": 7}
    first = client.chat.completions.create(**request).choices[0].message.content  # type: ignore[call-overload]
    second = client.chat.completions.create(**request).choices[0].message.content  # type: ignore[call-overload]
    assert first == second


class Verdict(BaseModel):
    # Bounded, so the grammar ends the string in time whatever the model would have said.
    answer: str = Field(max_length=40)
    confident: bool
    score: int


def test_json_schema_output_validates_through_sdk_parse(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.parse(
        model=model_id,
        messages=[{"role": "user", "content": "Is the sky blue? Reply in JSON."}],
        response_format=Verdict,
        max_tokens=60,
        temperature=0,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Verdict)


def test_json_object_mode_returns_a_json_object(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": 'Reply with a JSON object like {"colour": "blue"}.'}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
        },
    },
}


def test_required_tool_choice_returns_tool_calls_with_json_string_arguments(
    client: openai.OpenAI, model_id: str
) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=60,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_streamed_tool_calls_rebuild_exactly_with_the_sdk_stream_helper(client: openai.OpenAI, model_id: str) -> None:
    with client.chat.completions.stream(
        model=model_id,
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        temperature=0,
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    assert calls[0].id.startswith("call_") and calls[0].id.count("call_") == 1
    assert "city" in json.loads(calls[0].function.arguments)
    assert final.choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_in_text(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=HELLO, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=6,  # type: ignore[list-item]
    )
    assert not completion.choices[0].message.tool_calls
    assert completion.choices[0].message.content


@pytest.mark.parametrize("model", ["gpt-4o", "org/name", "llama3:8b"])
def test_unknown_model_is_not_found_with_param_model(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert model in caught.value.message


def test_unknown_model_in_a_stream_request_is_a_404_not_a_broken_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO, max_tokens=2, stream=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 3.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_parameters_are_bad_requests_naming_the_parameter(
    client: openai.OpenAI, model_id: str, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=HELLO, extra_body=extra)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"


def test_image_parts_are_refused_for_text_models(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ]}],
        )
    assert caught.value.param == "messages[0].content"


def test_missing_messages_is_a_bad_request(server: RunningServer, model_id: str) -> None:
    response = httpx.post(f"{server.v1}/chat/completions", json={"model": model_id}, headers=server.headers())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages"
    assert set(error) == {"message", "type", "param", "code"}


def test_malformed_json_body_is_a_bad_request(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.v1}/chat/completions", content=b"{not json",
        headers={**server.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unsupported_json_schema_is_a_bad_request_not_a_server_error(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model_id, messages=HELLO, max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}},
        )
    assert caught.value.param == "response_format"


def test_tool_call_arguments_that_are_not_json_are_a_bad_request(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model_id,
            messages=[
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{city: Paris}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        )
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(("extra", "param"), [
    ({"logprobs": True}, "logprobs"), ({"top_logprobs": 3}, "top_logprobs"), ({"modalities": ["audio"]}, "modalities"),
])
def test_logprobs_and_audio_are_refused_by_name(
    client: openai.OpenAI, model_id: str, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=HELLO, max_tokens=2, extra_body=extra)  # type: ignore[arg-type]
    assert caught.value.param == param


def test_presence_and_frequency_penalties_change_sampling(client: openai.OpenAI, model_id: str) -> None:
    request = {"model": model_id, "messages": [{"role": "user", "content": "Repeat the word cat many times."}],
               "max_tokens": 30, "temperature": 0}
    plain = client.chat.completions.create(**request).choices[0].message.content  # type: ignore[call-overload]
    penalised = client.chat.completions.create(  # type: ignore[call-overload]
        **request, presence_penalty=2.0, frequency_penalty=2.0).choices[0].message.content
    assert plain != penalised


def test_messages_longer_than_the_context_are_a_bad_request(client: openai.OpenAI, model_id: str) -> None:
    too_long = "word " * 5000  # the test server's context holds 2048 tokens
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": too_long}], max_tokens=2)
    assert caught.value.param == "messages"
    assert "context" in caught.value.message
