"""Builds llama.cpp's `llama-server` from pinned source, once, at install (`python -m backend.llm.llama_server_build`).

The source is the llama.cpp tree (MIT) that the sdist of llama-cpp-python (MIT) vendors at the pinned
version, checked against its sha256, so CI and every machine compile the same code and nothing prebuilt
is downloaded. Only the `llama-server` target is built, statically linked, without the web UI (its
default build would fetch a prebuilt UI from the internet) and without OpenSSL (it serves a private
socket). The result is cached per version and build flags under the user's cache directory, so a second
install, or a fresh clone on the same machine, copies it in a second; it is installed beside the
venv's Python, where `LlamaServerBackend` looks for it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SOURCE_PACKAGE = "llama-cpp-python"
SOURCE_VERSION = "0.3.36"
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
BINARY_NAME = "llama-server"

BASE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
)


def build_flags() -> list[str]:
    """The fixed flags, then the user's `CMAKE_ARGS` (the Makefile's default: `-DGGML_NATIVE=OFF`), which win."""
    return [*BASE_FLAGS, *shlex.split(os.environ.get("CMAKE_ARGS", ""))]


def installed_binary() -> Path:
    """Where the install puts the binary: beside the venv's Python, like a console script."""
    return Path(sys.prefix) / "bin" / BINARY_NAME


def cached_binary(flags: list[str]) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256("\0".join([SOURCE_VERSION, SOURCE_SHA256, *flags]).encode()).hexdigest()[:16]
    return base / "local-agentic-llm-server" / BINARY_NAME / f"{SOURCE_VERSION}-{key}" / BINARY_NAME


def _cmake() -> str:
    """The venv's cmake (from requirements.txt), else the system's."""
    found = shutil.which("cmake", path=str(Path(sys.prefix) / "bin")) or shutil.which("cmake")
    if found is None:
        raise SystemExit("cmake is needed to build llama-server: `pip install cmake` or install it with your system")
    return found


def _source_archive(workdir: Path) -> Path:
    """The pinned sdist through pip (so its index settings and cache apply), checked against its hash."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"{SOURCE_PACKAGE}=={SOURCE_VERSION}", "--dest", str(workdir)],
        check=True,
    )
    (archive,) = workdir.glob("*.tar.gz")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{archive.name}: sha256 {digest}, expected {SOURCE_SHA256}; refusing to build it")
    return archive


def _llama_cpp_tree(archive: Path, workdir: Path) -> Path:
    with tarfile.open(archive) as sdist:
        sdist.extractall(workdir, filter="data")
    (tree,) = workdir.glob("*/vendor/llama.cpp")
    return tree


def build(flags: list[str], destination: Path) -> None:
    jobs = str(os.cpu_count() or 2)
    with tempfile.TemporaryDirectory(prefix="llama-server-build-", dir=destination.parent) as scratch:
        workdir = Path(scratch)
        tree = _llama_cpp_tree(_source_archive(workdir), workdir)
        build_dir = workdir / "build"
        cmake = _cmake()
        subprocess.run([cmake, "-S", str(tree), "-B", str(build_dir), *flags], check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--target", BINARY_NAME, "-j", jobs], check=True)
        _copy_atomically(build_dir / "bin" / BINARY_NAME, destination)


def _copy_atomically(source: Path, destination: Path) -> None:
    """A half-copied binary is never found under the final name (a build interrupted, two installs at once)."""
    partial = destination.with_name(f".{destination.name}.{os.getpid()}")
    shutil.copy2(source, partial)
    partial.chmod(0o755)
    os.replace(partial, destination)


def main() -> None:
    flags = build_flags()
    cached = cached_binary(flags)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        print(f"Building {BINARY_NAME} from llama.cpp in {SOURCE_PACKAGE} {SOURCE_VERSION} "
              f"(once per machine; about 5-12 minutes on 2 cores)", flush=True)
        started = time.monotonic()
        build(flags, cached)
        print(f"{BINARY_NAME} built in {(time.monotonic() - started) / 60:.1f} min, cached at {cached}", flush=True)
    target = installed_binary()
    _copy_atomically(cached, target)
    print(f"{BINARY_NAME} installed at {target}", flush=True)


if __name__ == "__main__":
    main()
