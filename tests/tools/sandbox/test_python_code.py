"""python_code: hostile programs are contained and the server (this test process) carries on unaffected.

These tests never skip silently in CI: if no isolation can be set up and CI is set, they fail.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.auth.models import User
from backend.config import Settings, load_settings
from backend.service_errors import TooManyRequests
from backend.storage.layout import DataLayout
from backend.tools.base import Availability, ToolContext, ToolResult
from backend.tools.registry import ToolRegistry
from backend.tools.sandbox.ceiling import find_ceiling, machine_memory_bytes
from backend.tools.sandbox.isolation import (
    PROBE_UID,
    SANDBOX_ENV,
    SANDBOX_UID_BASE,
    Isolation,
    candidates,
    file_system_view,
    probe,
)
from backend.tools.sandbox.python_code import REPO_ROOT, PythonCodeArgs, PythonCodeTool
from backend.tools.sandbox.runner import FreshUids, RunLimits, run_sandboxed
from backend.tools.sandbox.seccomp import AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, BPF_RET_K, SECCOMP_RET_ALLOW, SYSCALLS

SECRET = "s3cret-" + uuid.uuid4().hex


def sandbox_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir, "sandbox_cpu_seconds": 2, "sandbox_wall_seconds": 6, "sandbox_memory_mb": 512,
        "sandbox_max_processes": 4, "sandbox_max_output_bytes": 65536, "sandbox_disk_mb": 8,
    }
    values.update(overrides)
    return load_settings(**values)


def require_available(tool: PythonCodeTool) -> None:
    status = tool.availability()
    if not status.available:
        if os.environ.get("CI"):
            pytest.fail(f"python_code sandbox unavailable in CI: {status.reason}")
        pytest.skip(f"python_code sandbox unavailable here: {status.reason}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A DATA_DIR with a secret key and a user's file, as a running server has."""
    layout = DataLayout(tmp_path / "data")
    layout.root.mkdir()
    layout.secret_key_file.write_text(SECRET, encoding="utf-8")
    layout.secret_key_file.chmod(0o600)
    files = layout.user_files_dir("alice")
    files.mkdir(parents=True)
    (files / "private.txt").write_text(SECRET, encoding="utf-8")
    return layout.root


@pytest.fixture
def tool(data_dir: Path) -> PythonCodeTool:
    tool = PythonCodeTool(sandbox_settings(data_dir))
    require_available(tool)
    return tool


async def run(tool: PythonCodeTool, code: str, data_dir: Path) -> ToolResult:
    context = ToolContext(user=User("alice"), settings=sandbox_settings(data_dir))
    return await tool.run(PythonCodeArgs(code=code), context)


def host_processes() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def namespaced_processes() -> set[int]:
    """Processes living in a nested PID namespace (a sandbox's), whatever other work the machine does."""
    found = set()
    for pid in host_processes():
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("NSpid:") and len(line.split()) > 2:
                        found.add(pid)
        except OSError:
            continue
    return found


def host_processes_with(marker: str) -> list[int]:
    found = []
    for pid in host_processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(pid)
        except OSError:
            continue
    return found


async def processes_after_teardown(marker: str) -> list[int]:
    """Host processes still carrying `marker` once a PID namespace has had up to 5 s to be torn down."""
    deadline = time.monotonic() + 5
    while (found := host_processes_with(marker)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return found


class Ticker:
    """Counts event-loop turns while a sandboxed run goes on: a blocked server would count none."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.ticks += 1


async def run_while_ticking(tool: PythonCodeTool, code: str, data_dir: Path) -> tuple[ToolResult, int, float]:
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    started = time.monotonic()
    try:
        result = await run(tool, code, data_dir)
    finally:
        ticking.cancel()
    return result, ticker.ticks, time.monotonic() - started


async def test_a_program_runs_and_reports_output_status_and_duration(tool: PythonCodeTool, data_dir: Path) -> None:
    result = await run(tool, "import sys\nprint(sum(range(10)))\nprint('warn', file=sys.stderr)\nsys.exit(0)", data_dir)

    assert result.ok, result.text
    assert result.data["stdout"] == "45\n"
    assert result.data["stderr"] == "warn\n"
    assert result.data["exit_status"] == 0
    assert result.data["killed"] is False
    assert 0 < result.data["duration_s"] < 5
    assert result.text.startswith("Exit status 0 after ")
    assert "--- stdout ---\n45\n--- stderr ---\nwarn" in result.text


async def test_an_exception_gives_the_traceback_and_a_failed_result(tool: PythonCodeTool, data_dir: Path) -> None:
    result = await run(tool, "def f():\n    return 1 / 0\n\nf()\n", data_dir)

    assert not result.ok
    assert result.data["exit_status"] == 1
    assert 'File "main.py", line 2, in f' in result.data["stderr"]
    assert result.data["stderr"].rstrip().endswith("ZeroDivisionError: division by zero")
    assert "<string>" not in result.data["stderr"]


async def test_numpy_is_importable_when_the_server_has_it(tool: PythonCodeTool, data_dir: Path) -> None:
    pytest.importorskip("numpy")

    result = await run(tool, "import numpy as np\nprint(int(np.arange(10).sum()))", data_dir)

    assert result.ok, result.text
    assert result.data["stdout"] == "45\n"


async def test_an_infinite_loop_is_stopped_by_the_cpu_limit_while_the_server_keeps_serving(
    tool: PythonCodeTool, data_dir: Path
) -> None:
    result, ticks, elapsed = await run_while_ticking(tool, "while True:\n    pass\n", data_dir)

    assert not result.ok
    assert result.data["signal"] in ("SIGXCPU", "SIGKILL")
    assert elapsed < 6
    assert ticks >= 10


async def test_a_sleeping_program_is_killed_at_the_wall_clock(data_dir: Path) -> None:
    tool = PythonCodeTool(sandbox_settings(data_dir, sandbox_wall_seconds=1.5))
    require_available(tool)

    result, ticks, elapsed = await run_while_ticking(tool, "import time\ntime.sleep(120)\n", data_dir)

    assert result.data["killed"] is True
    assert result.data["kill_reason"] == "wall-clock limit of 1.5 s reached"
    assert result.data["exit_status"] is None
    assert elapsed > 1.4 and elapsed < 4
    assert ticks >= 10


async def test_a_fork_bomb_is_held_to_the_process_limit_and_the_host_can_still_fork(data_dir: Path) -> None:
    tool = PythonCodeTool(sandbox_settings(data_dir, sandbox_max_processes=8, sandbox_wall_seconds=3.5))
    require_available(tool)
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    baseline = namespaced_processes()
    task = asyncio.create_task(run(tool, bomb, data_dir))
    await asyncio.sleep(2.0)
    during = namespaced_processes() - baseline
    spawned = subprocess.run(["true"], timeout=10)
    result = await task
    deadline = time.monotonic() + 5
    while namespaced_processes() - baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # the kernel tears a PID namespace down asynchronously

    assert spawned.returncode == 0
    assert 8 <= len(during) <= 8 + 2  # the limit reached, plus the namespace's init
    assert not result.ok
    assert namespaced_processes() - baseline == set()


async def test_a_memory_bomb_fails_inside_the_sandbox(tool: PythonCodeTool, data_dir: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"

    result = await run(tool, code, data_dir)

    assert not result.ok
    assert result.data["stderr"].rstrip().endswith("MemoryError")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: the server did not grow


async def test_data_dir_the_secret_key_and_the_repository_are_invisible(tool: PythonCodeTool, data_dir: Path) -> None:
    layout = DataLayout(data_dir)
    code = f"""
import os
for path in [{str(layout.secret_key_file)!r}, {str(layout.user_files_dir('alice') / 'private.txt')!r},
             {str(data_dir)!r}, {str(REPO_ROOT)!r}, {str(REPO_ROOT / 'backend' / 'config.py')!r}]:
    try:
        with open(path) as handle:
            print('READ', path, handle.read()[:40])
    except OSError as error:
        print('DENIED', path, type(error).__name__)
candidates = [f'/proc/{{pid}}/{{name}}' for pid in os.listdir('/proc') if pid.isdigit()
              for name in ('environ', 'cmdline')]
for top in ('/etc', '/sandbox', '/tmp', '/dev'):
    for folder, _, names in os.walk(top):
        candidates += [os.path.join(folder, name) for name in names]
found = []
for path in candidates:
    try:
        if path.startswith('/proc/') or os.path.isfile(path):
            with open(path, 'rb') as handle:
                if bytes.fromhex({SECRET.encode().hex()!r}) in handle.read(1 << 20):
                    found.append(path)
    except OSError:
        pass
print('FOUND', found, len(candidates) > 5)
print('ENV', sorted(os.environ))
"""
    result = await run(tool, code, data_dir)

    assert result.ok, result.text
    lines = result.data["stdout"].splitlines()
    assert not [line for line in lines if line.startswith("READ")]
    assert len([line for line in lines if line.startswith("DENIED")]) == 5
    assert "FOUND [] True" in lines
    assert SECRET not in result.data["stdout"]
    env = next(line for line in lines if line.startswith("ENV"))
    assert set(eval(env[4:])) <= set(SANDBOX_ENV) | {"PWD"}  # eval of our own program's printed list


async def test_writes_outside_the_scratch_folder_fail_and_the_scratch_folder_vanishes(
    tool: PythonCodeTool, data_dir: Path
) -> None:
    host_tmp = Path(tempfile.gettempdir())
    refused = ["/usr/evil.txt", "/etc/passwd", "/evil.txt", "/opt/evil.txt", str(data_dir / "evil.txt"),
               str(REPO_ROOT / "evil.txt")]
    scratch_only = f"/tmp/sandbox-evil-{uuid.uuid4().hex}.txt"  # /tmp inside is the scratch folder
    code = f"""
import os
for path in {[*refused, scratch_only]!r}:
    try:
        with open(path, 'w') as handle:
            handle.write('x')
        print('WROTE', path)
    except OSError as error:
        print('REFUSED', path, type(error).__name__)
with open('scratch.txt', 'w') as handle:
    handle.write('kept only for this run')
print('SCRATCH', os.getcwd(), open('scratch.txt').read())
"""
    passwd = Path("/etc/passwd").read_bytes()
    folders_before = set(host_tmp.glob("sandbox-run-*"))

    result = await run(tool, code, data_dir)

    assert result.ok, result.text
    lines = result.data["stdout"].splitlines()
    assert [line.split()[:2] for line in lines[: len(refused)]] == [["REFUSED", path] for path in refused]
    assert lines[len(refused)] == f"WROTE {scratch_only}"
    assert lines[-1] == "SCRATCH /sandbox kept only for this run"
    for path in [*refused[2:], scratch_only, "/usr/evil.txt"]:
        assert not Path(path).exists()
    assert Path("/etc/passwd").read_bytes() == passwd
    assert set(host_tmp.glob("sandbox-run-*")) == folders_before


async def test_filling_the_scratch_folder_stops_at_its_size(tool: PythonCodeTool, data_dir: Path) -> None:
    code = "with open('big.bin', 'wb') as handle:\n    while True:\n        handle.write(b'x' * 1048576)\n"

    result = await run(tool, code, data_dir)

    assert not result.ok
    assert "File too large" in result.data["stderr"] or "No space left" in result.data["stderr"]


async def test_no_network_not_even_the_servers_own_port(tool: PythonCodeTool, data_dir: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = f"""
import socket
for host, port in [('127.0.0.1', {port}), ('1.1.1.1', 80), ('10.0.0.1', 80)]:
    try:
        socket.create_connection((host, port), timeout=2).close()
        print('CONNECTED', host)
    except OSError as error:
        print('BLOCKED', host, type(error).__name__)
print('INTERFACES', [name for _, name in socket.if_nameindex()])
"""
        listener.settimeout(0.1)
        result = await run(tool, code, data_dir)
        with pytest.raises(TimeoutError):
            listener.accept()

    assert result.ok, result.text
    out = result.data["stdout"]
    assert "CONNECTED" not in out
    assert out.count("BLOCKED") == 3
    assert "INTERFACES ['lo']" in out or "INTERFACES []" in out


async def test_a_spawned_subprocess_is_confined_and_dies_with_the_run(tool: PythonCodeTool, data_dir: Path) -> None:
    marker = f"detached-{uuid.uuid4().hex}"
    code = f"""
import subprocess, sys, time
print(subprocess.run(['ls', {str(data_dir)!r}], capture_output=True, text=True).returncode)
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}], start_new_session=True)
time.sleep(0.5)
print('spawned', child.poll() is None)
"""
    result = await run(tool, code, data_dir)

    assert result.ok, result.text
    assert result.data["stdout"] == "2\nspawned True\n"  # ls: no such folder in the sandbox
    assert await processes_after_teardown(marker) == []


async def test_printing_100_mb_is_cut_at_the_cap_without_buffering_it(tool: PythonCodeTool, data_dir: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    result, _, elapsed = await run_while_ticking(
        tool, "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)\n", data_dir
    )

    assert not result.ok
    assert result.data["stdout_truncated"] is True
    assert result.data["kill_reason"] == "output exceeded 65536 bytes"
    assert len(result.data["stdout"]) == 65536
    assert elapsed < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024


async def test_a_registry_timeout_shorter_than_the_run_still_kills_the_program(data_dir: Path) -> None:
    tool = PythonCodeTool(sandbox_settings(data_dir, sandbox_wall_seconds=60))
    require_available(tool)
    registry = ToolRegistry(timeout_s=1.0)
    registry.register(tool)
    marker = f"cancelled-{uuid.uuid4().hex}"
    context = ToolContext(user=User("alice"), settings=sandbox_settings(data_dir))

    code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])"
    invocation = asyncio.create_task(registry.invoke("python_code", {"code": code}, context))
    seen: list[int] = []
    while not seen and not invocation.done():
        await asyncio.sleep(0.05)
        seen = host_processes_with(marker)
    result = await invocation

    assert seen, "the sandboxed sleeper should have been visible from the host while it ran"
    assert result.text == "Tool 'python_code' did not finish within 1 s and was stopped."
    assert await processes_after_teardown(marker) == []


def test_the_tool_fails_closed_when_the_sandbox_would_show_data_dir() -> None:
    """Every mode this machine offers is tried and refused for showing DATA_DIR; CI must offer bubblewrap."""
    visible = Path("/usr/share")  # bound read-only into every sandbox, so a DATA_DIR here would leak
    offered = candidates(file_system_view())
    working = [isolation.mode for isolation in offered if probe(isolation, []) is None]
    if os.environ.get("CI"):
        assert shutil.which("bwrap"), "CI must install bubblewrap (see .ci/run)"
        assert [mode for mode in working if mode.startswith("bwrap-")], f"bubblewrap does not work in CI: {offered}"

    status = PythonCodeTool(sandbox_settings(visible)).availability()

    assert not status.available
    if not offered:
        assert status.reason == (
            "no sandbox can be set up: neither bubblewrap (`bwrap`) nor util-linux `unshare` as root is available"
        )
        return
    prefix = "no sandbox can be set up: no isolation works here: "
    assert status.reason.startswith(prefix), status.reason
    failures = dict(part.split(": ", 1) for part in status.reason.removeprefix(prefix).split("; "))
    assert list(failures) == [isolation.mode for isolation in offered]
    for mode in working:  # a mode that isolates refuses precisely because DATA_DIR would be visible
        assert failures[mode].startswith("PROBE-FAIL: ") and f"sees {visible}" in failures[mode], failures[mode]


async def test_python_code_runs_under_bubblewrap_wherever_it_works(data_dir: Path) -> None:
    """bubblewrap is preferred over the hand-built `unshare` jail; CI must have it working."""
    offered = candidates(file_system_view())
    bwrap_works = any(probe(isolation, []) is None for isolation in offered if isolation.mode.startswith("bwrap-"))
    if os.environ.get("CI"):
        assert bwrap_works, f"bubblewrap must be installed and usable in CI: {offered}"
    tool = PythonCodeTool(sandbox_settings(data_dir))

    if not tool.availability().available:
        assert not bwrap_works
        assert tool.availability().reason.startswith("no sandbox can be set up: ")
        return
    result = await run(tool, "print('inside')", data_dir)

    assert result.ok and result.data["stdout"] == "inside\n", result.text
    if bwrap_works:
        assert result.data["isolation"] == ("bwrap-root" if os.geteuid() == 0 else "bwrap-userns")
    else:
        assert result.data["isolation"] == "unshare-root"


@pytest.fixture
def every_isolation() -> Iterator[list[Isolation]]:
    """Every isolation mode that works on this machine, including the user-namespace one when root."""
    view = file_system_view()
    modes = [
        Isolation("bwrap-root", view, bwrap=shutil.which("bwrap"), setpriv=shutil.which("setpriv")),
        Isolation("bwrap-userns", view, bwrap=shutil.which("bwrap")),
        Isolation("unshare-root", view, unshare=shutil.which("unshare")),
    ]
    usable = [
        mode for mode in modes
        if (mode.bwrap or mode.unshare) and (mode.mode == "bwrap-userns" or os.geteuid() == 0)
        and (mode.mode != "bwrap-root" or mode.setpriv)
        and probe(mode, ["/work", "/home"]) is None
    ]
    if not usable:
        if os.environ.get("CI"):
            pytest.fail("no sandbox isolation mode works in CI")
        pytest.skip("no sandbox isolation mode works here")
    yield usable


async def test_every_working_isolation_mode_hides_the_host_and_the_network(
    every_isolation: list[Isolation], data_dir: Path
) -> None:
    code = f"""
import os, socket
print(os.path.exists({str(data_dir)!r}), os.path.exists({str(REPO_ROOT)!r}))
print(os.getuid() != 0, [n for _, n in socket.if_nameindex() if n != 'lo'])
try:
    open('/usr/evil', 'w')
except OSError as error:
    print(type(error).__name__)
print(sorted(os.listdir('/')))
print(sorted(os.environ))
"""
    limits = RunLimits(cpu_seconds=2, memory_bytes=256 * 2**20, max_processes=4, scratch_bytes=2**20,
                       wall_seconds=10, max_output_bytes=4096)
    for isolation in every_isolation:
        uid = 2_000_000_003 if isolation.runs_as_root() else 65534
        report = await run_sandboxed(isolation, code, limits, uid)
        assert report.succeeded, (isolation.mode, report.stderr)
        lines = report.stdout.splitlines()
        assert lines[:3] == ["False False", "True []", "OSError"], isolation.mode
        assert set(eval(lines[3])) <= {  # eval of the listing our own program printed
            "bin", "dev", "etc", "lib", "lib64", "opt", "proc", "root", "sandbox", "sbin", "tmp", "usr"
        }, isolation.mode
        assert set(eval(lines[4])) <= set(SANDBOX_ENV) | {"PWD"}, isolation.mode  # our own program's output


# --- issue 12: no state survives a run, no new namespaces, a ceiling per run, a fair share per user

SYSCALL_NUMBERS = SYSCALLS[AUDIT_ARCH_X86_64 if os.uname().machine == "x86_64" else AUDIT_ARCH_AARCH64]
SMALL_LIMITS = RunLimits(cpu_seconds=2, memory_bytes=256 * 2**20, max_processes=4, scratch_bytes=2**20,
                         wall_seconds=6, max_output_bytes=8192)
ERRNO_OF = """import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(*args):
    return 'OK' if libc.syscall(*args) != -1 else errno.errorcode[ctypes.get_errno()]
"""


async def test_a_key_one_user_leaves_in_the_kernel_keyring_is_gone_for_the_next_user_even_on_the_same_uid(
    every_isolation: list[Isolation],
) -> None:
    """User A stores a key and SysV objects; user B, forced onto the very same uid, finds none of them."""
    numbers = SYSCALL_NUMBERS
    writer = ERRNO_OF + f"""
print('add_key', call({numbers['add_key']}, b'user', b'left-by-a', b'secret-of-a', 11, -4))  # user keyring
print('session', call({numbers['add_key']}, b'user', b'left-by-a', b'secret-of-a', 11, -3))  # session keyring
print('semget', 'OK' if libc.semget(0x5a5a, 1, 0o1666) != -1 else errno.errorcode[ctypes.get_errno()])
print('msgget', 'OK' if libc.msgget(0x5a5a, 0o1666) != -1 else errno.errorcode[ctypes.get_errno()])
print('shmget', call({numbers['shmget']}, 0x5a5a, 4096, 0o1666))
print('mq_open', 'OK' if libc.mq_open(b'/left-by-a', 0o100 | 2, 0o666, None) != -1 else 'refused')
try:
    open('/dev/shm/left-by-a', 'w').write('secret-of-a')
    print('devshm OK')
except OSError:
    print('devshm refused')
open('/tmp/left-by-a', 'w').write('secret-of-a')
print('uid', os.getuid())
"""
    reader = ERRNO_OF + f"""
buffer = ctypes.create_string_buffer(64)
print('search', call({numbers['keyctl']}, 10, -4, b'user', b'left-by-a', 0))  # KEYCTL_SEARCH, user keyring
print('read', call({numbers['keyctl']}, 11, -4, buffer, 64), buffer.value)  # KEYCTL_READ of the keyring
print('semget', 'OK' if libc.semget(0x5a5a, 0, 0) != -1 else errno.errorcode[ctypes.get_errno()])
print('msgget', 'OK' if libc.msgget(0x5a5a, 0) != -1 else errno.errorcode[ctypes.get_errno()])
print('files', os.path.exists('/tmp/left-by-a'), os.path.exists('/dev/shm/left-by-a'))
print('uid', os.getuid())
"""
    for isolation in every_isolation:
        uid = 2_000_000_007 if isolation.runs_as_root() else 65534
        first = await run_sandboxed(isolation, writer, SMALL_LIMITS, uid)
        second = await run_sandboxed(isolation, reader, SMALL_LIMITS, uid)

        assert first.succeeded and second.succeeded, (isolation.mode, first.stderr, second.stderr)
        assert first.stdout.splitlines() == [
            "add_key EPERM", "session EPERM", "semget OK", "msgget OK", "shmget EPERM", "mq_open refused",
            "devshm refused", f"uid {uid}",
        ], isolation.mode
        assert second.stdout.splitlines() == [
            "search EPERM", "read EPERM b''", "semget ENOENT", "msgget ENOENT", "files False False", f"uid {uid}",
        ], isolation.mode  # the System V objects of A died with A's IPC namespace
        assert "secret-of-a" not in second.stdout


async def test_every_run_gets_a_uid_never_used_before(tool: PythonCodeTool, data_dir: Path) -> None:
    results = [await run(tool, "import os\nprint(os.getuid(), os.getgid())", data_dir) for _ in range(3)]

    uids = [result.data["stdout"].split() for result in results]
    assert all(result.ok for result in results), [result.text for result in results]
    if tool.availability().reason.startswith("bwrap-userns"):
        assert uids == [["65534", "65534"]] * 3  # each in a user namespace of its own
        return
    assert len({uid for uid, _ in uids}) == 3
    assert all(uid == gid and SANDBOX_UID_BASE <= int(uid) < SANDBOX_UID_BASE + 2**31 for uid, gid in uids)


def test_fresh_uids_do_not_repeat_and_stay_in_their_range() -> None:
    source = FreshUids()

    uids = [source.take() for _ in range(20_000)]

    assert len(set(uids)) == len(uids)
    assert min(uids) >= SANDBOX_UID_BASE and max(uids) < SANDBOX_UID_BASE + 2**31 < 2**32 - 1


async def test_a_run_cannot_create_a_user_namespace_nor_reach_the_keyrings_or_other_kernel_surface(
    every_isolation: list[Isolation],
) -> None:
    numbers = SYSCALL_NUMBERS
    code = ERRNO_OF + f"""
import threading
print('unshare-user', 'OK' if libc.unshare(0x10000000) == 0 else errno.errorcode[ctypes.get_errno()])
print('unshare-net', 'OK' if libc.unshare(0x40000000) == 0 else errno.errorcode[ctypes.get_errno()])
child = libc.syscall({numbers['clone']}, 0x10000000 | 17, 0, 0, 0, 0)  # CLONE_NEWUSER | SIGCHLD
if child == 0:
    os._exit(0)
print('clone-user', 'OK' if child > 0 else errno.errorcode[ctypes.get_errno()])
print('clone3', call({numbers['clone3']}, 0, 0))
for name, args in [('setns', (0, 0)), ('keyctl', (0, -4, 0)), ('add_key', (b'user', b'k', b'v', 1, -4)),
                   ('request_key', (b'user', b'k', None, 0)), ('bpf', (0, 0, 0)),
                   ('perf_event_open', (0, 0, -1, -1, 0)), ('userfaultfd', (0,)), ('ptrace', (16, 1, 0, 0)),
                   ('mount', (b'none', b'/sandbox', b'tmpfs', 0, 0)), ('memfd_create', (b'x', 0)),
                   ('io_uring_setup', (1, 0)), ('init_module', (0, 0, b'')), ('kexec_load', (0, 0, 0, 0))]:
    print(name, call({numbers}[name], *args))
seen = []
thread = threading.Thread(target=seen.append, args=(1,))
thread.start()
thread.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
print('thread', seen, 'fork', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print('seccomp', open('/proc/self/status').read().split('Seccomp:')[1].split()[0])
"""
    expected = [
        "unshare-user EPERM", "unshare-net EPERM", "clone-user EPERM", "clone3 ENOSYS",
        "setns EPERM", "keyctl EPERM", "add_key EPERM", "request_key EPERM", "bpf EPERM", "perf_event_open EPERM",
        "userfaultfd EPERM", "ptrace EPERM", "mount EPERM", "memfd_create EPERM", "io_uring_setup EPERM",
        "init_module EPERM", "kexec_load EPERM", "thread [1] fork 7", "seccomp 2",
    ]
    for isolation in every_isolation:
        started = time.monotonic()
        uid = 2_000_000_011 if isolation.runs_as_root() else 65534
        report = await run_sandboxed(isolation, code, SMALL_LIMITS, uid)

        assert report.succeeded, (isolation.mode, report.stderr)
        assert report.stdout.splitlines() == expected, isolation.mode
        assert time.monotonic() - started < 5


async def test_the_probe_refuses_a_sandbox_whose_filter_lets_namespaces_and_keyrings_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offered = [isolation for isolation in candidates(file_system_view()) if probe(isolation, []) is None]
    if not offered:
        if os.environ.get("CI"):
            pytest.fail("no sandbox isolation mode works in CI")
        pytest.skip("no sandbox isolation mode works here")
    allow_everything = struct.pack("<HBBI", BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)
    monkeypatch.setattr("backend.tools.sandbox.isolation.filter_program", lambda: allow_everything)

    failures = {isolation.mode: probe(isolation, []) for isolation in offered}

    for mode, failure in failures.items():
        assert failure is not None and failure.startswith(f"{mode}: PROBE-FAIL: "), failure
        assert "can add kernel keys" in failure and "can reach the kernel keyrings" in failure
    if "bwrap-root" in failures:  # a real unprivileged uid, no chroot: only the filter stops a user namespace
        assert "can create user namespaces" in str(failures["bwrap-root"])
    if "bwrap-userns" in failures:  # --disable-userns answers ENOSPC, not the filter's EPERM
        assert "user namespaces are not refused by the seccomp filter" in str(failures["bwrap-userns"])


def run_rss_by_uid(baseline: set[int]) -> dict[int, int]:
    """Resident memory (bytes) of every sandboxed process started since `baseline`, summed per real uid."""
    totals: dict[int, int] = {}
    for pid in namespaced_processes() - baseline:
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        uid = int(fields["Uid"].split()[0])
        if uid != 0 and "VmRSS" in fields:  # uid 0: bubblewrap's own init, outside the run's limits
            totals[uid] = totals.get(uid, 0) + int(fields["VmRSS"].split()[0]) * 1024
    return totals


MEMORY_HOG = """
import os, time
for _ in range(32):  # more processes than allowed: the extra forks fail
    try:
        if os.fork() == 0:
            break
    except OSError:
        break
chunks = []
try:
    while True:
        chunks.append(b'x' * (1 << 22))  # written, so resident
except MemoryError:
    pass
time.sleep(30)
"""


async def test_runs_forking_memory_hungry_processes_stay_under_the_per_run_ceiling(data_dir: Path) -> None:
    """Two users' runs, each forking to its process limit and filling memory: each run's total stays
    within SANDBOX_MEMORY_MB until the wall clock ends it, and the server does not grow."""
    memory_mb = 256
    settings = sandbox_settings(data_dir, sandbox_memory_mb=memory_mb, sandbox_max_processes=4, sandbox_wall_seconds=3)
    tool = PythonCodeTool(settings)
    require_available(tool)
    baseline = namespaced_processes()
    server_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peaks: dict[int, int] = {}
    started = time.monotonic()
    runs = asyncio.gather(*[
        tool.run(PythonCodeArgs(code=MEMORY_HOG), ToolContext(user=User(name), settings=settings))
        for name in ("alice", "bob")
    ])
    task = asyncio.ensure_future(runs)
    while not task.done():
        for uid, total in run_rss_by_uid(baseline).items():
            if uid != PROBE_UID:  # another server's start-up probe on this machine is not one of these runs
                peaks[uid] = max(peaks.get(uid, 0), total)
        await asyncio.sleep(0.05)
    results = task.result()
    elapsed = time.monotonic() - started

    assert [result.data["kill_reason"] for result in results] == ["wall-clock limit of 3 s reached"] * 2
    assert elapsed < 6
    assert len(peaks) == 2, peaks  # one uid per run
    for peak in peaks.values():
        assert 100 * 2**20 < peak <= memory_mb * 2**20, f"{peak / 2**20:.0f} MB"  # it tried, and was held
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - server_before < 64 * 1024  # KiB


def test_the_probe_reports_what_bounds_a_run_on_this_host(data_dir: Path) -> None:
    tool = PythonCodeTool(sandbox_settings(data_dir, sandbox_memory_mb=512, sandbox_max_processes=4))
    require_available(tool)
    ceiling = find_ceiling()

    reason = tool.availability().reason

    mode = reason.split("; ")[0]
    assert mode in ("bwrap-root", "bwrap-userns", "unshare-root")
    if ceiling.cgroups is not None:
        assert reason == f"{mode}; per-run cgroup v2: memory.max 520 MB (memory + scratch), pids.max 4"
    else:
        assert reason == (
            f"{mode}; per-process limits ({ceiling.why_not_cgroup}): 4 processes x 128 MB address space "
            "+ 8 MB scratch per run"
        )
        if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
            assert ceiling.why_not_cgroup == "no cgroup v2 hierarchy at /sys/fs/cgroup"


def test_settings_whose_worst_case_exceeds_the_machine_keep_the_tool_off(data_dir: Path) -> None:
    settings = sandbox_settings(data_dir, sandbox_max_runs=256, sandbox_memory_mb=65536, sandbox_disk_mb=64)
    machine_mb = machine_memory_bytes() // 2**20

    status = PythonCodeTool(settings).availability()

    assert status == Availability(False, (
        "no sandbox can be set up: SANDBOX_MAX_RUNS x (SANDBOX_MEMORY_MB + SANDBOX_DISK_MB) = "
        f"{256 * (65536 + 64)} MB exceeds this machine's {machine_mb} MB"
    ))


async def test_a_user_holding_their_share_of_slots_gets_429_while_another_users_run_proceeds(data_dir: Path) -> None:
    settings = sandbox_settings(data_dir, sandbox_max_runs=3, sandbox_max_runs_per_user=2, sandbox_wall_seconds=5)
    tool = PythonCodeTool(settings)
    require_available(tool)
    alice = ToolContext(user=User("alice"), settings=settings)
    bob = ToolContext(user=User("bob"), settings=settings)
    sleeper = PythonCodeArgs(code="import time\ntime.sleep(2)\nprint('done')")
    holding = [asyncio.create_task(tool.run(sleeper, alice)) for _ in range(2)]
    await asyncio.sleep(0.3)

    started = time.monotonic()
    with pytest.raises(TooManyRequests) as refused:
        await tool.run(PythonCodeArgs(code="print('third')"), alice)
    refused_after = time.monotonic() - started
    bobs = await tool.run(PythonCodeArgs(code="print('bob runs')"), bob)
    bob_after = time.monotonic() - started
    held = await asyncio.gather(*holding)

    assert refused.value.status == 429 and refused.value.code == "per_user_limit"
    assert refused.value.headers == {"Retry-After": "2"}
    assert refused.value.message == (
        "You already have 2 python_code run(s) in progress (the limit per user); wait for one to finish and retry."
    )
    assert refused_after < 0.1
    assert bobs.ok and bobs.data["stdout"] == "bob runs\n", bobs.text
    assert bob_after < 1.5  # did not wait for alice's runs
    assert [result.data["stdout"] for result in held] == ["done\n", "done\n"]
    after = await tool.run(PythonCodeArgs(code="print('again')"), alice)  # the share is given back
    assert after.ok and after.data["stdout"] == "again\n"


async def test_when_every_slot_is_busy_a_run_fails_at_once_with_a_plain_reason(data_dir: Path) -> None:
    settings = sandbox_settings(data_dir, sandbox_max_runs=1, sandbox_max_runs_per_user=2)
    tool = PythonCodeTool(settings)
    require_available(tool)
    holding = asyncio.create_task(tool.run(PythonCodeArgs(code="import time\ntime.sleep(1)"), ToolContext(
        user=User("alice"), settings=settings)))
    await asyncio.sleep(0.3)

    result = await tool.run(PythonCodeArgs(code="print(1)"), ToolContext(user=User("bob"), settings=settings))
    await holding

    assert result == ToolResult.failure("every sandbox slot is busy; try again in a moment")
