"""The JWT secret: from SECRET_KEY, else generated once into DATA_DIR/secret_key with mode 0600."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from backend.auth.secret_key import SecretKeyError, load_or_create_secret_key
from backend.storage.json_store import JsonStore


def test_generated_key_is_kept_with_mode_0600_and_reused(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "secret_key"
    first = load_or_create_secret_key(None, path, store)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret_key(None, path, JsonStore(tmp_path)) == first


def test_configured_secret_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    configured = "k" * 40
    assert load_or_create_secret_key(configured, tmp_path / "secret_key", JsonStore(tmp_path)) == configured
    assert not (tmp_path / "secret_key").exists()


def test_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("z" * 48)
    path.chmod(0o644)
    assert load_or_create_secret_key(None, path, JsonStore(tmp_path)) == "z" * 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_truncated_key_file_stops_start_up_instead_of_being_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("short")
    with pytest.raises(SecretKeyError, match="shorter than"):
        load_or_create_secret_key(None, path, JsonStore(tmp_path))
    assert path.read_text() == "short"


def _load_in_process(folder: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    root = Path(folder)
    results.put(load_or_create_secret_key(None, root / "secret_key", JsonStore(root)))


def test_workers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_load_in_process, args=(str(tmp_path), results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    keys = {results.get(timeout=60) for _ in workers}
    for worker in workers:
        worker.join(timeout=60)
    assert len(keys) == 1
    assert (tmp_path / "secret_key").read_text().strip() in keys
