"""The JSON store: atomic replace with fsync, locked read-modify-write, quarantine of corrupt files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backend.service_errors import CorruptJSONFile, OutsideDataDir
from backend.storage.json_store import JsonStore


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def _put(store: JsonStore, path: Path, value: Any) -> None:
    """Set a file's content the way the product writes: a locked read-modify-write through `modify`."""
    store.modify(path, lambda _current: value, dict)


def test_written_value_reads_back_and_missing_file_gives_the_default(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "a" / "doc.json"
    assert store.load(path, dict) == {}
    _put(store, path, {"text": "héllo", "items": [1, 2, 3]})
    assert store.load(path) == {"text": "héllo", "items": [1, 2, 3]}
    assert json.loads(path.read_text(encoding="utf-8")) == {"text": "héllo", "items": [1, 2, 3]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert _leftovers(path.parent) == []


def test_a_write_fsyncs_the_file_and_then_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    _put(JsonStore(tmp_path), tmp_path / "doc.json", {"a": 1})
    assert synced == ["file", "folder"]


def test_modify_applies_the_change_and_returns_the_new_value(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "counter.json"
    assert store.modify(path, lambda value: {"n": value["n"] + 1}, lambda: {"n": 0}) == {"n": 1}
    assert store.modify(path, lambda value: {"n": value["n"] + 1}, lambda: {"n": 0}) == {"n": 2}
    assert store.load(path) == {"n": 2}


def test_a_change_that_raises_writes_nothing(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "doc.json"
    _put(store, path, {"keep": True})
    before = path.read_bytes()

    def refuse(_: Any) -> Any:
        raise PermissionError("not yours")

    with pytest.raises(PermissionError):
        store.modify(path, refuse, dict)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_threads_updating_one_file_lose_no_update(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "counter.json"

    def bump_many() -> None:
        for _ in range(25):
            store.modify(path, lambda value: {"n": value["n"] + 1}, lambda: {"n": 0})

    threads = [threading.Thread(target=bump_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.load(path) == {"n": 200}


async def test_async_updates_run_off_the_loop_and_lose_nothing(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "list.json"
    loop_thread = threading.get_ident()
    change_threads: set[int] = set()

    def append(value: list[int], item: int) -> list[int]:
        change_threads.add(threading.get_ident())
        return [*value, item]

    await asyncio.gather(*(store.update(path, lambda value, i=i: append(value, i), list) for i in range(40)))
    assert sorted(await store.read(path)) == list(range(40))
    assert loop_thread not in change_threads


def test_corrupt_file_is_quarantined_logged_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "doc.json"
    garbage = b'{"messages": [{"role": "user", "content": "half'
    path.write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="backend.storage.json_store"), pytest.raises(CorruptJSONFile) as caught:
        store.load(path, dict)
    quarantined = caught.value.quarantined_to
    assert quarantined.name.startswith("doc.json.corrupt-")
    assert quarantined.read_bytes() == garbage  # kept byte for byte, never replaced by an empty file
    assert not path.exists()
    assert any("quarantined" in record.getMessage() and record.levelno == logging.ERROR for record in caplog.records)
    assert store.load(path, dict) == {}


def test_modify_on_a_corrupt_file_quarantines_it_and_writes_nothing(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "doc.json"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(CorruptJSONFile):
        store.modify(path, lambda value: {"replaced": True}, dict)
    assert not path.exists()
    assert len(list(tmp_path.glob("doc.json.corrupt-*"))) == 1


def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    store = JsonStore(root)
    with pytest.raises(OutsideDataDir):
        _put(store, root / ".." / "escape.json", {})
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(OutsideDataDir):
        _put(store, root / "link" / "escape.json", {})
    assert not (tmp_path / "escape.json").exists()


def test_remove_deletes_the_file_and_its_lock_file(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "doc.json"
    _put(store, path, {})
    assert store.remove(path) is True
    assert not path.exists() and not Path(str(path) + ".lock").exists()
    assert store.remove(path) is False


def test_remove_can_be_refused_by_its_check(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    path = tmp_path / "doc.json"
    _put(store, path, {"owner": "alice"})

    def only_bob(value: Any) -> None:
        if value["owner"] != "bob":
            raise LookupError("not found")

    with pytest.raises(LookupError):
        store.remove(path, only_bob)
    assert store.load(path) == {"owner": "alice"}


def test_sweep_removes_only_old_temp_files(tmp_path: Path) -> None:
    store = JsonStore(tmp_path)
    old = tmp_path / ".doc.json.abc.tmp"
    young = tmp_path / ".doc.json.def.tmp"
    old.write_text("{")
    young.write_text("{")
    an_hour_ago = time.time() - 7200
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.sweep_stale_temp_files(tmp_path) == 1
    assert not old.exists() and young.exists()
