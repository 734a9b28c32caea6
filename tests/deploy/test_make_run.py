"""`make run` (`run_frontend.py --with-backend`): both servers start, stop together and never outlive each other."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180


@dataclass
class Launched:
    process: subprocess.Popen[str]
    ui_port: int
    api_port: int
    data_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no line with {text!r}; output:\n{self.output()}")

    def api_server_pid(self) -> int:
        """The child `run_backend.py`, found among this process's children."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        for pid in children:
            if b"run_backend.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
        if self.process.args[0] == "make":  # make -> the recipe's python
            for pid in children:
                grandchildren = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                for grandchild in grandchildren:
                    if b"run_backend.py" in Path(f"/proc/{grandchild}/cmdline").read_bytes():
                        return int(grandchild)
        raise AssertionError(f"no run_backend.py child among {children}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _is_running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


Launch = Callable[[list[str]], Launched]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[Launched] = []

    def start(command: list[str]) -> Launched:
        ui_port, api_port = free_port(), free_port()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("SERVER_", "FRONTEND_", "LLM_", "DATA_DIR", "ADMIN_"))}
        env.update(SERVER_HOST="127.0.0.1", SERVER_PORT=str(api_port), FRONTEND_PORT=str(ui_port),
                   LLM_BACKEND="llamacpp", DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
        # Its own session, so the test can signal the whole group as a terminal's Ctrl-C does.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        launched = Launched(process, ui_port, api_port, tmp_path / "data")
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: launched.lines.extend(iter(stdout.readline, "")), daemon=True).start()
        started.append(launched)
        return launched

    yield start
    for launched in started:
        if launched.process.poll() is None:
            os.killpg(launched.process.pid, signal.SIGKILL)
            launched.process.wait()


def _with_backend() -> list[str]:
    return [sys.executable, str(ROOT / "run_frontend.py"), "--with-backend"]


def _assert_both_serve(launched: Launched) -> None:
    launched.wait_for_line("Stop both servers with Ctrl-C")
    assert httpx.get(f"{launched.ui}/", timeout=10).status_code == 200
    assert httpx.get(f"{launched.ui}/health", timeout=10).json()["status"] == "ok"


def test_it_prints_the_address_to_open_and_where_the_first_password_is(launch: Launch) -> None:
    launched = launch(_with_backend())
    _assert_both_serve(launched)
    assert f"Open http://127.0.0.1:{launched.ui_port} in a browser." in launched.output()
    password_file = launched.data_dir / "initial_admin_password"
    assert f"First sign-in: user 'admin', password in {password_file}" in launched.output()
    password = password_file.read_text().strip()
    login = httpx.post(f"{launched.ui}/api/auth/login", json={"username": "admin", "password": password}, timeout=30)
    assert login.status_code == 200


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_both_servers_with_exit_0_and_frees_both_ports(
    launch: Launch, stop_signal: signal.Signals
) -> None:
    launched = launch(_with_backend())
    _assert_both_serve(launched)
    api_pid = launched.api_server_pid()

    if stop_signal == signal.SIGINT:
        os.killpg(launched.process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    else:
        launched.process.send_signal(signal.SIGTERM)  # a service manager: the main process only

    assert launched.process.wait(timeout=60) == 0, launched.output()
    assert not _is_running(api_pid)
    assert _port_is_free(launched.ui_port)
    assert _port_is_free(launched.api_port)
    assert "Traceback" not in launched.output()


def test_when_the_api_server_dies_the_ui_says_so_and_stops(launch: Launch) -> None:
    launched = launch(_with_backend())
    _assert_both_serve(launched)

    os.kill(launched.api_server_pid(), signal.SIGKILL)

    assert launched.process.wait(timeout=60) == 1
    assert "The API server stopped (exit code -9); stopping the web UI." in launched.output()
    assert _port_is_free(launched.ui_port)


def test_make_run_starts_both_and_sigterm_to_make_stops_both(launch: Launch) -> None:
    launched = launch(["make", "--no-print-directory", "run"])
    _assert_both_serve(launched)
    api_pid = launched.api_server_pid()

    launched.process.send_signal(signal.SIGTERM)

    # GNU make passes SIGTERM on to its recipe, waits for it, then ends itself by the same signal.
    assert launched.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Traceback" not in launched.output()
    assert not _is_running(api_pid)
    assert _port_is_free(launched.ui_port)
    assert _port_is_free(launched.api_port)
