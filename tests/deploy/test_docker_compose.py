"""docker-compose.yml, checked by a real Compose client (`docker compose config` or Debian's `docker-compose`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


COMPOSE = _compose_command()
if COMPOSE is None and os.environ.get("CI"):
    raise RuntimeError("CI must install a Compose client (.ci/run installs docker-compose)")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="no Compose client here (CI installs docker-compose)")


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as Compose itself reads it: validated against its schema, variables filled in."""
    assert COMPOSE is not None
    env = {key: value for key, value in os.environ.items() if key not in ("LLM_BACKEND", "RECORD_ALL_REQUESTS")}
    result = subprocess.run([*COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "config"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_compose_runs_ollama_the_api_server_and_nginx_each_with_a_health_check(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == {"ollama", "backend", "nginx"}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    # Each starts once what it talks to answers.
    assert services["backend"]["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["backend"]["condition"] == "service_healthy"


def test_compose_keeps_data_and_ollamas_models_in_volumes(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    backend_volumes = services["backend"]["volumes"]
    data_dir = services["backend"]["environment"]["DATA_DIR"]
    assert any(_target(volume) == data_dir for volume in backend_volumes)
    assert any(_target(volume) == "/root/.ollama" for volume in services["ollama"]["volumes"])
    assert "ollama" in resolved["volumes"]


def test_compose_defaults_to_ollama_and_records_only_named_sessions(resolved: dict[str, Any]) -> None:
    environment = resolved["services"]["backend"]["environment"]
    assert environment["LLM_BACKEND"] == "ollama"
    assert environment["OLLAMA_HOST"] == "http://ollama:11434"
    assert environment["RECORD_ALL_REQUESTS"] == "false"


def test_the_api_server_trusts_forwarded_addresses_from_nginx_alone(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    nginx_address = services["nginx"]["networks"]["app"]["ipv4_address"]
    assert services["backend"]["environment"]["FORWARDED_ALLOW_IPS"] == nginx_address
    # Only nginx is published; the API server and Ollama are reachable inside the network only.
    assert "ports" not in services["backend"] and "ports" not in services["ollama"]
    assert services["nginx"]["ports"]


def test_nginx_bounds_bodies_as_the_api_server_does() -> None:
    config = (ROOT / "nginx.conf").read_text()
    assert f"client_max_body_size {Settings.model_fields['max_request_mb'].default}m;" in config
    assert f"client_max_body_size {Settings.model_fields['max_upload_mb'].default}m;" in config


def _target(volume: Any) -> str:
    return str(volume["target"] if isinstance(volume, dict) else volume.split(":")[1])
