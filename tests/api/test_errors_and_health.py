"""Error shape on every failure path, and the health, readiness and metrics endpoints."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import RunningServer, ServerThread, credential_for, free_port, make_settings

ERROR_KEYS = {"message", "type", "param", "code"}


def test_unknown_route_is_a_404_in_the_error_shape(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/nothing-here", headers=server.headers())
    assert response.status_code == 404
    assert set(response.json()["error"]) == ERROR_KEYS


def test_wrong_method_is_a_405_in_the_error_shape(server: RunningServer) -> None:
    response = httpx.get(f"{server.v1}/chat/completions", headers=server.headers())
    assert response.status_code == 405
    assert set(response.json()["error"]) == ERROR_KEYS


def test_models_list_has_the_openai_shape(client: openai.OpenAI, model_id: str) -> None:
    models = client.models.list()
    assert [model.id for model in models] == [model_id, "all-MiniLM-L6-v2"]  # the chat model, then the embedder
    for listed in (client.models.retrieve(model_id), client.models.retrieve("all-MiniLM-L6-v2")):
        assert listed.object == "model" and listed.owned_by and listed.created > 0


def test_model_ids_with_slashes_and_colons_route_to_a_404(client: openai.OpenAI) -> None:
    for model_id in ("org/name", "llama3:8b"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(model_id)
        assert caught.value.code == "model_not_found"


def test_health_ready_and_metrics(server: RunningServer, model_id: str) -> None:
    assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.base_url}/ready")
    assert ready.status_code == 200
    assert ready.json()["backend"] == "llamacpp" and ready.json()["model"] == model_id
    httpx.post(f"{server.v1}/chat/completions", headers=server.headers(), timeout=30,
               json={"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in metrics
    assert "http_request_duration_seconds_bucket" in metrics
    assert 'llm_tokens_generated_total{backend="llamacpp"}' in metrics
    assert "llm_active_streams 0.0" in metrics


def test_unhandled_exception_is_a_500_without_internals(tmp_path: Path) -> None:
    from backend.api.deps import get_chat_service

    class Exploding:
        async def complete(self, turn: object) -> None:
            raise RuntimeError("secret internal detail")

    settings = make_settings(tmp_path)
    thread = ServerThread(settings)
    thread.server.config.app.dependency_overrides[get_chat_service] = lambda: Exploding()
    with thread as base_url:
        key = credential_for(base_url, settings)
        response = httpx.post(
            f"{base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
            json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert error["type"] == "server_error"
    assert "secret internal detail" not in response.text


def test_backend_down_gives_503_quickly_in_the_error_shape(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm_backend="ollama", ollama_host=f"http://127.0.0.1:{free_port()}",
                             request_timeout_s=3)
    with ServerThread(settings) as base_url:
        key = credential_for(base_url, settings)
        assert httpx.get(f"{base_url}/ready").status_code == 503
        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as sdk:
            started = time.monotonic()
            for stream in (False, True):
                with pytest.raises(openai.InternalServerError) as caught:
                    sdk.chat.completions.create(
                        model="llama3.1:8b", messages=[{"role": "user", "content": "hi"}], stream=stream)
                assert caught.value.status_code == 503
                assert caught.value.code == "backend_unavailable"
            assert time.monotonic() - started < 2 * settings.request_timeout_s


def test_failure_after_the_stream_started_is_an_error_event_the_sdk_raises(tmp_path: Path) -> None:
    from backend.agents.chat_service import StartedTurn
    from backend.agents.port import AnswerText, RouteDecision
    from backend.api.deps import get_chat_service
    from backend.llm.port import BackendUnavailable

    class DiesMidStream:
        async def start(self, turn: object) -> StartedTurn:
            async def rest():  # type: ignore[no-untyped-def]
                raise BackendUnavailable("backend went away")
                yield

            return StartedTurn(RouteDecision("chat", "forced by the test", 1.0), AnswerText("partial "), rest())

    settings = make_settings(tmp_path)
    thread = ServerThread(settings)
    thread.server.config.app.dependency_overrides[get_chat_service] = lambda: DiesMidStream()
    with thread as base_url:
        key = credential_for(base_url, settings)
        with openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0) as sdk:
            received = []
            with pytest.raises(openai.APIError) as caught:
                for chunk in sdk.chat.completions.create(
                    model="x", messages=[{"role": "user", "content": "hi"}], stream=True
                ):
                    received.append(chunk.choices[0].delta.content)
    assert "partial " in received
    assert "backend went away" in caught.value.message


def test_cors_preflight_allows_any_sdk_header_without_auth(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_origins=["http://ui.test"])
    with ServerThread(settings) as base_url:
        response = httpx.options(
            f"{base_url}/v1/chat/completions",
            headers={
                "Origin": "http://ui.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os, openai-project",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://ui.test"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "x-stainless-os" in allowed and "openai-project" in allowed


def test_backend_that_accepts_but_never_answers_gives_503_within_the_timeout(tmp_path: Path) -> None:
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(silent.accept()[0]) for _ in range(16)], daemon=True).start()
    host = f"http://user:hunter2@127.0.0.1:{silent.getsockname()[1]}"
    settings = make_settings(tmp_path, llm_backend="ollama", ollama_host=host, request_timeout_s=2)
    try:
        with ServerThread(settings) as base_url:
            key = credential_for(base_url, settings)
            started = time.monotonic()
            response = httpx.post(
                f"{base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                json={"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]},
            )
            elapsed = time.monotonic() - started
            ready = httpx.get(f"{base_url}/ready", timeout=30)
    finally:
        silent.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backend_unavailable"
    assert elapsed < 2 * settings.request_timeout_s + 1
    assert ready.status_code == 503
    assert "hunter2" not in response.text and "hunter2" not in ready.text
