"""A real `uvicorn --workers 4` on one DATA_DIR: concurrent appends to one conversation lose no message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.account_helpers import bearer, login
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "multiworker-admin-pw"
WORKERS = 4


@pytest.fixture
def four_workers(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SECRET_", "ADMIN_", "OPENAI_", "OLLAMA_", "TAVILY_"))}
    env.update({
        "PYTHONPATH": str(REPO), "DATA_DIR": str(tmp_path / "data"), "LLM_BACKEND": "llamacpp",
        "LLAMACPP_N_CTX": "512", "LLAMACPP_THREADS": "1", "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "RATE_LIMIT_RPM": "0", "LOG_LEVEL": "WARNING",
        # One user sends every request here: their share of the model is the whole queue (fairness has its own tests).
        "LLAMACPP_MAX_QUEUE_PER_USER": "32",
    })
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app_from_env", "--factory",
         "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "uvicorn.log").read_text()
            all_started = (tmp_path / "uvicorn.log").read_text().count("Application startup complete") == WORKERS
            try:
                if all_started and httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        else:
            raise AssertionError("uvicorn workers did not start")
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def test_four_workers_appending_to_one_conversation_lose_no_message(four_workers: str, tmp_path: Path) -> None:
    base_url = four_workers
    # Every worker created the same single admin and secret key, so a token from one works on all.
    token = login(base_url, "admin", ADMIN_PASSWORD)
    model = httpx.get(f"{base_url}/v1/models", headers=bearer(token), timeout=30).json()["data"][0]["id"]
    users = httpx.get(f"{base_url}/api/admin/users", headers=bearer(token), timeout=30).json()
    assert [user["username"] for user in users["data"]] == ["admin"]

    def ask(index: int) -> int:
        response = httpx.post(f"{base_url}/v1/chat/completions", headers=bearer(token), timeout=120, json={
            "model": model, "max_tokens": 2, "session_id": "shared-by-workers",
            "messages": [{"role": "user", "content": f"message {index}"}],
            "stream": index % 2 == 1,
        })
        if index % 2 == 1:
            assert "data: [DONE]" in response.text
        return response.status_code

    count = 24
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(ask, range(count)))
    assert statuses == [200] * count

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        session = httpx.get(f"{base_url}/api/sessions/shared-by-workers", headers=bearer(token), timeout=30).json()
        if len(session["messages"]) >= 2 * count:
            break
        time.sleep(0.2)
    messages = session["messages"]
    assert len(messages) == 2 * count
    assert sorted(m["content"] for m in messages if m["role"] == "user") == sorted(f"message {i}" for i in range(count))
    assert sum(1 for m in messages if m["role"] == "assistant") == count
    assert list((tmp_path / "data" / "conversations").glob("*.corrupt-*")) == []
