"""The README's shell and Python examples, run as pasted against a real server started as `make run` starts it.

The only change made to them is the port (a free one instead of 8000). They run in order in one shell, in a
folder where the server keeps its `data/`, as a reader would in the project folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(sh|python)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SET_UP_COMMANDS = ("make run", "make test")
"""The two commands' block: `make run` is tested in tests/deploy/test_make_run.py, `make test` is this suite."""

if os.environ.get("CI") and not (shutil.which("curl") and shutil.which("jq")):
    raise RuntimeError("CI must install curl and jq (.ci/run does): the README's examples use them")
pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")


def readme_examples() -> list[tuple[str, str]]:
    return [(language, code) for language, code in FENCE.findall(README)
            if not all(command in code for command in SET_UP_COMMANDS)]


def as_one_script(examples: list[tuple[str, str]], port: int) -> str:
    """Shell blocks as they are; Python blocks run by the venv's Python, which has the SDK (as the README says)."""
    parts = []
    for language, code in examples:
        code = code.replace("localhost:8000", f"localhost:{port}")
        if language == "sh":
            parts.append(code)
        else:
            parts.append(f"{sys.executable} - <<'PYTHON_EXAMPLE'\n{code}PYTHON_EXAMPLE\n")
        parts.append("echo '--- example done'\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    folder = tmp_path_factory.mktemp("project")
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SERVER_", "LLM_", "DATA_DIR", "ADMIN_", "RECORD_"))}
    env.update(LLM_BACKEND="llamacpp", SERVER_PORT=str(port))
    process = subprocess.Popen([sys.executable, str(ROOT / "run_backend.py")], cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "run_backend.py exited"
            assert time.monotonic() < deadline, "run_backend.py did not answer within 180 s"
            time.sleep(0.2)
        yield folder, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_readme_has_the_examples_a_new_user_needs() -> None:
    code = "\n".join(code for _, code in readme_examples())
    assert "data/initial_admin_password" in code  # where the first password is
    assert "curl -N" in code  # a streamed answer shown as it arrives
    assert 'os.environ["KEY"]' in code  # the Python SDK example does not use a shell variable as a name
    assert "Ctrl-C stops both servers" in README


def test_every_readme_example_runs_as_pasted(api_server: tuple[Path, int]) -> None:
    folder, port = api_server
    examples = readme_examples()
    assert [language for language, _ in examples].count("python") >= 2

    result = subprocess.run(["bash", "-euo", "pipefail", "-c", as_one_script(examples, port)], cwd=folder,
                            capture_output=True, text=True, timeout=600)

    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}"
    assert output.count("--- example done") == len(examples)
    assert '"error"' not in output, output
    assert "SmolLM2-135M-Instruct.Q4_1" in output  # the models list
    assert "data: [DONE]" in output  # the streamed curl
    assert '"ok":true' in output.replace(" ", "")  # the tool and retrieval invocations
    assert '"deleted":true' in output.replace(" ", "")  # the document removed at the end
    assert "384" in output  # the embedding's dimensions
