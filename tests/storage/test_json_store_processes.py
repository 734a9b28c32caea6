"""Several processes on one DATA_DIR: concurrent appends lose nothing, SIGKILL mid-write leaves valid JSON."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from backend.conversations.models import Conversation
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

SPAWN = multiprocessing.get_context("spawn")
SESSION = "shared-session"


def _append_messages(root: str, worker: int, count: int, start: Any) -> None:
    """One process appending `count` messages to the shared conversation through the repository."""
    repository = ConversationRepository(JsonStore(Path(root)), DataLayout(Path(root)))

    async def run() -> None:
        for index in range(count):
            def add(conversation: Conversation, index: int = index) -> None:
                conversation["messages"].append({"role": "user", "content": f"{worker}:{index}"})

            await repository.change(SESSION, "alice", add, create=True)

    start.wait(30)
    asyncio.run(run())


def test_processes_appending_to_one_conversation_lose_no_message(tmp_path: Path) -> None:
    workers, per_worker = 4, 40
    start = SPAWN.Event()
    processes = [
        SPAWN.Process(target=_append_messages, args=(str(tmp_path), worker, per_worker, start))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    conversation = json.loads((tmp_path / "conversations" / f"{SESSION}.json").read_text())
    contents = [message["content"] for message in conversation["messages"]]
    assert len(contents) == workers * per_worker
    assert set(contents) == {f"{worker}:{index}" for worker in range(workers) for index in range(per_worker)}
    for worker in range(workers):  # each process's own messages keep their order
        mine = [content for content in contents if content.startswith(f"{worker}:")]
        assert mine == [f"{worker}:{index}" for index in range(per_worker)]


def _put(store: JsonStore, path: Path, value: Any) -> None:
    """Set a file's content the way the product writes: a locked read-modify-write through `modify`."""
    store.modify(path, lambda _current: value, dict)


def _payload(sequence: int) -> dict[str, Any]:
    # Sizes vary so a torn write would show up as truncated or mixed content.
    size = 1000 + (sequence * 7919) % 200_000
    return {"sequence": sequence, "filler": str(sequence % 10) * size, "size": size}


def _write_forever(root: str, first: int, progress: Any) -> None:
    store = JsonStore(Path(root))
    path = Path(root) / "conversations" / "victim.json"
    sequence = first
    while True:
        _put(store, path, _payload(sequence))
        progress.value = sequence
        sequence += 1


def test_writer_killed_with_sigkill_mid_write_leaves_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "conversations" / "victim.json"
    progress = SPAWN.Value("q", -1)
    next_sequence = 0
    rng = random.Random(1234)
    kills_mid_write = 0
    rounds = 0
    # Kill until several kills provably landed mid-write (the writer's temp file is left behind).
    while kills_mid_write < 3 and rounds < 60:
        rounds += 1
        temps_before = len(list(path.parent.glob(".*.tmp"))) if path.parent.exists() else 0
        writer = SPAWN.Process(target=_write_forever, args=(str(tmp_path), next_sequence, progress))
        writer.start()
        deadline = time.monotonic() + 60
        while progress.value < next_sequence and time.monotonic() < deadline:
            time.sleep(0.005)
        assert progress.value >= next_sequence, "writer made no progress"
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        writer.join(timeout=30)
        assert writer.exitcode == -signal.SIGKILL

        document = json.loads(path.read_text())  # parses: never a half-written file
        assert document == _payload(document["sequence"])
        assert document["sequence"] >= progress.value  # the last completed write is there (or a newer one)
        next_sequence = document["sequence"] + 1
        kills_mid_write += len(list(path.parent.glob(".*.tmp"))) - temps_before

    assert kills_mid_write >= 1, f"no kill landed mid-write in {rounds} rounds"

    # The killed writer's lock died with it: the file is writable at once.
    store = JsonStore(tmp_path, lock_timeout_s=5)
    _put(store, path, {"after": "kill"})
    assert store.load(path) == {"after": "kill"}
