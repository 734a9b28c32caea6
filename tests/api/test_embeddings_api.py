"""POST /v1/embeddings through the official openai SDK and raw HTTP, on the real server and model."""

from __future__ import annotations

import base64
import math

import httpx
import numpy as np
import openai
import pytest

from tests.api.account_helpers import assert_error
from tests.conftest import RunningServer

MODEL = "all-MiniLM-L6-v2"


def post(server: RunningServer, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.v1}/embeddings", json=body, headers=server.headers(), timeout=60, **kwargs)  # type: ignore[arg-type]


def test_the_sdk_gets_float_embeddings_with_usage(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=MODEL, input=["hello world", "hello"], encoding_format="float")

    assert result.object == "list" and result.model == MODEL
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 384 for item in result.data)
    assert math.isclose(float(np.linalg.norm(result.data[0].embedding)), 1.0, abs_tol=1e-5)
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (7, 7)


def test_the_sdks_default_base64_decodes_to_exactly_the_float_answer(client: openai.OpenAI) -> None:
    as_float = client.embeddings.create(model=MODEL, input="The invoice is due in 30 days.", encoding_format="float")
    by_default = client.embeddings.create(model=MODEL, input="The invoice is due in 30 days.")  # SDK asks base64

    assert by_default.data[0].embedding == as_float.data[0].embedding
    assert by_default.usage.prompt_tokens == as_float.usage.prompt_tokens


def test_the_wire_answer_has_openais_shape_and_base64_is_little_endian_float32(server: RunningServer) -> None:
    response = post(server, {"model": MODEL, "input": "hello world", "encoding_format": "base64"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    item = body["data"][0]
    assert set(item) == {"object", "index", "embedding"} and item["object"] == "embedding"
    raw = base64.b64decode(item["embedding"])
    assert len(raw) == 384 * 4
    as_float = post(server, {"model": MODEL, "input": "hello world"}).json()["data"][0]["embedding"]
    assert np.frombuffer(raw, dtype="<f4").tolist() == as_float


def test_similar_texts_get_closer_vectors_than_unrelated_ones(client: openai.OpenAI) -> None:
    data = client.embeddings.create(
        model=MODEL, input=["How do I reset the router?", "Steps to restart your router", "Recipe for lemon cake"]
    ).data
    query, close, far = (np.asarray(item.embedding) for item in data)
    assert float(query @ close) > float(query @ far)


@pytest.mark.parametrize("tokens", [[[9906, 1917]], [9906, 1917]])
def test_token_ids_are_a_400_telling_langchain_users_what_to_set(client: openai.OpenAI, tokens: object) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=tokens)  # type: ignore[arg-type]
    assert caught.value.code == "token_ids_not_supported"
    assert caught.value.param == "input"
    assert "check_embedding_ctx_length=False" in caught.value.message


def test_dimensions_other_than_the_models_are_refused_and_equal_ones_accepted(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert (caught.value.param, caught.value.code) == ("dimensions", "unsupported_value")
    assert len(client.embeddings.create(model=MODEL, input="x", dimensions=384).data[0].embedding) == 384


def test_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-ada-002", input="x")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODEL, "input": []}, "input"),
    ({"model": MODEL, "input": ""}, "input"),
    ({"model": MODEL, "input": [{"text": "x"}]}, "input"),
    ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x"}, "model"),
])
def test_malformed_requests_are_400_naming_the_field(server: RunningServer, body: object, param: str) -> None:
    error = assert_error(post(server, body), 400)
    assert error["param"] is not None and error["param"].startswith(param)


def test_bounds_on_count_length_and_total_are_enforced(server: RunningServer) -> None:
    settings = server.settings
    too_many = post(server, {"model": MODEL, "input": ["x"] * (settings.embeddings_max_inputs + 1)})
    too_long = post(server, {"model": MODEL, "input": "x" * (settings.embeddings_max_input_chars + 1)})
    count = settings.embeddings_max_total_chars // settings.embeddings_max_input_chars + 1
    too_much = post(server, {"model": MODEL, "input": ["y" * settings.embeddings_max_input_chars] * count})

    assert assert_error(too_many, 400, "too_many_inputs")["param"] == "input"
    assert assert_error(too_long, 400, "input_too_long")["param"] == "input"
    assert assert_error(too_much, 413, "request_too_large")["param"] == "input"


def test_an_oversized_body_is_refused_before_it_is_read_whole(server: RunningServer) -> None:
    limit = server.settings.embeddings_max_total_chars * 6 + 64 * 1024
    declared = httpx.post(f"{server.v1}/embeddings", content=b" " * (limit + 1),
                          headers={**server.headers(), "Content-Type": "application/json"}, timeout=60)

    def chunks() -> object:
        yield b'{"model": "all-MiniLM-L6-v2", "input": "'
        for _ in range(limit // 65536 + 2):
            yield b"z" * 65536

    streamed = httpx.post(f"{server.v1}/embeddings", content=chunks(),  # type: ignore[arg-type]
                          headers={**server.headers(), "Content-Type": "application/json"}, timeout=60)

    assert assert_error(declared, 413, "request_too_large")["message"] == (
        f"The request body is larger than {limit} bytes."
    )
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "request_too_large")


def test_the_route_needs_a_signed_in_user(server: RunningServer) -> None:
    response = httpx.post(f"{server.v1}/embeddings", json={"model": MODEL, "input": "x"}, timeout=30)
    assert_error(response, 401)


def test_the_embedding_model_is_listed_and_fetchable(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids[-1] == MODEL and len(ids) == 2
    assert client.models.retrieve(MODEL).id == MODEL
