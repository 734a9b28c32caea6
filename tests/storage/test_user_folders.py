"""A user's folders: made 0700 whatever the umask, listed as they are on disk, deleted whole and only theirs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.storage.layout import DataLayout, UnsafeName
from backend.storage.user_folders import FOLDER_KINDS, UserFolders


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_folder_and_each_missing_parent_is_0700_even_with_no_umask(tmp_path: Path, no_umask: None) -> None:
    folders = UserFolders(DataLayout(tmp_path))

    created = folders.create("alice", "cache", "sql")

    assert created == tmp_path / "cache" / "alice" / "sql"
    assert [_mode(path) for path in (tmp_path / "cache", tmp_path / "cache" / "alice", created)] == [0o700] * 3


def test_only_the_folders_on_disk_are_listed_in_kind_order(tmp_path: Path) -> None:
    folders = UserFolders(DataLayout(tmp_path))
    assert folders.existing("alice") == []

    folders.create("alice", "cache")
    folders.create("alice", "files")
    folders.create("bob", "vectors")

    assert FOLDER_KINDS == ("files", "vectors", "cache")
    assert folders.existing("alice") == [tmp_path / "files" / "alice", tmp_path / "cache" / "alice"]


def test_deleting_removes_every_folder_of_the_user_with_its_contents_and_no_one_elses(tmp_path: Path) -> None:
    folders = UserFolders(DataLayout(tmp_path))
    (folders.create("alice", "files", "reports") / "q1.csv").write_text("a\n1\n")
    (folders.create("alice", "vectors") / "index.bin").write_bytes(b"\0")
    (folders.create("bob", "files") / "mine.txt").write_text("bob's")

    removed = folders.delete_all("alice")

    assert removed == [tmp_path / "files" / "alice", tmp_path / "vectors" / "alice"]
    assert folders.existing("alice") == []
    assert (tmp_path / "files" / "bob" / "mine.txt").read_text() == "bob's"
    assert folders.delete_all("alice") == []  # nothing left: nothing reported


def test_a_folder_swapped_for_a_symlink_loses_the_link_and_never_the_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    folders = UserFolders(DataLayout(tmp_path / "data"))
    link = folders.path("alice", "files")
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)

    assert folders.delete_all("alice") == [link]

    assert not link.is_symlink() and not link.exists()
    assert (outside / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(("username", "inner"), [("../bob", ()), ("alice", ("..",)), ("alice", ("a/b",))])
def test_a_name_that_could_leave_the_users_folder_is_refused_before_the_disk(
    tmp_path: Path, username: str, inner: tuple[str, ...]
) -> None:
    folders = UserFolders(DataLayout(tmp_path))

    with pytest.raises(UnsafeName):
        folders.create(username, "files", *inner)
    assert list(tmp_path.iterdir()) == []
