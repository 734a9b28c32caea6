"""After a realistic session on a real server, everything under DATA_DIR is 0700 (folders) or 0600 (files),
even with a umask of 0: the modes are set, not left to the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.storage.layout import DataLayout
from tests.api.account_helpers import PASSWORD, bearer, chat, create_api_key, create_user, login
from tests.conftest import RunningServer, ServerThread, make_settings


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _upload(folder: Path, name: str, text: str) -> None:
    """What an upload would leave (there is no upload route yet): a private folder and file."""
    for part in reversed([folder, *folder.parents]):
        if not part.exists():
            part.mkdir(mode=0o700)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def test_every_folder_is_0700_and_every_file_0600_after_a_session(tmp_path: Path, no_umask: None) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, admin_password=None)
    layout = DataLayout(data_dir)
    with ServerThread(settings) as base:
        admin_password = layout.initial_admin_password_file.read_text().strip()
        admin = login(base, settings.admin_username, admin_password)
        server = RunningServer(base_url=base, settings=settings, api_key="")
        name = create_user(server, admin)
        token = login(base, name, PASSWORD)
        key = create_api_key(server, token)["key"]
        answer = chat(server, key, "Say hi.")
        assert answer.status_code == 200, answer.text

        _upload(layout.user_files_dir(name), "budget.csv", "item,cost\nrent,900\n")
        tool = httpx.post(f"{base}/api/tools/sql_query/invoke", headers=bearer(token), timeout=60,
                          json={"query": "SELECT sum(cost) AS total FROM budget"})
        assert tool.status_code == 200 and tool.json()["ok"] is True, tool.text

        changed = httpx.put(f"{base}/api/auth/me/password", headers=bearer(admin), timeout=30,
                            json={"current_password": admin_password, "new_password": "the-admins-own-choice"})
        assert changed.status_code == 200, changed.text
        assert not layout.initial_admin_password_file.exists()  # gone once the admin has their own password

    modes = _modes(data_dir)
    assert modes == {path: 0o700 if (data_dir / path).is_dir() else 0o600 for path in modes}
    # The session really wrote what the walk checked: lock files, the per-user cache, a conversation.
    assert {"secret_key", "users/users.json", "users/users.json.lock", f"cache/{name}/sql"} <= set(modes)
    assert any(path.startswith("conversations/") and path.endswith(".json") for path in modes)
    assert any(path.startswith(f"cache/{name}/sql/csv-") for path in modes)
